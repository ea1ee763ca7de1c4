"""Tuning the length rule (fillblank/decode/length.py) on the validation split: stage length.

Each scale's candidates are searched once per validation blank at every length; each
bonus of `GRID` then picks among them (`length.choose`), and pycocoevalcap's CIDEr of the
picks, against the captions of their images, decides by the one-standard-error rule.
Every scale, bonus, ratio and reading is scored in one call, so that Java starts once.
"""

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np
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
    """Per scale, the bonus of `GRID` for the choices among its candidates (`readings[scale]`,
    one list per reading of the blanks) on `blank_set` (columns left, blank, right, ratio),
    scored by CIDEr against each blank's `refs`, averaged over the ratios and the readings.

    The bonus chosen is the smallest whose CIDEr lies within one standard error of the best
    one's (the one-standard-error rule; Breiman et al., 1984, Classification and Regression
    Trees, 3.4.3), the error being that of the paired difference over the blanks. Bonuses the
    validation blanks cannot tell apart are settled towards no bonus, not by the last bits
    of the scores, which differ between CPUs (docs/length.md). All of it is scored in one
    pycocoevalcap call."""
    left, blank, right, ratio = (blank_set[name].to_pylist() for name in ("left", "blank", "right", "ratio"))
    rows = {r: [i for i in range(len(blank)) if ratio[i] == r] for r in sorted(set(ratio))}
    runs, errors = {}, {}
    for name, candidates in readings.items():
        for reading, of_reading in enumerate(candidates):
            for bonus in GRID:
                fills = [vocab.decode(tokens) for tokens in choose(of_reading, bonus)]
                for r, at in rows.items():
                    runs[name, reading, bonus, r] = {i: " ".join(left[i] + fills[i] + right[i]) for i in at}
                    errors[name, reading, bonus, r] = sum(abs(len(fills[i]) - len(blank[i])) for i in at) / len(at)
    # Many bonuses pick the same fills: each distinct run is scored once.
    distinct = {tuple(hyps.items()): hyps for hyps in runs.values()}
    scored = evaluate.cider(dict(enumerate(refs)), dict(enumerate(distinct.values())))
    by_fills = {fills: scored[n] for n, fills in enumerate(distinct)}
    return {name: choice(name, len(readings[name]), rows, runs, by_fills, errors) for name in readings}


def choice(name: str, readings: int, rows: dict, runs: dict, by_fills: dict, errors: dict) -> dict:
    """Scale `name`'s bonus by the one-standard-error rule (`tune`), with the CIDEr and length
    error of each bonus tried, and its CIDEr per ratio (and per reading, where there are
    several): one bonus serves every ratio, and the record shows what it gives up where."""

    def of_reading(k: int, bonus: float, r: float) -> np.ndarray:  # each blank's CIDEr in reading k
        return np.array([by_fills[tuple(runs[name, k, bonus, r].items())][i] for i in rows[r]])

    def per_blank(bonus: float, r: float) -> np.ndarray:  # each blank's CIDEr, averaged over the readings
        return np.mean([of_reading(k, bonus, r) for k in range(readings)], axis=0)

    def by_ratio(cider_of: Callable[[float], np.ndarray]) -> dict[str, float]:  # mean CIDEr per ratio, and of those
        means = {f"{r:g}": float(cider_of(r).mean()) for r in rows}
        return means | {"mean": float(np.mean(list(means.values())))}

    def mean_error(bonus: float, r: float) -> float:
        return sum(errors[name, k, bonus, r] for k in range(readings)) / readings

    cider = {bonus: {r: per_blank(bonus, r) for r in rows} for bonus in GRID}
    ratios = {bonus: by_ratio(cider[bonus].__getitem__) for bonus in GRID}
    best = max(GRID, key=lambda bonus: (ratios[bonus]["mean"], -bonus))

    def standard_error(bonus: float) -> float:  # of the mean's difference from best's, pairing each blank's CIDEr
        variances = [np.var(cider[bonus][r] - cider[best][r], ddof=1) / len(rows[r]) for r in rows if len(rows[r]) > 1]
        return float(np.sqrt(sum(variances))) / len(rows)

    grid = {}
    for bonus in GRID:
        grid[bonus] = {
            "CIDEr": ratios[bonus]["mean"],
            "standard_error": standard_error(bonus),
            "length_error": float(np.mean([mean_error(bonus, r) for r in rows])),
            "CIDEr_by_ratio": ratios[bonus],
        }
        if readings > 1:
            grid[bonus]["CIDEr_by_reading"] = [by_ratio(partial(of_reading, k, bonus)) for k in range(readings)]
    chosen = min(bonus for bonus in GRID if grid[bonus]["CIDEr"] >= grid[best]["CIDEr"] - grid[bonus]["standard_error"])
    return {
        "length_bonus": chosen,
        "best_bonus": best,
        "CIDEr": ratios[chosen],
        "length_error": {f"{r:g}": mean_error(chosen, r) for r in rows} | {"mean": grid[chosen]["length_error"]},
        "grid": {f"{bonus:g}": values for bonus, values in grid.items()},
    }
