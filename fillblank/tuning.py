"""Tuning the length rule (fillblank/decode/length.py) on the validation split: stage length.

Each scale's candidates are searched once per validation blank at every length; each
bonus of `GRID` then picks among them (`length.choose`), and pycocoevalcap's CIDEr of the
picks, against the captions of their images, decides. Every scale, bonus, ratio and
reading is scored in one call, so that Java starts once.
"""

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from fillblank import blanks as blank_sets
from fillblank import evaluate, tables
from fillblank.data.text import Vocab
from fillblank.decode.length import choose
from fillblank.decode.registry import Candidates
from fillblank.features import stored_ids

GRID = [step / 4 for step in range(21)]  # the bonuses tried: 0 to 5 nats per word


def validation_blanks(prepared: Path, features_path: Path, ratios: Sequence[float], images: int | None) -> pa.Table:
    """The blanks the rule is tuned on: the captions (`prepared`/captions.parquet) of the
    first `images` (None: all) validation images that have features (the features stage
    skips unreadable ones), cut at every ratio as the test blanks are."""
    captions = tables.read(
        prepared / "captions.parquet", ["image_id", "split", "sentence_id", "tokens"], made_by="prepare"
    )
    captions = captions.filter(pc.is_in(captions["image_id"], pa.array(stored_ids(features_path))))
    return blank_sets.table(captions, ratios, images, split="val")


def tune(
    readings: dict[str, list[Candidates]], vocab: Vocab, blank_set: pa.Table, refs: Sequence[Sequence[str]]
) -> dict:
    """Per scale, the bonus of `GRID` whose choices among its candidates (`readings[scale]`,
    one list per reading of the blanks) give the most CIDEr on `blank_set` (columns left,
    blank, right, ratio) against each blank's `refs`, averaged over the ratios and the
    readings (the smallest bonus among equals). All of it is scored in one pycocoevalcap call."""
    left, blank, right, ratio = (blank_set[name].to_pylist() for name in ("left", "blank", "right", "ratio"))
    ratios = sorted(set(ratio))
    runs, errors = {}, {}
    for name, candidates in readings.items():
        for reading, of_reading in enumerate(candidates):
            for bonus in GRID:
                fills = [vocab.decode(tokens) for tokens in choose(of_reading, bonus)]
                for r in ratios:
                    rows = [i for i in range(len(blank)) if ratio[i] == r]
                    runs[name, reading, bonus, r] = {i: " ".join(left[i] + fills[i] + right[i]) for i in rows}
                    errors[name, reading, bonus, r] = sum(abs(len(fills[i]) - len(blank[i])) for i in rows) / len(rows)
    # Many bonuses pick the same fills: each distinct run is scored once.
    distinct = {tuple(hyps.items()): hyps for hyps in runs.values()}
    scored = evaluate.cider(dict(enumerate(refs)), dict(enumerate(distinct.values())))
    by_fills = {fills: scored[n] for n, fills in enumerate(distinct)}
    cider = {key: by_fills[tuple(hyps.items())] for key, hyps in runs.items()}

    def mean(values: dict, name: str, bonus: float, r: float) -> float:  # over the readings
        return sum(values[name, reading, bonus, r] for reading in range(len(readings[name]))) / len(readings[name])

    tuned = {}
    for name in readings:
        grid = {
            bonus: {
                "CIDEr": sum(mean(cider, name, bonus, r) for r in ratios) / len(ratios),
                "length_error": sum(mean(errors, name, bonus, r) for r in ratios) / len(ratios),
            }
            for bonus in GRID
        }
        best = max(GRID, key=lambda bonus: (grid[bonus]["CIDEr"], -bonus))  # noqa: B023 (used at once)
        tuned[name] = {
            "length_bonus": best,
            "CIDEr": {f"{r:g}": mean(cider, name, best, r) for r in ratios} | {"mean": grid[best]["CIDEr"]},
            "length_error": {f"{r:g}": mean(errors, name, best, r) for r in ratios}
            | {"mean": grid[best]["length_error"]},
            "grid": {f"{bonus:g}": values for bonus, values in grid.items()},
        }
    return tuned
