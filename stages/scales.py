"""Stage scales@<dataset>: record what each scoring scale's candidates come from.

DVC runs this stage on every `dvc repro` (`always_changed` in dvc.yaml). It writes
data/scales/<dataset>.json: for every scale the registry declares
(fillblank/decode/registry.py), the SHA-256 of each file its candidates' code may come
from (`registry.scale_sources`). Stage length depends on this record rather than on
fillblank/decode and methods/ as a whole, so that a method added to methods/ leaves the
tuned length rule alone, while a scale added there, or any change to fillblank/decode,
tunes it again.
"""

import argparse
import json
from pathlib import Path

from fillblank.atomic import write_text
from fillblank.data import sources
from fillblank.decode import registry
from fillblank.errors import run
from fillblank.provenance import file_sha256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sources.NAMES)
    parser.add_argument("--out", type=Path, default=None, help="default: data/scales/<dataset>.json")
    args = parser.parse_args()
    found = {
        name: {f"{path.parent.name}/{path.name}": file_sha256(path) for path in registry.scale_sources(name)}
        for name in registry.scales()
    }
    out = args.out or Path("data/scales") / f"{args.dataset}.json"
    write_text(out, json.dumps(found, indent=1) + "\n")
    print(f"{args.dataset}: what {len(found)} scales tune from, recorded in {out}")


if __name__ == "__main__":
    run(main)
