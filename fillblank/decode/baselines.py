"""The baselines: beam search in one direction, and two ways to use both.

Each method is `method(models, blanks, length, p) -> fills`: `length` is the blank's length
in the known-length setting and `None` in the unknown one, where the method chooses it
from 1 to `p.max_length`; `p` is the `fill` section of params.

forward [URNN-f]: beam search with the forward captioner from the image and the left
    words; the right words are ignored. Known length: the best hypothesis after `length`
    words. Unknown length: one search of `max_length` words holds the best hypothesis of
    every length, and the length is chosen by the forward captioner's own log-prob of the
    whole sentence left + fill + right (plus the length bonus of scale `captioner` per
    word), read on from the search's states. That is the one place where it reads the right words, and it must:
    the log-prob of the fill alone always prefers one word.
backward [URNN-b]: the same with the backward captioner from the right words (the
    forward search on the mirrored blanks, fills turned back).
fb_max [URNN-fb-max]: the forward and the backward answer, whichever its own captioner
    gives the higher log-prob of the whole sentence (each with its own length, if unknown).
fb_rerank [URNN-fb-BiRNN]: the B hypotheses of both beam searches (of every length up to
    `max_length`, if unknown) pooled and reranked by S(Y) = log P_fwd(Y) + log P_bwd(Y)
    (plus the length bonus per word, if unknown); `rescore.best` finds the pool's best
    without reading most of it both ways.
"""

import torch

from fillblank.decode import rescore
from fillblank.decode.beam import Beam, sweep
from fillblank.decode.length import ranked
from fillblank.decode.models import Models
from fillblank.decode.registry import Candidates, register, scale
from fillblank.decode.step import Blanks, Side, both_ways, side
from fillblank.params import Fill


def beam_search(this: Side, steps: int, beam: int) -> list[Beam]:
    """Beam search of `steps` words after each blank's words before it, reading `this` way."""
    return sweep(this.models.forward, this.state, this.log_probs, steps, beam)


def choices(beams: list[Beam], length: int | None) -> list[Beam]:
    """The beams a method chooses from: the one of the given length, or all of them."""
    return [beams[length]] if length else beams[1:]


def one_way_candidates(this: Side, length: int | None, p: Fill) -> Candidates:
    """Each blank's best hypothesis (in `this` side's reading order) of the given length, or
    of every length, with `this` side's captioner's log-prob of the whole sentence."""
    beams = choices(beam_search(this, length or p.max_length, p.beam), length)
    found = rescore.hypotheses(this, beams, ranks=1)  # beam-major: row t * N + n
    n = len(this.blanks)
    own = found.own.view(len(beams), n).T.tolist()  # (N, T)
    return [[(found.fills[t * n + i], own[i][t]) for t in range(len(beams))] for i in range(n)]


def one_way(this: Side, length: int | None, p: Fill) -> tuple[list[list[int]], list[float]]:
    """The best hypothesis (in `this` side's reading order) of the given length, or of the
    length whose whole sentence `this` side's captioner scores highest plus the length bonus
    per word; and that sum."""
    bonus = p.length_bonus if length is None else 0.0
    best = [ranked(mine, 1, bonus)[0] for mine in one_way_candidates(this, length, p)]
    return [fill for fill, _ in best], [score + bonus * len(fill) for fill, score in best]


@scale("captioner", description="one captioner's log-prob of the sentence, tuned on forward's and backward's fills")
def one_captioner(models: Models, blanks: Blanks, p: Fill) -> list[Candidates]:
    """What `forward` and `backward` choose among: each search's best hypothesis of every
    length (the backward one's turned left to right), with its own captioner's log-prob."""
    forward = one_way_candidates(side(models, blanks), None, p)
    backward = one_way_candidates(side(models.mirrored(), blanks.mirrored()), None, p)
    return [forward, [[(fill[::-1], score) for fill, score in mine] for mine in backward]]


@register(
    "forward",
    role="baseline",
    scale="captioner",
    description="beam search with the forward captioner from the left words [URNN-f]",
)
@torch.inference_mode()
def forward(models: Models, blanks: Blanks, length: int | None, p: Fill) -> list[list[int]]:
    if length:  # the beam's best: no captioner need read the words after the blank
        return beam_search(side(models, blanks), length, p.beam)[-1].tokens[:, 0].tolist()
    return one_way(side(models, blanks), length, p)[0]


@register(
    "backward",
    role="baseline",
    scale="captioner",
    description="beam search with the backward captioner from the right words [URNN-b]",
)
@torch.inference_mode()
def backward(models: Models, blanks: Blanks, length: int | None, p: Fill) -> list[list[int]]:
    return [fill[::-1] for fill in forward(models.mirrored(), blanks.mirrored(), length, p)]


@register(
    "fb_max",
    role="baseline",
    scale="captioner",
    description="forward or backward, whichever its own captioner scores higher [URNN-fb-max]",
)
@torch.inference_mode()
def fb_max(models: Models, blanks: Blanks, length: int | None, p: Fill) -> list[list[int]]:
    forward_fills, forward_scores = one_way(side(models, blanks), length, p)
    backward_fills, backward_scores = one_way(side(models.mirrored(), blanks.mirrored()), length, p)
    pairs = zip(forward_fills, forward_scores, backward_fills, backward_scores, strict=True)
    return [f if fs >= bs else b[::-1] for f, fs, b, bs in pairs]


@register(
    "fb_rerank",
    role="baseline",
    scale="captioners",
    description="the hypotheses of both beam searches, reranked by S(Y) [URNN-fb-BiRNN]",
)
@torch.inference_mode()
def fb_rerank(models: Models, blanks: Blanks, length: int | None, p: Fill) -> list[list[int]]:
    sides = both_ways(models, blanks)
    return rescore.best(sides, pool(sides, length, p), p.length_bonus if length is None else 0.0)[0]


def pool(sides: tuple[Side, Side], length: int | None, p: Fill) -> tuple[rescore.Hypotheses, rescore.Hypotheses]:
    """The hypotheses of a beam search reading as each of `sides` (left to right, right to
    left), of the given length or of every length up to `p.max_length`."""
    found = [
        rescore.hypotheses(this, choices(beam_search(this, length or p.max_length, p.beam), length)) for this in sides
    ]
    return found[0], found[1]
