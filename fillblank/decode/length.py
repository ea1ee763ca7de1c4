"""The length rule: how a method chooses among fills of different lengths when the length is unknown.

A sum of log-probabilities falls with every word, so the fill of highest score is nearly
always short. As machine translation does with its word penalty (Koehn et al., 2003) and
GNMT's length normalisation (Wu et al., 2016), every unknown-length method ranks fills of
different lengths by

    score + length_bonus x len(fill)

where the score is that of its scale (fillblank/decode/registry.py): S(Y) for BiBS and the
two-way baselines, one captioner's log-prob for the one-way ones, the infiller's log-prob
for `infill`, S(Y) plus the infiller's for `infill_rerank`. The bonus belongs to the scale,
not to the method or the dataset alone: a sum of two captioners' log-probs falls about
twice as fast per word as one captioner's, and a model trained to fill falls at its own
rate. The score a method reports stays S(Y).

`fill.length_bonus` is a number of nats, or `tuned`, or a mapping from scale to either
(a scale it leaves out is `tuned`). `tuned` is the value stage length@<dataset> finds on
the validation split, never on test (fillblank/tuning.py): for each scale, the smallest
bonus whose choices among that scale's candidates give CIDEr there, averaged over the
ratios, within one standard error of the best bonus's. The candidates are searched once
per blank at every length; each bonus then only picks among them. docs/length.md has the
bonuses found and what they give.

`data/length/<dataset>.json`:

    {"blanks": 1500, "models": {"forward.pt": "<sha256>", ...},
     "scales": {"captioners": {"length_bonus": 0.75, "best_bonus": 1.0,
                               "CIDEr": {"0.25": ..., "0.5": ..., "0.75": ..., "mean": ...},
                               "length_error": {"0.25": ..., ..., "mean": ...},
                               "grid": {"0": {"CIDEr": ..., "standard_error": ...,
                                              "length_error": ...,
                                              "CIDEr_by_ratio": {"0.25": ..., ..., "mean": ...},
                                              "CIDEr_by_reading": [{"0.25": ..., ...}, ...]},
                                        ...}},
                ...}}

(CIDEr and length error of the chosen bonus per ratio; for every bonus tried, their means
over the ratios, the standard error of its CIDEr's difference from the best bonus's, and its
CIDEr per ratio, also per reading where a scale has several, as `captioner` has forward's
and backward's.)
"""

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from fillblank.decode.registry import Candidates, Entry, scales
from fillblank.errors import UserError
from fillblank.params import Fill


def tuned_path(dataset: str) -> Path:
    return Path("data/length") / f"{dataset}.json"


def check(p: Fill) -> dict[str, float | str]:
    """Every scale's setting in `p.length_bonus` (a number or `tuned`); a scale it names that
    is not declared is one line."""
    known = scales()
    given = p.length_bonus if isinstance(p.length_bonus, dict) else dict.fromkeys(known, p.length_bonus)
    if odd := sorted(given.keys() - known.keys()):
        raise UserError(f"fill.length_bonus: no scale {odd[0]!r}; the scales are {', '.join(known)}")
    return {name: given.get(name, "tuned") for name in known}


def bonuses(p: Fill, tuned: Path) -> dict[str, float]:
    """Every scale's bonus: `p.length_bonus`'s number, or the one recorded in `tuned`."""
    chosen = check(p)
    if "tuned" not in chosen.values():
        return chosen
    if not tuned.is_file():
        raise UserError(f"{tuned}: no such file; fill.length_bonus is tuned, so run `dvc repro length` first")
    recorded = json.loads(tuned.read_text(encoding="utf-8")).get("scales", {})
    if missing := [name for name, bonus in chosen.items() if bonus == "tuned" and name not in recorded]:
        raise UserError(f"{tuned}: no bonus for scale {missing[0]!r}; run `dvc repro length` again")
    return {
        name: float(recorded[name]["length_bonus"]) if bonus == "tuned" else bonus for name, bonus in chosen.items()
    }


def for_method(p: Fill, entry: Entry, tuned: Path) -> Fill:
    """`p` as method `entry` reads it: `length_bonus` the number of its scale."""
    return p.model_copy(update={"length_bonus": bonuses(p, tuned)[entry.scale]})


def ranked(
    candidates: Iterable[tuple[Sequence[int], float]], m: int, bonus: float = 0.0
) -> list[tuple[list[int], float]]:
    """The `m` best of one blank's candidates (fill, score), best first by score plus `bonus`
    per word; the earlier first among equals."""
    best = sorted(candidates, key=lambda candidate: -(candidate[1] + bonus * len(candidate[0])))
    return [(list(fill), score) for fill, score in best[:m]]


def choose(candidates: Candidates, bonus: float) -> list[list[int]]:
    """Each blank's fill of highest score plus `bonus` per word, among its `candidates`."""
    return [ranked(mine, 1, bonus)[0][0] for mine in candidates]
