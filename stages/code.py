"""Stage code@<dataset>: record what each method of `fill.methods` fills from, beyond the
inputs every fill stage shares.

DVC runs this stage on every `dvc repro` (`always_changed` in dvc.yaml). It writes
data/code/<dataset>/<method>.json: the SHA-256 of every file the method's code may come
from (`registry.sources`), the length bonus of the method's scale (`length.bonuses`: a
number of params.yaml, or the one stage length tuned) and, for a method that reads the
infiller, the SHA-256 of data/models/<dataset>/infiller.pt. fill@<dataset>-<method>
depends on its own method's record rather than on fillblank/decode, methods/, the tuned
length rule and the infiller as a whole. So adding or editing a method in methods/ fills
with the user's methods again, retraining the infiller fills with its methods again, and a
new bonus for one scale fills with that scale's methods again, while the other fills stay
cached; a change to fillblank/decode re-runs them all; untouched inputs give the same
bytes, and nothing re-runs. (DVC gives every item of the fill matrix the same deps: one
file per method, named by the item, is how one method gets a dep of its own.)
"""

import argparse
import json
from functools import cache
from pathlib import Path

from fillblank import params as params_module
from fillblank.atomic import write_text
from fillblank.data import sources
from fillblank.decode import length, registry
from fillblank.errors import UserError, run
from fillblank.provenance import file_sha256


def record(name: str, models: Path, bonuses: dict[str, float]) -> dict:
    """Method `name`, the hash of each file its code may come from, its scale's bonus, and
    the hash of the infiller in folder `models` when it reads it."""
    entry = registry.entry(name)
    files = {f"{path.parent.name}/{path.name}": sha256(path) for path in registry.sources(name)}
    found = {"method": name, "files": files, "length_bonus": {entry.scale: bonuses[entry.scale]}}
    if not entry.reads_infiller:
        return found
    infiller = models / "infiller.pt"
    if not infiller.is_file():
        raise UserError(f"{infiller}: no such file, and method {name} reads it (run `dvc repro train_infiller`)")
    return found | {"models": {infiller.name: sha256(infiller)}}


sha256 = cache(file_sha256)  # every method's record hashes the same package files, the infillers' the same model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sources.NAMES)
    parser.add_argument("--models", type=Path, default=None, help="default: data/models/<dataset>")
    parser.add_argument("--length", type=Path, default=None, help="default: data/length/<dataset>.json")
    parser.add_argument("--out", type=Path, default=None, help="default: data/code/<dataset>")
    args = parser.parse_args()
    fill = params_module.load().fill
    bonuses = length.bonuses(fill, args.length or length.tuned_path(args.dataset))
    out = args.out or Path("data/code") / args.dataset
    for name in fill.methods:
        found = record(name, args.models or Path("data/models") / args.dataset, bonuses)
        write_text(out / f"{name}.json", json.dumps(found, indent=1) + "\n")
    print(f"{args.dataset}: what {len(fill.methods)} methods fill from, recorded in {out}")


if __name__ == "__main__":
    run(main)
