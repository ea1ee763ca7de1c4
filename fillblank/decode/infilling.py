"""infill: the context encoder for captions (fillblank/infill.py) fills the blank by beam search.

The model reads the image and both sides of the blank, so one search left to right sees
all the context, where a captioner's sees only the left words. `fill.beam` hypotheses are
kept per blank (`beam.sweep`, the one beam search), each ranked by the infiller's log-prob
of its words. Known length: the length token says k, the search runs k words, and the
best hypothesis followed by <end> wins. Unknown length: the length token says "not
given", and every hypothesis of 1 to `p.max_length` words, followed by <end>, competes:
the model ends the fill itself, by its own end marker.

infill_rerank: both kinds of model together; see its docstring.
"""

from functools import partial

import torch
from torch import Tensor

from fillblank.data.text import END_ID, PAD_ID
from fillblank.decode.beam import Beam, sweep
from fillblank.decode.bibs import mbest
from fillblank.decode.registry import register
from fillblank.decode.step import Blanks, Models, bidirectional, fill_scores
from fillblank.errors import UserError
from fillblank.infill import Infiller, context_ids, padded
from fillblank.params import Fill


@register("infill", role="infiller",
          description="the context encoder for captions: a Transformer trained to fill blanks, by beam search")
@torch.inference_mode()
def infill(models: Models, blanks: Blanks, length: int | None, p: Fill) -> list[list[int]]:
    n = len(blanks)
    ends = searched(infiller(models), blanks, length, p)
    complete = torch.stack([beam.score + beam.log_probs.view(n, p.beam, -1)[:, :, END_ID] for beam in ends], 1)  # shape: (N, L, B)
    best = complete.view(n, -1).argmax(1)  # shape: (N,)
    which, rank = (best // p.beam).tolist(), (best % p.beam).tolist()
    return [ends[w].tokens[i, r].tolist() for i, (w, r) in enumerate(zip(which, rank))]


def infiller(models: Models) -> Infiller:
    if models.infiller is None:
        raise UserError("infill needs the infiller data/models/<dataset>/infill.pt: run `dvc repro train_infill`")
    return models.infiller


def searched(model: Infiller, blanks: Blanks, length: int | None, p: Fill) -> list[Beam]:
    """The beams of the fills the infiller may end with: of `length` words, or of every length up to `p.max_length`."""
    device = blanks.features.device
    context = padded([context_ids(left, right, model.blank) for left, right in zip(blanks.left, blanks.right)]).to(device)  # shape: (N, S)
    state, log_probs = model.begin(blanks.features, context, torch.full((len(blanks),), length or 0, device=device))
    beams = sweep(model, state, log_probs, length or p.max_length, p.beam)
    return [beams[length]] if length else beams[1:]


@register("infill_rerank", role="infiller",
          description="the candidates of infill and bibs, reranked by S(Y) plus the infiller's log-prob of the fill")
@torch.inference_mode()
def infill_rerank(models: Models, blanks: Blanks, length: int | None, p: Fill) -> list[list[int]]:
    """Pools the fills that each search thinks best (every hypothesis of infill's beams, of
    the given length or of every length, and BiBS's `p.m_best`) and ranks them by the sum of
    both models' opinions: S(Y) from the captioners, log P(fill | image, context) from the
    infiller, which reads both sides of the blank at once; with the length unknown, plus
    the length bonus per word (fillblank/decode/length.py)."""
    model = infiller(models)
    ends = searched(model, blanks, length, p)
    hypotheses = [[fill for beam in ends for fill in beam.tokens[n].tolist()] for n in range(len(blanks))]
    pool = [fills + [fill for fill, _ in ranked] for fills, ranked in zip(hypotheses, mbest(models, blanks, length, p))]
    width = max(len(fills) for fills in pool)
    pool = [fills + [fills[0]] * (width - len(fills)) for fills in pool]  # `best` wants as many for every blank
    rows = [n for n in range(len(blanks)) for _ in range(width)]
    flat = [fill for fills in pool for fill in fills]
    scores = fill_scores(partial(bidirectional, models), blanks, rows, flat) + log_prob(model, blanks.take(rows), flat, length)  # shape: (N * C,)
    if length is None:  # the length rule (length.py)
        scores += p.length_bonus * torch.tensor([len(fill) for fill in flat], dtype=scores.dtype, device=scores.device)
    return [pool[n][i] for n, i in enumerate(scores.view(len(blanks), width).argmax(1).tolist())]


def log_prob(model: Infiller, blanks: Blanks, fills: list[list[int]], length: int | None) -> Tensor:
    """The infiller's log P(fill, <end> | image, left, right) of each blank's fill: (N,)."""
    device = blanks.features.device
    context = padded([context_ids(left, right, model.blank) for left, right in zip(blanks.left, blanks.right)]).to(device)  # shape: (N, S)
    memory, pad = model.encode(blanks.features, context)
    prefix = padded([[length or 0, *fill] for fill in fills]).to(device)  # shape: (N, T)
    targets = padded([[*fill, END_ID] for fill in fills]).to(device)  # shape: (N, T)
    log_probs = model.decode(memory, pad, prefix).gather(2, targets[:, :, None])[:, :, 0]  # shape: (N, T)
    return torch.where(targets != PAD_ID, log_probs, 0.0).sum(1)
