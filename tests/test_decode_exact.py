"""Exact search against brute force: the same best S(Y), found without trying every fill."""

import logging

import pytest
import torch
from toy_models import brute_force, fill_params, one_thread, random_models, true_score  # noqa: F401

from fillblank.data.text import SPECIALS
from fillblank.decode.bibs import bibs
from fillblank.decode.exact import exact, search
from fillblank.decode.step import Blanks

VOCAB = len(SPECIALS) + 4  # four real words: 4 ** 3 = 64 fills of three words
BLANKS = Blanks(
    torch.randn(4, 3, generator=torch.Generator().manual_seed(0)),
    [[4, 5], [], [6], [7, 4]],
    [[6], [5, 7], [], [4, 5]],
)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("length", [1, 3, None])
def test_exact_search_finds_the_brute_force_optimum(seed, length):
    models = random_models(VOCAB, seed)
    p = fill_params(beam=1, sweeps=0, max_length=3)  # a weak seed (greedy search), so the search itself must work
    fills, proven = search(models, BLANKS, length, p)
    assert all(proven)
    for n, fill in enumerate(fills):
        _, best = brute_force(
            models, BLANKS.features[n], BLANKS.left[n], BLANKS.right[n], [length] if length else [1, 2, 3], VOCAB
        )
        assert true_score(models, BLANKS.features[n], BLANKS.left[n] + fill + BLANKS.right[n]) == pytest.approx(
            best, abs=1e-4
        )


@pytest.mark.parametrize("bonus", [-50.0, 2.0, 50.0])
def test_with_the_length_unknown_exact_search_maximises_s_plus_the_length_bonus(bonus):
    models = random_models(VOCAB, 0)
    p = fill_params(beam=1, sweeps=0, max_length=3, length_bonus=bonus)
    fills, proven = search(models, BLANKS, None, p)
    assert all(proven)
    for n, fill in enumerate(fills):

        def ranked(fill: list[int], n: int = n) -> float:
            return true_score(models, BLANKS.features[n], BLANKS.left[n] + fill + BLANKS.right[n]) + bonus * len(fill)

        best = max(
            ranked(brute_force(models, BLANKS.features[n], BLANKS.left[n], BLANKS.right[n], [k], VOCAB)[0])
            for k in (1, 2, 3)
        )
        assert ranked(fill) == pytest.approx(best, abs=1e-4)
    if abs(bonus) == 50.0:  # outweighs any S(Y) of these models: the shortest or the longest fills
        assert {len(fill) for fill in fills} == ({1} if bonus < 0 else {3})


def test_exact_search_improves_on_its_seed():
    models = random_models(VOCAB, 1)
    p = fill_params(beam=1, sweeps=0)
    assert search(models, BLANKS, 3, p)[0] != bibs(models, BLANKS, 3, p)


def test_exact_search_is_never_below_bibs():
    models = random_models(VOCAB, 2)
    p = fill_params(beam=2, max_length=3)

    def score(fills: list[list[int]]) -> list[float]:
        return [
            true_score(models, BLANKS.features[n], BLANKS.left[n] + f + BLANKS.right[n]) for n, f in enumerate(fills)
        ]

    for length in (2, 3):
        assert all(
            e >= b - 1e-5
            for e, b in zip(
                score(exact(models, BLANKS, length, p)), score(bibs(models, BLANKS, length, p)), strict=True
            )
        )


def test_too_many_prefixes_give_the_best_found_and_a_warning(caplog):
    models = random_models(VOCAB, 0)
    p = fill_params(beam=1, max_length=3, exact_max_rows=2)
    fills, proven = search(models, BLANKS, 3, p)
    assert not all(proven)
    assert all(len(fill) == 3 for fill in fills)
    with caplog.at_level(logging.WARNING):
        exact(models, BLANKS, 3, p)
    assert "blanks outgrew fill.exact_max_rows = 2 prefixes" in caplog.text
