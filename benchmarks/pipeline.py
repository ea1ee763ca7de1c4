"""Where the time of a fresh `dvc repro` goes: each stage's seconds, from a clean copy of
the project (the working tree's files, no outputs) to the last stage, measured in this one
run. The `shapes` build is what `make test` and CI wait for (tests/conftest.py,
built_shapes), so this is the table to read before making CI faster.

    python benchmarks/pipeline.py [--set fill.tune_images=50 ...] [--keep DIR]

Each stage's time is `experiments.run.repro`'s, from DVC's "Running stage" line to the next
one's (or to the end), so it includes starting Python and DVC's own bookkeeping. `--set` merges a params.yaml value
into the copy, as `dvc exp run -S` would, to see what a smaller setting saves. Run it
alone: a second job on the same cores slows every stage (docs/reproducibility.md).
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from experiments.run import copy_project, merge, repro  # noqa: E402 (the project root, put on the path above)


def dotted(setting: str) -> dict:
    """`a.b=value` as {"a": {"b": value}}, the value read as YAML."""
    key, _, value = setting.partition("=")
    changes: dict = yaml.safe_load(value)
    for part in reversed(key.split(".")):
        changes = {part: changes}
    return changes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a params.yaml value")
    parser.add_argument("--keep", type=Path, default=None, help="build here and keep it (default: a temporary folder)")
    args = parser.parse_args()
    changes: dict = {}
    for setting in args.set:
        changes = merge(changes, dotted(setting))
    with tempfile.TemporaryDirectory() as scratch:
        project = copy_project(args.keep or Path(scratch) / "project", changes)
        start = time.perf_counter()
        stages = repro(project, Path(scratch) / "repro.log")
        total = time.perf_counter() - start
    width = max(map(len, stages))
    for stage, seconds in sorted(stages.items(), key=lambda row: -row[1]):
        print(f"{stage:<{width}}  {seconds:7.1f} s  {seconds / total:6.1%}")
    print(f"{'total':<{width}}  {total:7.1f} s  on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
