"""Stage source@<dataset>: check params.yaml, and record what the dataset's source holds.

DVC runs this stage first on every `dvc repro` (`always_changed` in dvc.yaml), for what
no cached stage would otherwise notice:

- A misspelt or unknown key anywhere in params.yaml (`fill.beem: 3`, `datasets: [flickr9k]`),
  a method of `fill.methods` or a scale of `fill.length_bonus` that is not declared
  (fillblank/decode/registry.py), stops the run with one line naming it, even when every
  other stage is cached.
- The temporary files of runs that were killed (fillblank/atomic.py) are removed from data/.
- A local source folder (`sources.<dataset>`) is a real dependency: this stage writes
  data/sources/<dataset>.json, every file below the folder (through symlinked folders, as
  the sources read them) with its size and modification time, and download@<dataset>
  depends on it. Editing a file there re-runs download; an untouched folder gives the same
  bytes, so download stays cached. (Sizes and times, not hashes: hashing COCO's 19 GB on
  every run would take minutes.)

For `shapes` and the official downloads the record is just the source's settings.
"""

import argparse
import json
from pathlib import Path

from fillblank import params as params_module
from fillblank.atomic import remove_leftovers, write_text
from fillblank.data.download import files_below, local_folder
from fillblank.decode import length, registry
from fillblank.errors import UserError, run


def manifest(dataset: str, source: str | dict | None) -> dict:
    """What download@<dataset> will read: the settings, or a folder's files."""
    if not isinstance(source, str):
        return {"dataset": dataset, "source": source}
    folder = local_folder(source, dataset)
    files = files_below(folder)
    listed = [[p.relative_to(folder).as_posix(), p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    return {"dataset": dataset, "source": str(folder.resolve()), "files": listed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")  # any name: an unknown one gets params.yaml's own one-line error
    parser.add_argument("--out", type=Path, default=None, help="default: data/sources/<dataset>.json")
    args = parser.parse_args()
    params = params_module.load()
    if args.dataset not in params.datasets:
        raise UserError(f"{args.dataset}: not among the datasets in params.yaml ({', '.join(params.datasets)})")
    registry.check(params.fill.methods)
    length.check(params.fill)
    for path in remove_leftovers("data"):
        print(f"removed {path}, left by an interrupted run")
    source = getattr(params.sources, args.dataset)
    record = manifest(args.dataset, source.model_dump() if hasattr(source, "model_dump") else source)
    write_text(args.out or Path("data/sources") / f"{args.dataset}.json", json.dumps(record, indent=1) + "\n")
    files = f"{len(record['files'])} files in {record['source']}" if "files" in record else "no local folder"
    print(f"{args.dataset}: params.yaml checked; source: {files}")


if __name__ == "__main__":
    run(main)
