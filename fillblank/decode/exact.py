"""exact: the fill that maximises S(Y), by branch and bound; the oracle that measures the
other methods' search error. With the length unknown it maximises what every method
ranks lengths by, S(Y) + `p.length_bonus` x words (the length rule, length.py).

The fills of a blank are the paths of a tree of prefixes x_1 .. x_t grown left to right.
For a prefix,

    log P_fwd(<start> L x_1 .. x_t | I) + log P_bwd(<start> R reversed | I)

is at least the S(Y) of every sentence that completes it: every other term of S is a
log-prob, at most 0. With the length unknown, the bound adds the largest bonus a fill
through the prefix can still get. The search grows the tree one level at a time, all blanks of the batch
together, and drops a prefix once this bound falls below the best S(Y) known for its blank.
It starts from BiBS's answer (`bibs_unknown`'s when the length is unknown) as the best
known, so that most prefixes fall at the first levels. Complete fills, at level `length`
(or at every level up to `p.max_length` when the length is unknown), are scored by S(Y)
and raise the best known; the backward captioner reads only those that the forward
captioner's whole-sentence log-prob (a tighter bound) leaves a chance.

Where a blank keeps more than `p.exact_max_rows` prefixes at a level, only that many with
the highest bounds go on, so memory stays bounded: that blank's answer is then the best
found (never below BiBS's), not proven best, and a warning says for how many blanks. With
the small vocabulary of `shapes` the bound prunes enough; with a real vocabulary and long
blanks it cannot, which is where exhaustive search stops being feasible.
"""

import logging
from functools import partial

import torch
from torch import Tensor

from fillblank.decode.bibs import bibs, bibs_unknown
from fillblank.decode.registry import register
from fillblank.decode.step import (
    FIRST_WORD,
    SLACK,
    Blanks,
    Models,
    bidirectional,
    both_ways,
    fill_scores,
    finish,
    other_way,
    select,
)
from fillblank.params import Fill

log = logging.getLogger(__name__)


@register(
    "exact",
    role="oracle",
    scale="captioners",
    description="branch and bound for the fill of highest S(Y): the oracle; slow on long blanks",
)
@torch.inference_mode()
def exact(models: Models, blanks: Blanks, length: int | None, p: Fill) -> list[list[int]]:
    fills, proven = search(models, blanks, length, p)
    if not all(proven):
        log.warning(
            f"exact: {proven.count(False)} of {len(blanks)} blanks outgrew fill.exact_max_rows = {p.exact_max_rows} "
            f"prefixes; their fills are the best found, not proven best"
        )
    return fills


def search(models: Models, blanks: Blanks, length: int | None, p: Fill) -> tuple[list[list[int]], list[bool]]:
    """Each blank's best fill by S(Y) (plus the length bonus, if unknown), and whether it is proven best."""
    scorer = partial(bidirectional, models)
    seed = bibs(models, blanks, length, p) if length else bibs_unknown(models, blanks, None, p)
    bonus = 0.0 if length else p.length_bonus
    words = torch.tensor(
        [len(fill) for fill in seed], dtype=torch.float32, device=blanks.features.device
    )  # shape: (N,)
    best_fill, best_score = seed, fill_scores(scorer, blanks, range(len(blanks)), seed) + bonus * words  # shape: (N,)
    proven = [True] * len(blanks)

    this, other = both_ways(models, blanks)
    model, state, log_probs, prefix = models.forward, this.state, this.log_probs, this.context  # prefix: (N,)
    blank = torch.arange(len(blanks), device=prefix.device)  # shape: (R,), the blank of each prefix
    tokens = blank.new_zeros(len(blanks), 0)  # shape: (R, t)
    for depth in range(1, (length or p.max_length) + 1):
        grown = prefix[:, None] + log_probs  # shape: (R, V)
        grown[:, :FIRST_WORD] = -torch.inf
        most = max(bonus * depth, bonus * (length or p.max_length))  # the largest bonus still to come
        bound = grown + other.context[blank][:, None] + most  # shape: (R, V)
        parent, word = (bound >= best_score[blank][:, None] - SLACK).nonzero(as_tuple=True)  # shape: (R',)
        keep, over = cap(blank[parent], bound[parent, word], len(blanks), p.exact_max_rows)  # shape: (R'',)
        proven = [ok and not o for ok, o in zip(proven, over.tolist(), strict=True)]
        parent, word = parent[keep], word[keep]  # shape: (R'',)
        if len(parent) == 0:
            break
        blank, prefix = blank[parent], grown[parent, word]  # shape: (R'',)
        tokens = torch.cat([tokens[parent], word[:, None]], dim=1)  # shape: (R'', t)
        log_probs, state = model.step(word, select(state, parent))  # shape: (R'', V)
        if length is None or depth == length:
            # The forward captioner's whole sentence first: with it the bound is much
            # tighter, and only fills that can still win are read by the backward one.
            forward = finish(this, blank, prefix, state, log_probs)  # shape: (R'',)
            hope = (forward + other.context[blank] + bonus * depth > best_score[blank]).nonzero()[:, 0]  # shape: (H,)
            scores = (
                forward[hope] + other_way(this, other, blank[hope], tokens[hope].tolist()) + bonus * depth
            )  # shape: (H,)
            for row, score in zip(hope.tolist(), scores.tolist(), strict=True):
                b = int(blank[row])
                if score > best_score[b]:
                    best_score[b], best_fill[b] = score, tokens[row].tolist()
    return best_fill, proven


def cap(blank: Tensor, bound: Tensor, blanks: int, limit: int) -> tuple[Tensor, Tensor]:
    """The rows to keep, at most `limit` per blank, those with the highest bounds, in their
    order; and which blanks had more (blanks,). Each blank's rows are contiguous (the
    search keeps them in blank order), so a blank over the limit is one slice to `topk`."""
    counts = torch.bincount(blank, minlength=blanks)  # shape: (N,)
    over = counts > limit  # shape: (N,)
    if not bool(over.any()):
        return torch.arange(len(blank), device=blank.device), over
    keep = torch.ones(len(blank), dtype=torch.bool, device=blank.device)  # shape: (R,)
    starts = (counts.cumsum(0) - counts).tolist()
    for b in over.nonzero()[:, 0].tolist():
        rows = slice(starts[b], starts[b] + int(counts[b]))
        best = bound[rows].topk(limit, sorted=False).indices  # shape: (limit,)
        keep[rows] = False
        keep[starts[b] + best] = True
    return keep.nonzero()[:, 0], over
