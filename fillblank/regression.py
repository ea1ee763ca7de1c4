"""The CI regression check: a new metrics file against the committed one.

    python -m fillblank.regression COMMITTED NEW     # e.g. the committed and a fresh metrics/shapes.json

Fails (exit status 1, with a table of what moved) when
- any metric differs by more than `TOLERANCE` from the committed value, or is new or gone;
- a BiBS method (`fillblank.evaluate.BIBS`) scores below any baseline (`BASELINES`) on
  CIDEr at any blank ratio, in either setting, in the new file, by more than `CIDER_NOISE`.

Both files have the layout of `fillblank.evaluate`. Timings (`seconds_per_blank`) are not
compared: they are the one part that differs between identical runs.
"""

import argparse
import json
import math
import sys
from pathlib import Path

from fillblank.errors import UserError, run
from fillblank.evaluate import BASELINES, BIBS

# CPU runs with the same seed reproduce the metrics exactly, and the metrics file rounds
# them to 6 decimals: this allows a flip of the last digit and nothing else.
TOLERANCE = 1e-6
UNCOMPARED = ("seconds_per_blank",)
# Where the blanks are short, fb_rerank finds the fill of highest S(Y) for all but a few of
# 1,000, and which method's CIDEr is higher turns on those few: on `shapes` at ratio 0.25,
# known length, even `exact` (the best S(Y) there is) had 0.07% less CIDEr than fb_rerank.
# Where the search matters BiBS leads by far more (1.2% and 2.1% at ratios 0.5 and 0.75).
CIDER_NOISE = 1e-3


def flatten(tree: dict, prefix: str = "") -> dict[str, float]:
    """`{"known": {"bibs": {"0.5": {"CIDEr": 1.2}}}}` -> `{"known.bibs.0.5.CIDEr": 1.2}`,
    the names `dvc metrics diff` shows."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[prefix + key] = value
    return flat


def moved(committed: dict, new: dict, tolerance: float = TOLERANCE) -> list[tuple[str, float | None, float | None, str]]:
    """`(metric, committed, new, why)` for every metric that is new, gone or moved too far."""
    old = flatten({k: v for k, v in committed.items() if k not in UNCOMPARED})
    now = flatten({k: v for k, v in new.items() if k not in UNCOMPARED})
    rows = []
    for name in sorted(old.keys() | now.keys()):
        before, after = old.get(name), now.get(name)
        if before is None:
            rows.append((name, None, after, "new"))
        elif after is None:
            rows.append((name, before, None, "gone"))
        elif not math.isclose(after, before, rel_tol=tolerance, abs_tol=tolerance):
            rows.append((name, before, after, f"moved by {after - before:+.6g}"))
    return rows


def bibs_behind(metrics: dict) -> list[tuple[str, float, float, str]]:
    """`(metric, baseline's CIDEr, BiBS's CIDEr, why)` wherever BiBS is below a baseline by
    more than `CIDER_NOISE` of the baseline's CIDEr."""
    rows = []
    for setting, by_method in metrics.items():
        if setting in UNCOMPARED:
            continue
        for bibs in (m for m in BIBS if m in by_method):
            for ratio, values in by_method[bibs].items():
                for baseline in (m for m in BASELINES if m in by_method):
                    theirs = by_method[baseline].get(ratio, {}).get("CIDEr")
                    if theirs is not None and values["CIDEr"] < theirs * (1 - CIDER_NOISE):
                        rows.append((f"{setting}.{bibs}.{ratio}.CIDEr", theirs, values["CIDEr"], f"below {baseline}"))
    return rows


def render(rows: list[tuple[str, float | None, float | None, str]], headers: tuple[str, str]) -> str:
    cells = [(name, "-" if a is None else f"{a:.6f}", "-" if b is None else f"{b:.6f}", why) for name, a, b, why in rows]
    table = [("metric", *headers, ""), *cells]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in table)


def read(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not a metrics JSON file ({error})") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("committed", type=Path, help="the metrics file as committed")
    parser.add_argument("new", type=Path, help="the metrics file the pipeline just wrote")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE, help="largest change allowed (absolute and relative)")
    args = parser.parse_args()
    committed, new = read(args.committed), read(args.new)

    changes = moved(committed, new, args.tolerance)
    behind = bibs_behind(new)
    if changes:
        print(f"{len(changes)} metrics moved beyond {args.tolerance:g} ({args.committed} -> {args.new}):")
        print(render(changes, ("committed", "new")))
    if behind:
        print(f"BiBS below a baseline on CIDEr in {args.new}:")
        print(render(behind, ("baseline", "bibs")))
    if changes or behind:
        sys.exit(1)
    print(f"{args.new}: every metric within {args.tolerance:g} of {args.committed}; BiBS within {CIDER_NOISE:.1%} of or above every baseline on CIDEr")


if __name__ == "__main__":
    run(main)
