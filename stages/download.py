"""Stage download@<dataset>: bring a dataset's raw files into data/raw/<dataset>/.

The dataset's source module (fillblank/data/sources/<dataset>.py) fills a temporary folder
in the raw layout; this stage records every file's SHA-256 in SHA256SUMS, and only then
renames the folder into place, so an interrupted download never looks finished.
"""

import argparse
from pathlib import Path

from fillblank import params as params_module
from fillblank.atomic import atomic_path
from fillblank.data import sources
from fillblank.errors import run
from fillblank.provenance import file_sha256


def sha256sums(folder: Path) -> str:
    """`sha256sum`-style lines for every file below `folder`, in path order."""
    paths = sorted(p for p in folder.rglob("*") if p.is_file())
    return "".join(f"{file_sha256(path)}  {path.relative_to(folder).as_posix()}\n" for path in paths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sources.NAMES)
    parser.add_argument("--out", type=Path, default=None, help="default: data/raw/<dataset>")
    args = parser.parse_args()
    params = params_module.load()
    out = args.out or Path("data/raw") / args.dataset

    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        sources.module(args.dataset).fetch(tmp, getattr(params.sources, args.dataset))
        sums = sha256sums(tmp)
        (tmp / "SHA256SUMS").write_text(sums, encoding="utf-8")
    print(f"{args.dataset}: {len(sums.splitlines())} files in {out}")


if __name__ == "__main__":
    run(main)
