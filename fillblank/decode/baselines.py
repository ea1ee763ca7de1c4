"""The baselines: beam search in one direction, and two ways to use both.

Each method is `method(models, blanks, length, p) -> fills`: `length` is the blank's length
in the known-length setting and `None` in the unknown one, where the method chooses it
from 1 to `p.max_length`; `p` is the `fill` section of params.

forward [URNN-f]: beam search with the forward captioner from the image and the left
    words; the right words are ignored. Known length: the best hypothesis after `length`
    words. Unknown length: one search of `max_length` words holds the best hypothesis of
    every length, and the length is chosen by the forward captioner's own log-prob of the
    whole sentence left + fill + right. That is the one place where it reads the right
    words, and it must: the log-prob of the fill alone always prefers one word.
backward [URNN-b]: the same with the backward captioner from the right words (the
    forward search on the mirrored blanks, fills turned back).
fb_max [URNN-fb-max]: the forward and the backward answer, whichever its own captioner
    gives the higher log-prob of the whole sentence (each with its own length, if unknown).
fb_rerank [URNN-fb-BiRNN]: the B hypotheses of both beam searches (of every length up to
    `max_length`, if unknown) pooled and reranked by S(Y) = log P_fwd(Y) + log P_bwd(Y)
    (plus the length bonus per word, if unknown).
"""

from functools import partial

import torch
from torch import Tensor

from fillblank.decode.beam import Beam, sweep
from fillblank.decode.registry import register
from fillblank.decode.step import Blanks, Models, advance, best, bidirectional, log_prob, start
from fillblank.params import Fill


def beam_search(models: Models, blanks: Blanks, steps: int, beam: int) -> list[Beam]:
    """Forward beam search of `steps` words after each blank's left words."""
    state, log_probs = start(models.forward, blanks.features)
    state, log_probs, _ = advance(models.forward, state, log_probs, blanks.left)
    return sweep(models.forward, state, log_probs, steps, beam)


def choices(beams: list[Beam], length: int | None) -> list[Beam]:
    """The beams a method chooses from: the one of the given length, or all of them."""
    return [beams[length]] if length else beams[1:]


def one_way(models: Models, blanks: Blanks, length: int | None, p: Fill, own_score: bool) -> tuple[list[list[int]], Tensor | None]:
    """The forward captioner's fills and, if asked, its log-prob of the whole sentences (N,)."""
    beams = choices(beam_search(models, blanks, length or p.max_length, p.beam), length)
    candidates = [[beam.tokens[n, 0].tolist() for beam in beams] for n in range(len(blanks))]
    if len(beams) == 1 and not own_score:
        return [c[0] for c in candidates], None
    return best(blanks, candidates, partial(log_prob, models.forward), p.length_bonus / 2 if length is None else 0.0)


@register("forward", role="baseline", description="beam search with the forward captioner from the left words [URNN-f]")
@torch.inference_mode()
def forward(models: Models, blanks: Blanks, length: int | None, p: Fill) -> list[list[int]]:
    return one_way(models, blanks, length, p, own_score=False)[0]


@register("backward", role="baseline", description="beam search with the backward captioner from the right words [URNN-b]")
@torch.inference_mode()
def backward(models: Models, blanks: Blanks, length: int | None, p: Fill) -> list[list[int]]:
    fills, _ = one_way(models.mirrored(), blanks.mirrored(), length, p, own_score=False)
    return [fill[::-1] for fill in fills]


@register("fb_max", role="baseline", description="forward or backward, whichever its own captioner scores higher [URNN-fb-max]")
@torch.inference_mode()
def fb_max(models: Models, blanks: Blanks, length: int | None, p: Fill) -> list[list[int]]:
    forward_fills, forward_scores = one_way(models, blanks, length, p, own_score=True)
    backward_fills, backward_scores = one_way(models.mirrored(), blanks.mirrored(), length, p, own_score=True)
    return [f if fs >= bs else b[::-1] for f, fs, b, bs in zip(forward_fills, forward_scores.tolist(), backward_fills, backward_scores.tolist())]


@register("fb_rerank", role="baseline", description="the hypotheses of both beam searches, reranked by S(Y) [URNN-fb-BiRNN]")
@torch.inference_mode()
def fb_rerank(models: Models, blanks: Blanks, length: int | None, p: Fill) -> list[list[int]]:
    steps = length or p.max_length
    forward_beams = choices(beam_search(models, blanks, steps, p.beam), length)
    backward_beams = choices(beam_search(models.mirrored(), blanks.mirrored(), steps, p.beam), length)
    return best(blanks, pooled(forward_beams, backward_beams), partial(bidirectional, models), p.length_bonus if length is None else 0.0)[0]


def pooled(forward_beams: list[Beam], backward_beams: list[Beam]) -> list[list[list[int]]]:
    """Each blank's hypotheses in `forward_beams` and, turned left to right, in `backward_beams`."""
    return [
        [fill for beam in forward_beams for fill in beam.tokens[n].tolist()]
        + [fill[::-1] for beam in backward_beams for fill in beam.tokens[n].tolist()]
        for n in range(forward_beams[0].tokens.shape[0])
    ]
