"""infill and infill_rerank: filling the blank with the infiller (fillblank/infiller.py), a
context encoder for captions (Pathak et al., CVPR 2016, for images; Donahue et al., ACL
2020, "Enabling Language Models to Fill in the Blanks", for text).

infill: the model reads the image and both sides of the blank, so one search left to
right sees all the context, where a captioner's sees only the left words. `fill.beam`
hypotheses are kept per blank (`beam.sweep`, the one beam search), each ranked by the
infiller's log-prob of its words. Known length: the length token says k, the search runs k
words, and the best hypothesis followed by <end> wins. Unknown length: the length token
says "not given", and every hypothesis of 1 to `p.max_length` words, followed by <end>,
competes by its log-prob plus the length bonus of scale `infiller` per word: the model's
own end marker, weighed by the length rule (length.py; docs/length.md says why it needs one).

infill_rerank: both kinds of model together; see its docstring.
"""

import math

import torch
from torch import Tensor

from fillblank.data.text import END_ID, PAD_ID
from fillblank.decode.beam import sweep
from fillblank.decode.bibs import mbest_per_length
from fillblank.decode.length import choose
from fillblank.decode.models import Models
from fillblank.decode.registry import Candidates, register, scale
from fillblank.decode.rescore import best_first
from fillblank.decode.step import Blanks, both_ways, read_on
from fillblank.errors import UserError
from fillblank.infiller import LENGTHS, Infiller, context_ids, padded
from fillblank.params import Fill


@register(
    "infill",
    role="infiller",
    scale="infiller",
    description="the context encoder for captions: a Transformer trained to fill blanks, by beam search",
)
@torch.inference_mode()
def infill(models: Models, blanks: Blanks, length: int | None, p: Fill) -> list[list[int]]:
    return choose(own_candidates(models, blanks, length, p), p.length_bonus if length is None else 0.0)


def own_candidates(models: Models, blanks: Blanks, length: int | None, p: Fill) -> Candidates:
    """Each blank's hypotheses of the infiller's search, of `length` words or of every length,
    with its log-prob of each followed by <end>."""
    model = infiller(models)
    fills, log_probs = searched(model, encoded(model, blanks), length, p)
    return [list(zip(mine, scores, strict=True)) for mine, scores in zip(fills, log_probs.tolist(), strict=True)]


@scale(
    "infiller",
    description="the infiller's log-prob of the fill and <end>, tuned on infill's fills",
    reads_infiller=True,
)
@torch.inference_mode()
def infiller_scale(models: Models, blanks: Blanks, p: Fill) -> list[Candidates]:
    return [own_candidates(models, blanks, None, p)]


def infiller(models: Models) -> Infiller:
    if models.infiller is None:
        raise UserError("infill needs the infiller data/models/<dataset>/infiller.pt: run `dvc repro train_infiller`")
    return models.infiller


def encoded(model: Infiller, blanks: Blanks) -> tuple[Tensor, Tensor]:
    """Each blank's image and words on both sides, read once by the infiller's encoder: the
    memory (N, I + S, width) and its padding mask (N, I + S)."""
    context = padded(
        [context_ids(left, right, model.blank) for left, right in zip(blanks.left, blanks.right, strict=True)]
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
    scale="captioners_infiller",
    description="the candidates of infill and bibs, reranked by S(Y) plus the infiller's log-prob of the fill",
)
@torch.inference_mode()
def infill_rerank(models: Models, blanks: Blanks, length: int | None, p: Fill) -> list[list[int]]:
    """Pools the fills that each search thinks best (`pool`) and ranks them by the sum of both
    models' opinions: S(Y) from the captioners, log P(fill | image, context) from the
    infiller, which reads both sides of the blank at once; with the length unknown, plus
    the length bonus of scale `captioners_infiller` per word (fillblank/decode/length.py).

    S(Y) is read on from the context the captioners have read (`step.read_on`), in the
    order of an upper bound (the infiller's log-prob and the bonus, plus the context's
    log-probs: S(Y) cannot exceed them), and not for the fills that bound rules out
    (`rescore.best_first`). The answer is the pool's best, as scoring every fill would
    give, up to ties in float rounding."""
    rows, flat, log_probs = pool(models, blanks, length, p)
    bonus = p.length_bonus if length is None else 0.0
    words = torch.tensor([len(fill) for fill in flat], dtype=torch.float32, device=log_probs.device)  # shape: (R,)
    extra = log_probs + bonus * words  # shape: (R,)
    sides = both_ways(models, blanks)
    at = torch.tensor(rows, device=log_probs.device)  # shape: (R,)
    bound = (sides[0].context[at] + sides[1].context[at] + extra).tolist()

    def value(take: list[int]) -> list[float]:
        index = torch.tensor(take, device=at.device)
        return (read_on(sides, at[index], [flat[c] for c in take]) + extra[index]).tolist()

    chosen = best_first(rows, bound, value, [-math.inf] * len(blanks))
    return [flat[c] for c in chosen]


def pool(models: Models, blanks: Blanks, length: int | None, p: Fill) -> tuple[list[int], list[list[int]], Tensor]:
    """What infill_rerank chooses among: every hypothesis of the infiller's search and
    BiBS's `p.m_best` best fills by S(Y), at the given length or at each length (so that
    the pool is the same whatever the bonus); as each candidate's blank, its fill and the
    infiller's log-prob of it (R,). The infiller's log-prob of its own hypotheses is their
    beam's score; of BiBS's fills it is read at once."""
    model, n = infiller(models), len(blanks)
    context = encoded(model, blanks)
    found, found_lp = searched(model, context, length, p)
    of_bibs = mbest_per_length(models, blanks, [length] if length else range(1, p.max_length + 1), p)
    bibs_rows = [b for b, fills in enumerate(of_bibs) for _ in fills]
    bibs_lp = log_prob(model, context, bibs_rows, [fill for fills in of_bibs for fill in fills], length)
    bibs_lp = bibs_lp.split([len(fills) for fills in of_bibs])
    rows = [b for b in range(n) for _ in range(len(found[b]) + len(of_bibs[b]))]
    flat = [fill for b in range(n) for fill in found[b] + of_bibs[b]]
    return rows, flat, torch.cat([torch.cat([found_lp[b], bibs_lp[b]]) for b in range(n)])


@scale(
    "captioners_infiller",
    description="S(Y) plus the infiller's log-prob of the fill, tuned on infill_rerank's pool",
    reads_infiller=True,
)
@torch.inference_mode()
def captioners_and_infiller(models: Models, blanks: Blanks, p: Fill) -> list[Candidates]:
    rows, flat, log_probs = pool(models, blanks, None, p)
    sides = both_ways(models, blanks)
    at = torch.tensor(rows, device=log_probs.device)  # shape: (R,)
    scores = torch.cat(
        [
            read_on(sides, at[chunk.to(at.device)], [flat[c] for c in chunk.tolist()])
            for chunk in torch.arange(len(flat)).split(4096)
        ]
    )  # shape: (R,)
    candidates: Candidates = [[] for _ in range(len(blanks))]
    for b, fill, score in zip(rows, flat, (scores + log_probs).tolist(), strict=True):
        candidates[b].append((fill, score))
    return [candidates]


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
