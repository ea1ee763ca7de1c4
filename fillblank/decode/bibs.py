"""Bidirectional Beam Search (BiBS; Sun, Lee & Batra, CVPR 2017), and its meeting-point
variant for a blank of unknown length.

bibs [BiRNN-BSCD], known length k:
  1. A forward beam search of k words from the left words gives B complete fills.
  2. Sweeps then alternate direction, the words around the blank fixed. A right-to-left
     sweep is the backward captioner's beam search from the right words, where extending a
     suffix y_>t (backward score g) by the word w at position t ranks as

         g + log p_bwd(w | R, y_>t) + max_i [ f_i + log p_fwd(w | L, y_<t^i) ]

     the max running over the previous left-to-right sweep's prefixes y_<t^i at position t
     (score f_i). A left-to-right sweep is the mirror image. `beam.handover` holds that max
     per position and word; a sweep ranks by it and keeps its own-direction score.
  3. The M = `p.m_best` best fills of every sweep after the start, by the sweep's own
     ranking, and the start's best fill are scored by the true S(Y) = log P_fwd(Y|I) +
     log P_bwd(Y|I) (each fill once, from the states the two captioners already hold:
     `step.complete`); the answer is the best fill seen over all sweeps, the start included
     (never worse than forward beam search), and `mbest` gives the M best. Scoring the
     whole sentence costs more than the sweep that found the fill, so M (not the beam) sets
     how many are scored. The sweep's own ranking weighs its last word by the handover; the
     start ranks its fills without the right words, so only its best is scored. (Ranking
     through the words after the blank, and scoring the start's runners-up, were tried and
     dropped: docs/decoding.md, "Variants tried".)
  4. A blank stops when its beams no longer change, that is when a sweep brings no new
     fill among its M best, or after `p.sweeps` sweeps (after the start); later sweeps
     run on the blanks still changing only.
  Unknown length: BiBS at every length 1 .. `p.max_length`, the best of them all by S(Y)
  plus the length bonus of scale `captioners` per word (the length rule, length.py).

bibs_unknown [BiRNN-BSMP, meeting point], unknown length only:
  1. One forward beam search of `max_length` words from the left and one backward from
     the right; each leaves, at every depth, each word's best score after its hypotheses.
  2. A fill of length t meets at a word w with i words before it from the forward search
     and t-1-i after it from the backward one. For each t, the best meeting over all i and
     w (forward score + backward score, both including w) gives one candidate fill.
  3. The candidates are those meeting fills and every hypothesis of both searches (the
     pool `fb_rerank` chooses from). The length is that of the candidate with the highest
     true S(Y) plus the length bonus per word (length.py; rescore.best finds it without
     reading most of the searches' hypotheses both ways); BiBS then fills a blank of that
     length, and the answer is the best by the same measure among BiBS's fills and all the
     candidates, so never below `fb_rerank`'s.
  It costs two beam searches, the S(Y) of each candidate and one BiBS, against BiBS at
  every length for `bibs`; the evaluation reports the chosen length beside the true one.
"""

from collections.abc import Iterable
from functools import partial

import torch
from torch import Tensor

from fillblank.decode import rescore
from fillblank.decode.baselines import beam_search
from fillblank.decode.beam import Beam, handover, sweep
from fillblank.decode.length import ranked
from fillblank.decode.models import Models
from fillblank.decode.registry import Candidates, register, scale
from fillblank.decode.step import Blanks, bidirectional, both_ways, complete, fill_scores, select
from fillblank.errors import UserError
from fillblank.params import Fill

Seen = dict[tuple[int, ...], float]


def search(models: Models, blanks: Blanks, length: int, p: Fill) -> list[Seen]:
    """BiBS with blanks of `length` words: every fill it scored, with its S(Y), per blank."""
    sides = both_ways(models, blanks)
    seen: list[Seen] = [{} for _ in range(len(blanks))]
    active, context = (
        torch.arange(len(blanks), device=blanks.features.device),
        None,
    )  # the blanks whose last sweep found new fills
    for turn in range(p.sweeps + 1):
        this, other = sides[turn % 2].take(active), sides[1 - turn % 2].take(active)
        beams = sweep(this.models.forward, this.state, this.log_probs, length, p.beam, context)
        last = beams[-1]
        ends = (last.tokens if turn % 2 == 0 else last.tokens.flip(2)).tolist()  # (A, B, length), left to right
        scored = 1 if turn == 0 else p.m_best  # the start ranks without the right words: only its best is worth S(Y)
        new = [
            (a, j)
            for a, n in enumerate(active.tolist())
            for j, fill in enumerate(ends[a][:scored])
            if tuple(fill) not in seen[n]
        ]
        if not new:
            break
        at, rank = torch.tensor(new, device=last.score.device).T  # shape: (R,) each
        rows = at * p.beam + rank  # shape: (R,)
        read = this.context[at] + last.score[at, rank]  # shape: (R,)
        scores = complete(
            this, other, at, last.tokens[at, rank].tolist(), read, select(last.state, rows), last.log_probs[rows]
        )
        for (a, j), score in zip(new, scores.tolist(), strict=True):
            seen[int(active[a])][tuple(ends[a][j])] = score
        going = at.unique()  # shape: (A',)
        active, context = active[going], handover(beams).flip(0)[:, going]  # context: (length, A', V)
    return seen


@torch.inference_mode()
def scored(models: Models, blanks: Blanks, sizes: Iterable[int], p: Fill) -> list[Seen]:
    """Every fill BiBS scored for each blank, searching at each length of `sizes`, with its S(Y)."""
    seen: list[Seen] = [{} for _ in range(len(blanks))]
    for size in sizes:
        for merged, found in zip(seen, search(models, blanks, size, p), strict=True):
            merged.update(found)
    return seen


def mbest(models: Models, blanks: Blanks, length: int | None, p: Fill) -> list[list[tuple[list[int], float]]]:
    """The `p.m_best` best fills of each blank and their S(Y); of every length up to
    `p.max_length`, by S(Y) plus the length bonus, when `length` is None."""
    seen = scored(models, blanks, [length] if length else range(1, p.max_length + 1), p)
    return [ranked(s.items(), p.m_best, 0.0 if length else p.length_bonus) for s in seen]


def mbest_per_length(models: Models, blanks: Blanks, lengths: Iterable[int], p: Fill) -> list[list[list[int]]]:
    """Each blank's `p.m_best` best fills by S(Y) at each of `lengths`: a pool that holds the
    `p.m_best` best of all by S(Y) plus any length bonus, for every bonus at once."""
    found: list[list[list[int]]] = [[] for _ in range(len(blanks))]
    for length in lengths:
        for mine, seen in zip(found, search(models, blanks, length, p), strict=True):
            mine += [fill for fill, _ in ranked(seen.items(), p.m_best)]
    return found


@scale("captioners", description="S(Y) = log P_fwd(Y | I) + log P_bwd(Y | I) (BiBS eq. 6), tuned on bibs's fills")
def every_length(models: Models, blanks: Blanks, p: Fill) -> list[Candidates]:
    """Every fill that BiBS scores at each length, with its S(Y): what `bibs` chooses among."""
    seen = scored(models, blanks, range(1, p.max_length + 1), p)
    return [[[(list(fill), score) for fill, score in mine.items()] for mine in seen]]


@register(
    "bibs",
    role="bidirectional",
    scale="captioners",
    ranks=mbest,
    description="Bidirectional Beam Search: sweeps left and right over the blank [BiRNN-BSCD]",
)
def bibs(models: Models, blanks: Blanks, length: int | None, p: Fill) -> list[list[int]]:
    return [fills[0][0] for fills in mbest(models, blanks, length, p)]


def candidate(models: Models, blanks: Blanks, p: Fill) -> tuple[list[list[int]], Tensor]:
    """Each blank's best fill by S(Y) plus the length bonus per word among: for each length
    1 .. max_length the fill of the best meeting, and every hypothesis of the forward and
    the backward beam search; and its S(Y) (N,)."""
    sides = both_ways(models, blanks)
    forward, backward = (beam_search(this, p.max_length, p.beam) for this in sides)
    meet = meetings(forward, backward, p.max_length)
    rows = [n for n, fills in enumerate(meet) for _ in fills]
    scores = fill_scores(partial(bidirectional, models), blanks, rows, [f for fills in meet for f in fills]).view(
        len(blanks), -1
    )  # shape: (N, K)
    words = torch.tensor(
        [[len(f) for f in fills] for fills in meet], dtype=scores.dtype, device=scores.device
    )  # shape: (N, K)
    top = (scores + p.length_bonus * words).argmax(1)  # shape: (N,)
    start = [fills[k] for fills, k in zip(meet, top.tolist(), strict=True)], scores.gather(1, top[:, None])[:, 0]
    found = rescore.hypotheses(sides[0], forward[1:]), rescore.hypotheses(sides[1], backward[1:])
    return rescore.best(sides, found, p.length_bonus, start)


def meetings(forward: list[Beam], backward: list[Beam], steps: int) -> list[list[list[int]]]:
    """For each blank, for each length 1 .. `steps`, the fill of the best meeting of the two searches."""
    ahead, ahead_from = best_after(forward)  # shape: (K, N, V)
    behind, behind_from = best_after(backward)  # shape: (K, N, V)
    n, vocab = ahead.shape[1:]
    found: list[list[list[int]]] = [[] for _ in range(n)]
    for length in range(1, steps + 1):
        meet = ahead[:length] + behind[:length].flip(0)  # shape: (t, N, V): i words before w, t-1-i after
        where = meet.permute(1, 0, 2).reshape(n, -1).argmax(1)  # shape: (N,)
        for b, (i, w) in enumerate(zip((where // vocab).tolist(), (where % vocab).tolist(), strict=True)):
            j = length - 1 - i
            before = forward[i].tokens[b, ahead_from[i, b, w]].tolist()
            after = backward[j].tokens[b, behind_from[j, b, w]].tolist()
            found[b].append(before + [w] + after[::-1])
    return found


def best_after(beams: list[Beam]) -> tuple[Tensor, Tensor]:
    """Each word's best score after the i-word hypotheses, and which hypothesis: (K, N, V) each."""
    scores, parents = zip(*(beam.extensions().max(1) for beam in beams[:-1]), strict=True)
    return torch.stack(scores), torch.stack(parents)


@register(
    "bibs_unknown",
    role="bidirectional",
    scale="captioners",
    settings=("unknown",),
    description="BiBS at the length where forward and backward searches meet best [BiRNN-BSMP]",
)
@torch.inference_mode()
def bibs_unknown(models: Models, blanks: Blanks, length: int | None, p: Fill) -> list[list[int]]:
    if length is not None:
        raise UserError("bibs_unknown chooses the blank's length itself: it runs in the unknown-length setting only")
    fills, scores = candidate(models, blanks, p)
    answers: list[list[int]] = [[] for _ in range(len(blanks))]
    for size in sorted({len(fill) for fill in fills}):
        index = [n for n, fill in enumerate(fills) if len(fill) == size]
        for n, seen in zip(index, search(models, blanks.take(index), size, p), strict=True):
            seen.setdefault(tuple(fills[n]), float(scores[n]))
            answers[n] = ranked(seen.items(), 1, p.length_bonus)[0][0]
    return answers
