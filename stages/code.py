"""Stage code: record the code each method of `fill.methods` runs from.

DVC runs this stage on every `dvc repro` (`always_changed` in dvc.yaml). It writes
data/code/<method>.json, the SHA-256 of every file the method's code may come from
(`registry.sources`), and fill@<dataset>-<method> depends on its own method's record
rather than on fillblank/decode and methods/ as a whole. So adding or editing a method in
methods/ fills with the user's methods again and leaves the built-ins' fills cached, while
a change to fillblank/decode re-runs them all; untouched code gives the same bytes, and
nothing re-runs. (DVC gives every item of the fill matrix the same deps: one file per
method, named by the item, is how one method gets a dep of its own.)
"""

import argparse
import hashlib
import json
from pathlib import Path

from fillblank import params as params_module
from fillblank.atomic import write_text
from fillblank.decode import registry
from fillblank.errors import run


def record(name: str) -> dict:
    """Method `name` and the hash of each file its code may come from."""
    files = {f"{path.parent.name}/{path.name}": hashlib.sha256(path.read_bytes()).hexdigest() for path in registry.sources(name)}
    return {"method": name, "files": files}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/code"), help="default: data/code")
    args = parser.parse_args()
    names = params_module.load().fill.methods
    for name in names:
        write_text(args.out / f"{name}.json", json.dumps(record(name), indent=1) + "\n")
    print(f"code of {len(names)} methods recorded in {args.out}")


if __name__ == "__main__":
    run(main)
