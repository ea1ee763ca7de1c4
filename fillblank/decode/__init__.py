"""Filling blanks: beam search, the baselines, BiBS and exact search over one step interface.

A decoder sees the captioners only through `init` and `step` (`step.py`); every method is
`method(models, blanks, length, p) -> fills` (the `Method` protocol of `registry.py`, where
each method is declared once), batched over blanks x hypotheses, with the blank's length
given (known-length setting) or `None` (unknown: the method chooses it, up to
`p.max_length`, by the length rule of `length.py`), `p` the `fill` section of params with
`length_bonus` the number of the method's scale. What each does is in its module's docstring:

    forward, backward, fb_max, fb_rerank   baselines.py   (URNN-f, URNN-b, URNN-fb-max, URNN-fb-BiRNN)
    bibs, bibs_unknown                     bibs.py        (BiRNN-BSCD, BiRNN-BSMP)
    infill, infill_rerank                  infill.py      (the context encoder for captions, fillblank/infiller.py)
    exact                                  exact.py       (branch and bound on S(Y))

`fill` runs one method over a batch of blanks; `fill_table` over a whole blank set, in
every setting the method runs in, on the device the blanks' features are on (`device`
picks it from `fill.device`; the models must be there too), and under torchrun with the
batches shared among the processes. The fill stage writes its table as
`data/fills/<ds>/<method>.parquet` (`SCHEMA`), one row per (blank, setting):

    blank_id  int64         the blank (see fillblank/blanks.py)
    setting   string        known | unknown
    fill      list<string>  the words put in the blank
    sentence  string        left + fill + right, joined by spaces
    score     float64       S(Y) = log P_fwd(Y|I) + log P_bwd(Y|I) of the whole sentence
    length    int64         len(fill): the length chosen, in the unknown setting
    seconds   float64       the method's time for the blank's batch, per blank

The table's metadata holds, under `provenance`, the JSON of what computed it: this
process's machine and each captioner's (`fillblank.provenance`).
"""

import json
import time
from collections import defaultdict
from dataclasses import dataclass
from functools import partial

import pyarrow as pa
import torch
from tqdm import tqdm

from fillblank import distributed, provenance
from fillblank.data.text import Vocab
from fillblank.decode import registry
from fillblank.decode.models import Models
from fillblank.decode.step import Blanks, bidirectional, fill_scores
from fillblank.errors import UserError
from fillblank.params import Fill

SCHEMA = pa.schema(
    [
        ("blank_id", pa.int64()),
        ("setting", pa.string()),
        ("fill", pa.list_(pa.string())),
        ("sentence", pa.string()),
        ("score", pa.float64()),
        ("length", pa.int64()),
        ("seconds", pa.float64()),
    ]
)


@dataclass(frozen=True)
class Filled:
    tokens: list[int]
    score: float  # S(Y) of the whole sentence
    seconds: float  # the method's time for the batch, per blank


def device(choice: str) -> torch.device:
    """The device of `fill.device`: `auto` is CUDA when PyTorch sees a GPU, else the CPU.
    Under torchrun each process takes the GPU of its local rank."""
    cuda = torch.cuda.is_available()
    if choice == "cuda" and not cuda:
        raise UserError("fill.device is cuda, but PyTorch sees no CUDA GPU here (use auto or cpu)")
    if choice == "cpu" or not cuda:
        return torch.device("cpu")
    return torch.device("cuda", distributed.local_rank())


@torch.inference_mode()
def fill(method: str, models: Models, blanks: Blanks, lengths: list[int] | None, p: Fill) -> list[Filled]:
    """Fill every blank with `method`, in batches of `p.batch` blanks of one length.

    `lengths` are the blanks' lengths (known-length setting), or `None` (unknown length).
    Under torchrun each process fills every world-th batch, the batches a single process
    would fill, so that the fills are the same bits, and all of them get every fill.
    """
    groups = defaultdict(list)  # blank indices by length, or all together when unknown
    for i in range(len(blanks)):
        groups[None if lengths is None else lengths[i]].append(i)
    batches = [
        (length, index[at : at + p.batch]) for length, index in groups.items() for at in range(0, len(index), p.batch)
    ]
    rank, world = distributed.rank_world()
    mine = batches[rank::world]
    entry = registry.entry(method)
    models = entry.given(models)
    filled: dict[int, Filled] = {}
    setting = "unknown" if lengths is None else "known"
    with tqdm(
        total=sum(len(index) for _, index in mine), desc=f"{method} ({setting} length)", unit="blank", disable=rank != 0
    ) as progress:
        for length, index in mine:
            batch = blanks.take(index)
            began = time.perf_counter()
            fills = entry.fill(models, batch, length, p)
            seconds = (time.perf_counter() - began) / len(index)
            scores = fill_scores(partial(bidirectional, models), batch, range(len(index)), fills)  # shape: (N,)
            for i, tokens, score in zip(index, fills, scores.tolist(), strict=True):
                filled[i] = Filled(tokens, score, seconds)
            progress.update(len(index))
    everyone = {i: result for part in distributed.gather(filled) for i, result in part.items()}
    return [everyone[i] for i in range(len(blanks))]


def fill_table(
    method: str, models: Models, vocab: Vocab, blank_set: pa.Table, features: torch.Tensor, p: Fill, trained_on: dict
) -> pa.Table:
    """Fill every blank of `blank_set` (columns blank_id, left, blank, right) with `method`, in
    each of its settings; `features` (N, D) are the blanks' images, row by row. `trained_on`
    is the captioners' provenance, `{"forward": ..., "backward": ...}`, kept in the metadata."""
    left, blank, right = (blank_set[name].to_pylist() for name in ("left", "blank", "right"))
    blanks = Blanks.of_words(features, left, right, vocab)
    columns = {name: [] for name in SCHEMA.names}
    for setting in registry.entry(method).settings:
        filled = fill(method, models, blanks, [len(b) for b in blank] if setting == "known" else None, p)
        for blank_id, before, after, result in zip(blank_set["blank_id"].to_pylist(), left, right, filled, strict=True):
            words = vocab.decode(result.tokens)
            row = (blank_id, setting, words, " ".join(before + words + after), result.score, len(words), result.seconds)
            for name, value in zip(SCHEMA.names, row, strict=True):
                columns[name].append(value)
    made_by = {"fill": provenance.machine(blanks.features.device), **trained_on}
    return pa.table(columns, schema=SCHEMA.with_metadata({"provenance": json.dumps(made_by)}))
