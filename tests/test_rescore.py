"""Ranking beam hypotheses from where the searches stand (and infill_rerank's pool in the
order of a bound): the same answer as scoring every fill's whole sentence from <start>, for
a fraction of the captioner steps."""

from functools import partial

import pytest
import torch
from toy_models import fill_params, one_thread, random_models  # noqa: F401

from fillblank.decode import infill, rescore
from fillblank.decode.baselines import beam_search, one_way, pool
from fillblank.decode.bibs import mbest_per_length
from fillblank.decode.infill import encoded, infill_rerank, searched
from fillblank.decode.models import Models
from fillblank.decode.step import Blanks, best, bidirectional, log_prob, side

BLANKS = Blanks(
    torch.randn(6, 3, generator=torch.Generator().manual_seed(4)),
    [[4, 5], [], [6, 7, 8], [9], [4], [10, 11]],
    [[7], [8, 9], [], [5, 4], [11], []],
)


class Counting:
    """A captioner that counts the rows it steps."""

    def __init__(self, model):
        self.model, self.rows = model, 0

    def init(self, features):
        return self.model.init(features)

    def step(self, tokens, state):
        self.rows += len(tokens)
        return self.model.step(tokens, state)


def every_fill(found: tuple[rescore.Hypotheses, rescore.Hypotheses], blanks: int) -> list[list[list[int]]]:
    """Each blank's hypotheses, left to right: the forward search's, then the backward one's."""
    return [
        [fill for fill, b in zip(found[0].fills, found[0].blank.tolist(), strict=True) if b == n]
        + [fill[::-1] for fill, b in zip(found[1].fills, found[1].blank.tolist(), strict=True) if b == n]
        for n in range(blanks)
    ]


@pytest.mark.parametrize("length, bonus", [(None, 0.0), (None, 2.0), (2, 0.0)])
def test_the_pool_s_best_is_the_one_scoring_every_fill_from_start_finds(length, bonus):
    models = random_models(vocab=14, seed=3)
    p = fill_params(beam=3, max_length=4)
    sides = side(models, BLANKS), side(models.mirrored(), BLANKS.mirrored())
    found = pool(sides, length, p)
    fills, scores = rescore.best(sides, found, bonus)
    expected, top = best(BLANKS, every_fill(found, len(BLANKS)), partial(bidirectional, models), bonus)
    assert fills == expected
    words = torch.tensor([len(fill) for fill in fills], dtype=torch.float32)
    assert torch.allclose(scores + bonus * words, top, atol=1e-4)


def test_the_bound_spares_the_other_captioner_the_fills_that_cannot_win():
    models = random_models(vocab=14, seed=3)
    counting = Models(Counting(models.forward), Counting(models.backward))
    sides = side(counting, BLANKS), side(counting.mirrored(), BLANKS.mirrored())
    found = pool(sides, None, fill_params(beam=3, max_length=8))
    steps = lambda: counting.forward.rows + counting.backward.rows  # noqa: E731
    before = steps()
    rescore.best(sides, found, 0.0)
    pruned = steps() - before
    for d in (0, 1):  # the S(Y) of every hypothesis
        rescore.scores(sides, d, found[d])
    every = steps() - before - pruned
    assert pruned < every / 2


def test_one_way_ranks_lengths_by_its_captioner_s_whole_sentence():
    models = random_models(vocab=14, seed=5)
    p = fill_params(beam=3, max_length=4, length_bonus=1.0)
    fills, values = one_way(side(models, BLANKS), None, p)
    beams = beam_search(side(models, BLANKS), p.max_length, p.beam)[1:]
    candidates = [[beam.tokens[n, 0].tolist() for beam in beams] for n in range(len(BLANKS))]
    expected, top = best(BLANKS, candidates, partial(log_prob, models.forward), p.length_bonus)
    assert fills == expected
    assert torch.allclose(torch.tensor(values), top, atol=1e-4)


@pytest.mark.parametrize("length, bonus", [(None, 0.0), (None, 2.0), (2, 0.0)])
def test_infill_rerank_finds_the_pool_s_best_by_s_y_plus_the_infiller_s_log_prob(length, bonus):
    models = random_models(vocab=14, seed=3)
    p = fill_params(beam=4, max_length=8, m_best=2, length_bonus=bonus)  # pools wider than a CHUNK
    fills = infill_rerank(models, BLANKS, length, p)

    context = encoded(models.infiller, BLANKS)
    found, _ = searched(models.infiller, context, length, p)
    lengths = [length] if length else range(1, p.max_length + 1)
    for n, of_bibs in enumerate(mbest_per_length(models, BLANKS, lengths, p)):
        pool = found[n] + of_bibs  # BiBS's m best at each length: the pool whatever the bonus
        sentences = [BLANKS.left[n] + fill + BLANKS.right[n] for fill in pool]
        s_y = bidirectional(models, BLANKS.features[[n] * len(pool)], sentences)  # from <start>
        infiller = torch.stack([infill.log_prob(models.infiller, context, [n], [fill], length)[0] for fill in pool])
        words = torch.tensor([len(fill) for fill in pool], dtype=torch.float32)
        assert fills[n] == pool[int((s_y + infiller + (bonus if length is None else 0.0) * words).argmax())]
