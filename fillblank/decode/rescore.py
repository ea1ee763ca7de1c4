"""Ranking beam hypotheses by a whole sentence's score, reading only what is left to read.

A hypothesis of a beam search stands where its captioner has read <start>, the words
before the blank and the fill; the other captioner of the pair stands after <start> and
the words after the blank (`step.side`). So for each hypothesis Y

    own(Y) = read so far + log P(words after, <end> | read)     (step.finish)
    S(Y)   = own(Y) + log P_other(fill, words before, <end> | what it has read)   (step.other_way)

Each hypothesis is read on from where its search stands, never again from <start>: its own
captioner reads only the words after the blank. And own(Y) plus the other captioner's
log-prob of the context it has read is an upper bound of S(Y), since every term left out is
a log-prob, at most 0: `best` scores each blank's hypotheses in the order of that bound and
stops once no bound left beats the best S(Y) (plus the length bonus) found, so the other
captioner never reads the fills that cannot win. The bound leaves out the other captioner's
log-prob of the fill and of the words before it, so how much it spares depends on the
captioners (docs/decoding.md, "Decoding speed"). The answer is the pool's best, as scoring every fill
from <start> would give, up to ties in float rounding.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from fillblank.decode.beam import Beam
from fillblank.decode.step import SLACK, Side, finish, other_way

CHUNK = 16  # hypotheses of a blank scored together in a round, best bound first


@dataclass(frozen=True)
class Hypotheses:
    """Beam hypotheses found reading one way, each with its captioner's whole-sentence log-prob."""

    blank: Tensor  # shape: (R,), the blank each fills
    fills: list[list[int]]  # in the reading order of the search that found them
    own: Tensor  # shape: (R,), log P of the whole sentence under that search's captioner


def hypotheses(this: Side, beams: list[Beam], ranks: int | None = None) -> Hypotheses:
    """The first `ranks` (default: all) hypotheses of every blank in each of `beams`, beam by
    beam, finished by `this` side's captioner reading the words after the blank and <end>."""
    blank, fills, read, states, log_probs = [], [], [], [], []
    for beam in beams:
        n, width, _ = beam.tokens.shape
        k = width if ranks is None else ranks
        rows = (
            torch.arange(n, device=beam.score.device)[:, None] * width + torch.arange(k, device=beam.score.device)
        ).view(-1)  # shape: (N*k,)
        blank.append(rows // width)
        fills += beam.tokens[:, :k].reshape(n * k, -1).tolist()
        read.append(this.context[rows // width] + beam.score[:, :k].reshape(-1))
        states.append(tuple(tensor.index_select(0, rows) for tensor in beam.state))
        log_probs.append(beam.log_probs.index_select(0, rows))
    at, state = torch.cat(blank), tuple(torch.cat(parts) for parts in zip(*states, strict=True))
    return Hypotheses(at, fills, finish(this, at, torch.cat(read), state, torch.cat(log_probs)))


def scores(sides: tuple[Side, Side], d: int, found: Hypotheses, rows: list[int] | None = None) -> Tensor:
    """S(Y) of hypotheses `rows` (default: all) of `found`, found reading as `sides[d]`: (R,)."""
    index = list(range(len(found.fills))) if rows is None else rows
    at = torch.tensor(index, dtype=torch.long, device=found.blank.device)  # shape: (R,)
    return found.own[at] + other_way(sides[d], sides[1 - d], found.blank[at], [found.fills[r] for r in index])


def best(
    sides: tuple[Side, Side],
    found: tuple[Hypotheses, Hypotheses],
    bonus: float,
    start: tuple[list[list[int]], Tensor] | None = None,
) -> tuple[list[list[int]], Tensor]:
    """Each blank's fill (left to right) of highest S(Y) + `bonus` x words among the
    hypotheses `found[d]` of a search reading as `sides[d]` (left to right, then right to
    left) and, if given, `start`'s fills (one a blank, with their S(Y)), and that fill's S(Y): (N,)."""
    n = len(sides[0].blanks)
    # Every candidate c: its reading direction, its row there, its blank, its fill left to right.
    where = [(d, r) for d in (0, 1) for r in range(len(found[d].fills))]
    fills = found[0].fills + [fill[::-1] for fill in found[1].fills]
    blank = torch.cat([found[0].blank, found[1].blank]).tolist()
    bound = torch.cat([found[d].own + sides[1 - d].context[found[d].blank] for d in (0, 1)]).tolist()
    score: dict[int, float] = {}

    def value(take: list[int]) -> list[float]:
        for d in (0, 1):
            mine = [c for c in take if where[c][0] == d]
            if mine:
                score.update(zip(mine, scores(sides, d, found[d], [where[c][1] for c in mine]).tolist(), strict=True))
        return [score[c] + bonus * len(fills[c]) for c in take]

    chosen, best_score = (
        ([[] for _ in range(n)], [-math.inf] * n) if start is None else (list(start[0]), start[1].tolist())
    )
    to_beat = [s + bonus * len(fill) for fill, s in zip(chosen, best_score, strict=True)]
    for b, c in enumerate(
        best_first(blank, [x + bonus * len(fill) for x, fill in zip(bound, fills, strict=True)], value, to_beat)
    ):
        if c is not None:
            chosen[b], best_score[b] = fills[c], score[c]
    return chosen, torch.tensor(best_score)


def best_first(
    blank: list[int], bound: list[float], value: Callable[[list[int]], list[float]], to_beat: list[float]
) -> list[int | None]:
    """Each blank's candidate of highest value, or None where none beats `to_beat[b]`.

    Candidate c fills blank `blank[c]`; `value(cs)` computes the values of candidates `cs`,
    and `bound[c]` is an upper bound of c's. Each blank's candidates are valued CHUNK at a
    time, highest bound first, until no bound left beats the best value found (less SLACK).
    """
    best = list(to_beat)
    queue: list[list[int]] = [[] for _ in best]  # each blank's candidates, highest bound first
    for c in sorted(range(len(bound)), key=lambda c: -bound[c]):
        queue[blank[c]].append(c)
    chosen: list[int | None] = [None] * len(best)
    while True:
        take = []
        for b in range(len(best)):
            ahead, queue[b] = queue[b][:CHUNK], queue[b][CHUNK:]
            hopeful = [c for c in ahead if bound[c] >= best[b] - SLACK]
            if len(hopeful) < len(ahead):  # the rest have lower bounds still
                queue[b] = []
            take += hopeful
        if not take:
            return chosen
        for c, v in zip(take, value(take), strict=True):
            if v > best[blank[c]]:
                best[blank[c]], chosen[blank[c]] = v, c
