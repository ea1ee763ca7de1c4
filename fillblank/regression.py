"""The CI regression check: does this machine reproduce the committed results?

    python -m fillblank.regression pipeline COMMITTED NEW   # two metrics/ folders, after `dvc repro`
    python -m fillblank.regression decoding                 # the fixed captioners, decoded here
    python -m fillblank.regression freeze                   # make the fixture anew from the pipeline

PyTorch picks its CPU kernels by the instruction set (AVX2, AVX-512, AMX, ...) and splits
its sums by the thread count, so captioners trained on two machines differ in their last
bits from the first step, and then in their fills: a `shapes` pipeline retrained on another
kernel path moves its CIDEr by a few percent (docs/reproducibility.md). A tolerance wide
enough for that would let a real decoding regression through, so the check splits the
pipeline in two halves, each compared as tightly as its own spread allows:

- **decoding** on fixed inputs: the committed `shapes` captioners, image features, blanks
  and references of `FIXTURE_IMAGES` test images, kept in `tests/fixtures/shapes/`. Every
  method of `fill.methods` but the infiller's (`FIXTURE_MODELS`) fills them here and every
  metric must lie within `DECODE_TOLERANCE` of the committed `tests/fixtures/shapes/metrics.json`. The kernels
  then differ only in the last bits of the beams' scores, which reorders a near-tie now
  and then. A BiBS method below a baseline on CIDEr (by more than `CIDER_NOISE`) fails too.
- **training and the whole pipeline**: each model's (captioners, infiller) best validation
  perplexity within `PERPLEXITY_TOLERANCE`, and each metric of `metrics/shapes.json` within
  its `PIPELINE_TOLERANCE`, both relative to the committed `metrics/`. BiBS's ordering is
  not checked here: retrained captioners can put it a hair behind fb_rerank at one ratio.

A metric the committed ones lack (a method just added to `methods/`) is listed as new and
passes; one they have that is gone, or moved too far, fails.

A metric's `change` is relative to its size, or absolute below 1 (shares). Each tolerance
is about twice the largest change measured between kernel paths (docs/reproducibility.md).
Timings and provenance are never compared. After a change that moves results on purpose,
commit the new `metrics/` and run `decoding --write` (or `freeze`, when the captioners
changed) and commit the fixture's new `metrics.json`.
"""

import argparse
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fillblank import decode, params, tables
from fillblank.atomic import atomic_path, write_text
from fillblank.data.text import Vocab
from fillblank.decode import length, registry
from fillblank.decode.models import load_models
from fillblank.decode.registry import with_role
from fillblank.errors import UserError, run
from fillblank.evaluate import BLANK_COLUMNS, CAPTION_COLUMNS, evaluate, read_fills, read_table
from fillblank.features import opened, read_features

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "shapes"
FIXTURE_IMAGES = 60  # the first test images of `shapes`: 300 captions, 900 blanks
DATASET = "shapes"
MODELS = ("forward", "backward", "infiller")  # the trained models whose perplexity is checked
# The fixture keeps the captioners only: the infiller weighs 5 MB (git is no place for it), so
# the methods of role `infiller` are checked by the pipeline half alone.
FIXTURE_MODELS = ("forward", "backward")
UNCOMPARED = ("seconds_per_blank", "provenance")
NEW = "new"  # a metric the committed ones lack: reported, not a failure

# The largest `change` allowed, each measured in docs/reproducibility.md. Decoding the fixed
# captioners gives the same metrics on every kernel path tried, so its tolerance leaves room
# for one near-tie to flip somewhere and no more: a real change of the search (fewer sweeps,
# a narrower beam) moves it by more. Captioners trained on other kernel paths move the
# pipeline's metrics by a few percent: about twice the largest spread measured.
DECODE_TOLERANCE = 0.005
PERPLEXITY_TOLERANCE = 0.03
PIPELINE_TOLERANCE = {
    "BLEU-1": 0.04,
    "BLEU-2": 0.05,
    "BLEU-3": 0.05,
    "BLEU-4": 0.07,
    "METEOR": 0.06,
    "ROUGE-L": 0.04,
    "CIDEr": 0.10,
    "exact_match": 0.10,
    "mean_score": 0.25,
    "search_error": 0.15,
    "length_error": 0.30,
}
# Where the blanks are short, fb_rerank finds the fill of highest S(Y) for all but a few,
# and which method's CIDEr is higher turns on those few: on `shapes` at ratio 0.25 even
# `exact` (the best S(Y) there is) has had less CIDEr than fb_rerank.
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


def change(before: float, after: float) -> float:
    """How far a metric moved: relative to its size, or absolute for values below 1 (shares,
    counts near zero), so that one tolerance reads as "a few percent" for both."""
    return abs(after - before) / max(abs(before), abs(after), 1.0)


def compared(metrics: dict) -> dict[str, float]:
    return flatten({k: v for k, v in metrics.items() if k not in UNCOMPARED})


def moved(
    committed: dict, new: dict, tolerance: float | dict[str, float]
) -> list[tuple[str, float | None, float | None, str]]:
    """`(metric, committed, new, why)` for every metric that is new, gone or moved too far.
    `tolerance` is one number, or one per metric name (the last part of a flat name)."""
    old, now = compared(committed), compared(new)
    rows = []
    for name in sorted(old.keys() | now.keys()):
        before, after = old.get(name), now.get(name)
        allowed = tolerance if isinstance(tolerance, float) else tolerance[name.rsplit(".", 1)[-1]]
        if before is None:
            rows.append((name, None, after, NEW))
        elif after is None:
            rows.append((name, before, None, "gone"))
        elif not (math.isfinite(before) and math.isfinite(after)):
            rows.append((name, before, after, "not a finite number"))
        elif change(before, after) > allowed:
            rows.append((name, before, after, f"moved by {after - before:+.6g}"))
    return rows


def failures(
    rows: list[tuple[str, float | None, float | None, str]],
) -> list[tuple[str, float | None, float | None, str]]:
    """The rows of `moved` that fail the check: all but the new metrics (a method or a ratio
    that the committed metrics do not have yet, such as a method just added to methods/)."""
    return [row for row in rows if row[3] != NEW]


def largest_changes(committed: dict, new: dict) -> dict[str, float]:
    """The largest `change` of each metric name over all settings, methods and ratios."""
    old, now = compared(committed), compared(new)
    largest: dict[str, float] = {}
    for name in old.keys() & now.keys():
        metric = name.rsplit(".", 1)[-1]
        largest[metric] = max(largest.get(metric, 0.0), change(old[name], now[name]))
    return largest


def bibs_behind(metrics: dict) -> list[tuple[str, float, float, str]]:
    """`(metric, baseline's CIDEr, BiBS's CIDEr, why)` wherever BiBS is below a baseline by
    more than `CIDER_NOISE` of the baseline's CIDEr."""
    rows = []
    for setting, by_method in metrics.items():
        if setting in UNCOMPARED:
            continue
        for bibs in (m for m in with_role("bidirectional") if m in by_method):
            for ratio, values in by_method[bibs].items():
                for baseline in (m for m in with_role("baseline") if m in by_method):
                    theirs = by_method[baseline].get(ratio, {}).get("CIDEr")
                    if theirs is not None and values["CIDEr"] < theirs * (1 - CIDER_NOISE):
                        rows.append((f"{setting}.{bibs}.{ratio}.CIDEr", theirs, values["CIDEr"], f"below {baseline}"))
    return rows


def perplexities(committed: Path, new: Path) -> dict[str, tuple[float, float]]:
    """`{"train/shapes-<model>.json": (committed, new)}`: each model's best validation perplexity."""
    names = [f"train/{DATASET}-{model}.json" for model in MODELS]
    return {
        name: tuple(read_metrics(folder / name)["best_val_perplexity"] for folder in (committed, new)) for name in names
    }


def fixture_fills(fill: params.Fill, methods: list[str], fixture: Path = FIXTURE, device: str = "cpu") -> dict:
    """`{method: fills}` of `methods` filling the fixture's blanks with its captioners on `device`."""
    vocab = Vocab.load(fixture / "vocab.json")
    models = load_models(fixture, vocab, device)
    blank_set = tables.read(fixture / "blanks.parquet")
    features = read_features(fixture / "features.h5", blank_set["image_id"].to_numpy()).to(device)  # shape: (N, D)
    return {
        method: decode.fill_table(
            method,
            models,
            vocab,
            blank_set,
            features,
            length.for_method(fill, registry.entry(method), fixture / "length.json"),
            {},
        )
        for method in methods
    }


def fixture_metrics(fills: dict, fill: params.Fill, fixture: Path = FIXTURE) -> dict:
    """The metrics (`fillblank.evaluate`) of the fixture's `fills`, `{method: fills}`."""
    blanks = read_table(fixture / "blanks.parquet", BLANK_COLUMNS)
    captions = read_table(fixture / "captions.parquet", CAPTION_COLUMNS)
    with tempfile.TemporaryDirectory() as folder:
        for method, table in fills.items():
            pq.write_table(table, Path(folder) / f"{method}.parquet")
        every = read_fills(Path(folder), list(fills), blanks)
    return evaluate(every, blanks, captions, length.bonuses(fill, fixture / "length.json"))


def decode_fixture(fill: params.Fill, methods: list[str], fixture: Path = FIXTURE, device: str = "cpu") -> dict:
    """The metrics of `methods` filling the fixture's blanks with its captioners on `device`."""
    return fixture_metrics(fixture_fills(fill, methods, fixture, device), fill, fixture)


def freeze(project: Path, fixture: Path = FIXTURE) -> None:
    """Copy the pipeline's `shapes` captioners, their tuned length rule and vocabulary, and the features, blanks and
    captions of its first `FIXTURE_IMAGES` test images, from `project` into `fixture`."""
    blank_set = tables.read(project / f"data/blanks/{DATASET}.parquet", made_by="blanks")
    images = sorted(set(blank_set["image_id"].to_pylist()))[:FIXTURE_IMAGES]

    def keep(table: pa.Table) -> pa.Table:
        return table.filter(pc.is_in(table["image_id"], pa.array(images, pa.int64())))

    captions = tables.read(project / f"data/prepared/{DATASET}/captions.parquet", made_by="prepare")
    with atomic_path(fixture) as tmp:
        tmp.mkdir()
        for name in (f"{model}.pt" for model in FIXTURE_MODELS):
            shutil.copy(project / f"data/models/{DATASET}" / name, tmp / name)
        shutil.copy(project / f"data/prepared/{DATASET}/vocab.json", tmp / "vocab.json")
        shutil.copy(project / length.tuned_path(DATASET), tmp / "length.json")
        pq.write_table(keep(blank_set), tmp / "blanks.parquet")
        pq.write_table(keep(captions), tmp / "captions.parquet")
        source = project / f"data/features/{DATASET}.h5"
        with h5py.File(tmp / "features.h5", "w") as file:
            file["features"] = read_features(source, np.array(images)).numpy()
            file["image_ids"] = images
            with opened(source) as original:
                file.attrs.update(original.attrs)


def render(rows: list[tuple[str, float | None, float | None, str]], headers: tuple[str, str]) -> str:
    cells = [
        (name, "-" if a is None else f"{a:.6f}", "-" if b is None else f"{b:.6f}", why) for name, a, b, why in rows
    ]
    table = [("metric", *headers, ""), *cells]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in table
    )


def read_metrics(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not a metrics JSON file ({error})") from None


def report(what: str, changes: list, behind: list, largest: dict[str, float]) -> None:
    """Print the new metrics, then what failed and exit 1; or that `what` passed, with the
    `largest` changes."""
    if new := [row for row in changes if row[3] == NEW]:
        print(f"{what}: {len(new)} new metrics, which the committed ones lack (commit them once they are right):")
        print(render(new, ("committed", "new")))
    if failed := failures(changes):
        print(f"{what}: {len(failed)} metrics moved beyond their tolerance:")
        print(render(failed, ("committed", "new")))
    if behind:
        print(f"{what}: BiBS below a baseline on CIDEr:")
        print(render(behind, ("baseline", "bibs")))
    if failed or behind:
        sys.exit(1)
    print(
        f"{what}: every metric within its tolerance of the committed one; largest changes: "
        + ", ".join(f"{name} {value:.2%}" for name, value in sorted(largest.items()))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    pipeline = commands.add_parser("pipeline", help="compare two metrics/ folders: training and the whole pipeline")
    pipeline.add_argument("committed", type=Path, help="metrics/ as committed")
    pipeline.add_argument("new", type=Path, help="metrics/ as the pipeline just wrote it")
    decoding = commands.add_parser(
        "decoding", help="decode the fixed captioners and compare with their committed metrics"
    )
    decoding.add_argument(
        "--write", action="store_true", help="write the metrics into the fixture instead of comparing"
    )
    commands.add_parser(
        "freeze", help="make the fixture anew from this project's shapes outputs, then decode it"
    ).set_defaults(write=True)
    args = parser.parse_args()

    if args.command == "pipeline":
        trained = perplexities(args.committed, args.new)
        changes = [
            (f"{name}: best_val_perplexity", before, after, f"moved by {after - before:+.6g}")
            for name, (before, after) in trained.items()
            if change(before, after) > PERPLEXITY_TOLERANCE
        ]
        committed, new = (read_metrics(folder / f"{DATASET}.json") for folder in (args.committed, args.new))
        largest = largest_changes(committed, new) | {"perplexity": max(change(*pair) for pair in trained.values())}
        report(
            f"{args.new}: training and the {DATASET} pipeline",
            changes + moved(committed, new, PIPELINE_TOLERANCE),
            [],
            largest,
        )
        return
    if args.command == "freeze":
        freeze(Path("."))
    fill = params.load().fill
    metrics = decode_fixture(fill, [name for name in fill.methods if name not in with_role("infiller")])
    if args.write:
        write_text(FIXTURE / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        print(f"decoding on fixed captioners: metrics written to {FIXTURE / 'metrics.json'}")
        return
    committed = read_metrics(FIXTURE / "metrics.json")
    report(
        "decoding on fixed captioners",
        moved(committed, metrics, DECODE_TOLERANCE),
        bibs_behind(metrics),
        largest_changes(committed, metrics),
    )


if __name__ == "__main__":
    run(main)
