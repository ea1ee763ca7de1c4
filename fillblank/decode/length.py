"""The length rule: how a method chooses among fills of different lengths when the length is unknown.

A sum of log-probabilities falls with every word, so the fill of highest S(Y) is nearly
always short: on Flickr8k `bibs` filled 3.0 words on average where 8.1 had been removed
(ratio 0.75), and lost a fifth of its CIDEr. As machine translation does with its word
penalty (Koehn et al., 2003) and GNMT's length normalisation (Wu et al., 2016), every
unknown-length method ranks fills of different lengths by

    S(Y) + length_bonus x len(fill)

(a one-way baseline, which ranks by its own captioner's log-prob alone, adds half the
bonus per word), while the score it reports stays S(Y). `fill.length_bonus` is a number
of nats, or `tuned`: the value the stage length@<dataset> finds on the validation split,
never on test (`tune`): the bonus whose choices among `bibs`'s fills of every length give
the most CIDEr there. Tuned to the length error instead, the bonus chose lengths nearer the
true ones but fills of less CIDEr: on flickr8k-dev 1.75 nats against 1.0, and `bibs` kept
92.7% of its known-length CIDEr on the short blanks of ratio 0.25 against 96.8% (README,
Choosing the length). The infiller, which ends a fill by its own end marker, ranks its
ended fills by its log-prob + bonus x len(fill), the same bonus (fillblank/decode/infilling.py
says why); the oracle `exact` proves the fill of highest S(Y) + bonus x len(fill).
"""

import json
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from fillblank import blanks as blank_sets
from fillblank import evaluate, features, tables
from fillblank.data.text import Vocab
from fillblank.decode import bibs
from fillblank.decode.step import Blanks, Models
from fillblank.errors import UserError
from fillblank.params import Fill

GRID = [step / 4 for step in range(21)]  # the bonuses tried: 0 to 5 nats per word


def tuned_path(dataset: str) -> Path:
    return Path("data/length") / f"{dataset}.json"


def resolved(p: Fill, tuned: Path) -> Fill:
    """`p` with `length_bonus` a number: its own, or when `tuned` the one recorded in `tuned`."""
    if p.length_bonus != "tuned":
        return p
    if not tuned.is_file():
        raise UserError(
            f"{tuned}: no such file; fill.length_bonus is tuned, so run `dvc repro length` first (or give it a number)"
        )
    return p.model_copy(update={"length_bonus": float(json.loads(tuned.read_text(encoding="utf-8"))["length_bonus"])})


def validation_blanks(prepared: Path, features_path: Path, ratios: Sequence[float], images: int | None) -> pa.Table:
    """The blanks the rule is tuned on: the captions (`prepared`/captions.parquet) of the
    first `images` (None: all) validation images that have features (the features stage
    skips unreadable ones), cut at every ratio as the test blanks are."""
    captions = tables.read(
        prepared / "captions.parquet", ["image_id", "split", "sentence_id", "tokens"], made_by="prepare"
    )
    captions = captions.filter(pc.is_in(captions["image_id"], pa.array(features.stored_ids(features_path))))
    return blank_sets.table(captions, ratios, images, split="val")


def candidates(models: Models, blanks: Blanks, p: Fill) -> list[bibs.Seen]:
    """What `bibs` chooses among with the length unknown: every fill its searches at each
    length 1 .. `p.max_length` scored, with its S(Y), per blank."""
    return bibs.scored(models, blanks, range(1, p.max_length + 1), p)


def tune(seen: list[bibs.Seen], vocab: Vocab, blank_set: pa.Table, refs: Sequence[Sequence[str]]) -> dict:
    """The bonus of `GRID` whose choices among each blank's candidates `seen` give the most
    CIDEr on `blank_set` (columns left, blank, right, ratio), against each blank's `refs`,
    averaged over its ratios (the smallest bonus among equals); with the CIDEr and the mean
    length error of every bonus tried."""
    left, blank, right, ratio = (blank_set[name].to_pylist() for name in ("left", "blank", "right", "ratio"))
    ratios = sorted(set(ratio))
    runs, errors = {}, {}
    for bonus in GRID:
        fills = [vocab.decode(bibs.ranked(s, 1, bonus)[0][0]) for s in seen]
        errors[bonus] = sum(abs(len(fill) - len(removed)) for fill, removed in zip(fills, blank)) / len(blank)
        for r in ratios:
            runs[bonus, r] = {i: " ".join(left[i] + fills[i] + right[i]) for i in range(len(blank)) if ratio[i] == r}
    by_run = evaluate.cider(dict(enumerate(refs)), runs)
    cider = {bonus: sum(by_run[bonus, r] for r in ratios) / len(ratios) for bonus in GRID}
    chosen = max(GRID, key=lambda bonus: (cider[bonus], -bonus))
    return {
        "length_bonus": chosen,
        "CIDEr": cider[chosen],
        "length_error": errors[chosen],
        "blanks": len(blank),
        "cider": cider,
        "errors": errors,
    }
