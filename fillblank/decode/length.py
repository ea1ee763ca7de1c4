"""The length rule: how a method chooses among fills of different lengths when the length is unknown.

A sum of log-probabilities falls with every word, so the fill of highest S(Y) is nearly
always short: on Flickr8k `bibs` filled 3.0 words on average where 8.1 had been removed
(ratio 0.75), and lost a fifth of its CIDEr. As machine translation does with its word
penalty (Koehn et al., 2003) and GNMT's length normalisation (Wu et al., 2016), every
unknown-length method ranks fills of different lengths by

    S(Y) + length_bonus x len(fill)

(a one-way baseline, which ranks by its own captioner's log-prob alone, adds half the
bonus per word), while the score it reports stays S(Y). `fill.length_bonus` is a number
of nats, or `tuned`: the value the stage length@<dataset> finds on the validation split
(`tune`), never on test. Methods that end a fill by a model's own end marker (`infill`)
and the oracle `exact`, which proves the fill of highest S(Y), do not use it.
"""

import json
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import torch

from fillblank import blanks as blank_sets
from fillblank import features, tables
from fillblank.decode import rescore
from fillblank.decode.baselines import beam_search
from fillblank.decode.step import Blanks, Models, both_ways
from fillblank.errors import UserError
from fillblank.params import Fill

GRID = [step / 4 for step in range(41)]  # the bonuses tried: 0 to 10 nats per word


def tuned_path(dataset: str) -> Path:
    return Path("data/length") / f"{dataset}.json"


def resolved(p: Fill, tuned: Path) -> Fill:
    """`p` with `length_bonus` a number: its own, or when `tuned` the one recorded in `tuned`."""
    if p.length_bonus != "tuned":
        return p
    if not tuned.is_file():
        raise UserError(f"{tuned}: no such file; fill.length_bonus is tuned, so run `dvc repro length` first (or give it a number)")
    return p.model_copy(update={"length_bonus": float(json.loads(tuned.read_text(encoding="utf-8"))["length_bonus"])})


def validation_blanks(prepared: Path, features_path: Path, ratios: Sequence[float], images: int | None) -> pa.Table:
    """The blanks the rule is tuned on: the captions (`prepared`/captions.parquet) of the
    first `images` (None: all) validation images that have features (the features stage
    skips unreadable ones), cut at every ratio as the test blanks are."""
    captions = tables.read(prepared / "captions.parquet", ["image_id", "split", "sentence_id", "tokens"], made_by="prepare")
    captions = captions.filter(pc.is_in(captions["image_id"], pa.array(features.stored_ids(features_path))))
    return blank_sets.table(captions, ratios, images, split="val")


@torch.inference_mode()
def best_by_length(models: Models, blanks: Blanks, p: Fill) -> torch.Tensor:
    """S(Y) of each blank's best fill of each length 1 .. `p.max_length`: (N, max_length).

    The best of two candidates per length: the forward and the backward beam search's best
    hypothesis of that length, the cheapest pair of fills that both sides of a blank shape.
    """
    sides = both_ways(models, blanks)
    scores = [rescore.scores(sides, d, rescore.hypotheses(this, beam_search(this, p.max_length, p.beam)[1:], ranks=1))
              for d, this in enumerate(sides)]  # each beam-major: (max_length * N,)
    return torch.stack(scores).view(2, p.max_length, len(blanks)).amax(0).T


def tune(scores: torch.Tensor, lengths: torch.Tensor) -> dict:
    """The bonus of `GRID` whose choice of length, argmax over t of scores[:, t-1] + bonus x t,
    is nearest the true `lengths` (N,) on average (the smallest bonus among equals), and
    the mean length error of every bonus tried."""
    words = torch.arange(1, scores.shape[1] + 1, dtype=scores.dtype)  # shape: (T,)
    errors = {}
    for bonus in GRID:
        chosen = (scores + bonus * words).argmax(1) + 1  # shape: (N,)
        errors[bonus] = float((chosen - lengths).abs().float().mean())
    chosen = min(GRID, key=lambda bonus: (errors[bonus], bonus))
    return {"length_bonus": chosen, "length_error": errors[chosen], "blanks": len(lengths), "errors": errors}
