"""infill: the context encoder for captions (fillblank/infill.py) fills the blank by beam search.

The model reads the image and both sides of the blank, so one search left to right sees
all the context, where a captioner's sees only the left words. `fill.beam` hypotheses are
kept per blank (`beam.sweep`, the one beam search), each ranked by the infiller's log-prob
of its words. Known length: the length token says k, the search runs k words, and the
best hypothesis followed by <end> wins. Unknown length: the length token says "not
given", and every hypothesis of 1 to `p.max_length` words, followed by <end>, competes by
its log-prob + `p.length_bonus` x words: the model's own end marker, weighed by the length
rule that every unknown-length method follows (length.py). By its end marker alone it
filled far too short on flickr8k-dev (a mean length error of 5.5 words at ratio 0.75) and
lost a fifth of its known-length CIDEr there; the bonus that stage length tunes on
`bibs`'s fills is also the one that gives the infiller's own validation fills the most
CIDEr, on `shapes` (0.25) and flickr8k-dev (1.0) alike (docs/infill.md, 2026-12-02).

infill_rerank: both kinds of model together; see its docstring.
"""

import math

import torch
from torch import Tensor

from fillblank.data.text import END_ID, PAD_ID
from fillblank.decode.beam import sweep
from fillblank.decode.bibs import mbest
from fillblank.decode.registry import register
from fillblank.decode.rescore import best_first
from fillblank.decode.step import Blanks, Models, both_ways, read_on
from fillblank.errors import UserError
from fillblank.infill import LENGTHS, Infiller, context_ids, padded
from fillblank.params import Fill


@register(
    "infill",
    role="infiller",
    description="the context encoder for captions: a Transformer trained to fill blanks, by beam search",
)
@torch.inference_mode()
def infill(models: Models, blanks: Blanks, length: int | None, p: Fill) -> list[list[int]]:
    model = infiller(models)
    fills, log_probs = searched(model, encoded(model, blanks), length, p)
    bonus = p.length_bonus if length is None else 0.0  # the length rule (length.py)
    words = torch.tensor(
        [[len(fill) for fill in mine] for mine in fills], dtype=log_probs.dtype, device=log_probs.device
    )  # shape: (N, H)
    return [mine[i] for mine, i in zip(fills, (log_probs + bonus * words).argmax(1).tolist())]


def infiller(models: Models) -> Infiller:
    if models.infiller is None:
        raise UserError("infill needs the infiller data/models/<dataset>/infill.pt: run `dvc repro train_infill`")
    return models.infiller


def encoded(model: Infiller, blanks: Blanks) -> tuple[Tensor, Tensor]:
    """Each blank's image and words on both sides, read once by the infiller's encoder: the
    memory (N, I + S, width) and its padding mask (N, I + S)."""
    context = padded(
        [context_ids(left, right, model.blank) for left, right in zip(blanks.left, blanks.right)]
    )  # shape: (N, S)
    return model.encode(blanks.features, context.to(blanks.features.device))


def searched(
    model: Infiller, context: tuple[Tensor, Tensor], length: int | None, p: Fill
) -> tuple[list[list[list[int]]], Tensor]:
    """Each blank's hypotheses that the infiller may end with, of `length` words or of every
    length up to `p.max_length` (beam by beam), and its log-prob of each followed by <end>:
    (N, H). `context` is the blanks' `encoded` context."""
    memory, pad = context
    n, device = memory.shape[0], memory.device
    state, log_probs = model.begin(memory, pad, torch.full((n,), length or 0, device=device))
    beams = sweep(model, state, log_probs, length or p.max_length, p.beam)
    ends = [beams[length]] if length else beams[1:]
    fills = [[fill for beam in ends for fill in beam.tokens[b].tolist()] for b in range(n)]
    ended = torch.stack(
        [beam.score + beam.log_probs.view(n, p.beam, -1)[:, :, END_ID] for beam in ends], 1
    )  # shape: (N, L, B)
    return fills, ended.view(n, -1)


@register(
    "infill_rerank",
    role="infiller",
    description="the candidates of infill and bibs, reranked by S(Y) plus the infiller's log-prob of the fill",
)
@torch.inference_mode()
def infill_rerank(models: Models, blanks: Blanks, length: int | None, p: Fill) -> list[list[int]]:
    """Pools the fills that each search thinks best (every hypothesis of infill's beams, of
    the given length or of every length, and BiBS's `p.m_best`) and ranks them by the sum of
    both models' opinions: S(Y) from the captioners, log P(fill | image, context) from the
    infiller, which reads both sides of the blank at once; with the length unknown, plus
    the length bonus per word (fillblank/decode/length.py).

    The infiller's log-prob of its own hypotheses is their beam's score; of BiBS's fills
    it is read at once. S(Y) is read on from the context the captioners have read
    (`step.read_on`), in the order of an upper bound (the infiller's log-prob and the
    bonus, plus the context's log-probs: S(Y) cannot exceed them), and not for the fills
    that bound rules out (`rescore.best_first`). The answer is the pool's best, as
    scoring every fill would give, up to ties in float rounding."""
    model, n = infiller(models), len(blanks)
    context = encoded(model, blanks)
    found, found_lp = searched(model, context, length, p)
    of_bibs = [[fill for fill, _ in ranked] for ranked in mbest(models, blanks, length, p)]
    bibs_rows = [b for b, fills in enumerate(of_bibs) for _ in fills]
    bibs_lp = log_prob(model, context, bibs_rows, [fill for fills in of_bibs for fill in fills], length).split(
        [len(fills) for fills in of_bibs]
    )
    rows = [b for b in range(n) for _ in range(len(found[b]) + len(of_bibs[b]))]
    flat = [fill for b in range(n) for fill in found[b] + of_bibs[b]]
    bonus = p.length_bonus if length is None else 0.0  # the length rule (length.py)
    words = torch.tensor(
        [len(fill) for fill in flat], dtype=torch.float32, device=blanks.features.device
    )  # shape: (R,)
    extra = torch.cat([torch.cat([found_lp[b], bibs_lp[b]]) for b in range(n)]) + bonus * words  # shape: (R,)
    sides = both_ways(models, blanks)
    at = torch.tensor(rows, device=blanks.features.device)  # shape: (R,)
    bound = (sides[0].context[at] + sides[1].context[at] + extra).tolist()

    def value(take: list[int]) -> list[float]:
        index = torch.tensor(take, device=at.device)
        return (read_on(sides, at[index], [flat[c] for c in take]) + extra[index]).tolist()

    chosen = best_first(rows, bound, value, [-math.inf] * len(blanks))
    return [flat[c] for c in chosen]


def log_prob(
    model: Infiller, context: tuple[Tensor, Tensor], rows: list[int], fills: list[list[int]], length: int | None
) -> Tensor:
    """The infiller's log P(fill, <end> | image, left, right) of each fill, fill i of the
    blank in row `rows[i]` of `context` (`encoded`): (R,)."""
    memory, pad = context
    device = memory.device
    at = torch.tensor(rows, device=device)  # shape: (R,)
    prefix = padded([[min(length or 0, LENGTHS), *fill] for fill in fills]).to(
        device
    )  # shape: (R, T); told at most LENGTHS, as in training
    targets = padded([[*fill, END_ID] for fill in fills]).to(device)  # shape: (R, T)
    log_probs = model.decode(memory[at], pad[at], prefix).gather(2, targets[:, :, None])[:, :, 0]  # shape: (R, T)
    return torch.where(targets != PAD_ID, log_probs, 0.0).sum(1)
