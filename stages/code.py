"""Stage code@<dataset>: record what each method of `fill.methods` fills from, beyond the
inputs every fill stage shares.

DVC runs this stage on every `dvc repro` (`always_changed` in dvc.yaml). It writes
data/code/<dataset>/<method>.json: the SHA-256 of every file the method's code may come
from (`registry.sources`) and, for a method that reads the infiller, of
data/models/<dataset>/infill.pt. fill@<dataset>-<method> depends on its own method's
record rather than on fillblank/decode, methods/ and the infiller as a whole. So adding or
editing a method in methods/ fills with the user's methods again, and retraining the
infiller fills with its methods again, while the other fills stay cached; a change to
fillblank/decode re-runs them all; untouched inputs give the same bytes, and nothing
re-runs. (DVC gives every item of the fill matrix the same deps: one file per method,
named by the item, is how one method gets a dep of its own.)
"""

import argparse
import json
from functools import cache
from pathlib import Path

from fillblank import params as params_module
from fillblank.atomic import write_text
from fillblank.data import sources
from fillblank.decode import registry
from fillblank.errors import UserError, run
from fillblank.provenance import file_sha256


def record(name: str, models: Path) -> dict:
    """Method `name`, the hash of each file its code may come from, and of the infiller in
    folder `models` when it reads it."""
    files = {f"{path.parent.name}/{path.name}": sha256(path) for path in registry.sources(name)}
    if not registry.methods()[name].reads_infiller:
        return {"method": name, "files": files}
    infiller = models / "infill.pt"
    if not infiller.is_file():
        raise UserError(f"{infiller}: no such file, and method {name} reads it (run `dvc repro train_infill`)")
    return {"method": name, "files": files, "models": {infiller.name: sha256(infiller)}}


sha256 = cache(file_sha256)  # every method's record hashes the same package files, the infillers' the same model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sources.NAMES)
    parser.add_argument("--models", type=Path, default=None, help="default: data/models/<dataset>")
    parser.add_argument("--out", type=Path, default=None, help="default: data/code/<dataset>")
    args = parser.parse_args()
    names = params_module.load().fill.methods
    out = args.out or Path("data/code") / args.dataset
    for name in names:
        write_text(
            out / f"{name}.json",
            json.dumps(record(name, args.models or Path("data/models") / args.dataset), indent=1) + "\n",
        )
    print(f"{args.dataset}: what {len(names)} methods fill from, recorded in {out}")


if __name__ == "__main__":
    run(main)
