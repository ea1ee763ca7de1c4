"""Toy captioners for the decoder tests, and brute force as their oracle.

`Bigram` is a hand-written transition table: the next word's distribution depends only on
the word just read (and the image), so the best fill of a small example can be worked out
by hand. `random_captioner` is a tiny `fillblank.captioner.Captioner` with sharpened random
weights: its state carries the whole history, so no search can exploit a Markov shortcut.
`true_score` and `brute_force` score one sentence at a time, with no batching or padding,
to check the batched decoders against.
"""

import itertools
import math

import pytest
import torch

from fillblank import params
from fillblank.captioner import Captioner
from fillblank.data.text import END_ID, SPECIALS, START_ID
from fillblank.decode.models import Models
from fillblank.infiller import Infiller


@pytest.fixture(autouse=True)
def one_thread():
    """Toy tensors are tiny: extra threads only add waiting on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Bigram:
    """log p(next | word just read, image) from a table per image: (images, V, V)."""

    def __init__(self, tables: torch.Tensor):
        self.tables = tables

    def init(self, features: torch.Tensor) -> tuple[torch.Tensor]:
        return (features[:, 0].long(),)  # the state is which image, and nothing else

    def step(self, tokens: torch.Tensor, state: tuple[torch.Tensor]) -> tuple[torch.Tensor, tuple[torch.Tensor]]:
        (image,) = state
        return self.tables[image, tokens], state


def bigram(words: list[str], *images: dict[str, dict[str, float]]) -> Bigram:
    """A `Bigram` over SPECIALS + `words`, one table per image, written as
    {word read: {next word: probability}}; what a row leaves is spread over the other tokens."""
    vocab = list(SPECIALS) + words
    tables = torch.zeros(len(images), len(vocab), len(vocab))
    for image, rows in enumerate(images):
        for row in range(len(vocab)):
            given = rows.get(vocab[row], {})
            rest = [v for v in range(2, len(vocab)) if vocab[v] not in given]  # never <pad> or <start>
            for column in range(len(vocab)):
                if vocab[column] in given:
                    tables[image, row, column] = given[vocab[column]]
                elif column in rest:
                    tables[image, row, column] = (1 - sum(given.values())) / len(rest)
    return Bigram(tables.clamp_min(1e-12).log())


def ids(words: list[str], sentence: str) -> list[int]:
    vocab = list(SPECIALS) + words
    return [vocab.index(word) for word in sentence.split()]


def random_captioner(vocab: int, seed: int, feature_dim: int = 3) -> Captioner:
    torch.manual_seed(seed)
    model = Captioner(vocab, feature_dim, embed=6, hidden=8, dropout=0.0).eval()
    with torch.no_grad():
        model.out.weight.mul_(4)  # sharper distributions: searches then disagree more often
    return model


def random_models(vocab: int, seed: int, features: int = 3) -> Models:
    """Two random captioners and a random infiller (fillblank/infiller.py) over `vocab` ids,
    reading `features` numbers per image."""
    torch.manual_seed(seed)
    infiller = Infiller(vocab, features, width=8, heads=2, layers=1, feedforward=16, image_tokens=1, dropout=0.0).eval()
    return Models(random_captioner(vocab, seed, features), random_captioner(vocab, seed + 1, features), infiller)


def fill_params(**changes) -> params.Fill:
    settings = dict(
        methods=["bibs"],
        beam=2,
        sweeps=4,
        m_best=1,
        max_length=3,
        batch=16,
        exact_max_rows=10_000,
        device="cpu",
        length_bonus=0.0,
        tune_images=None,
    )
    return params.Fill(**settings | changes)


@torch.no_grad()
def log_prob(model, feature: torch.Tensor, sentence: list[int]) -> float:
    """log P(sentence | image), one token at a time."""
    state = model.init(feature[None])
    log_probs, state = model.step(torch.tensor([START_ID]), state)
    total = 0.0
    for token in sentence:
        total += float(log_probs[0, token])
        log_probs, state = model.step(torch.tensor([token]), state)
    return total + float(log_probs[0, END_ID])


def true_score(models: Models, feature: torch.Tensor, sentence: list[int]) -> float:
    """S(Y) = log P_fwd(Y) + log P_bwd(Y), the backward model reading the sentence reversed."""
    return log_prob(models.forward, feature, sentence) + log_prob(models.backward, feature, sentence[::-1])


def brute_force(
    models: Models, feature, left: list[int], right: list[int], lengths, vocab: int
) -> tuple[list[int], float]:
    """The fill of the given lengths with the highest S(Y), by trying them all."""
    best, best_score = None, -math.inf
    for length in lengths:
        for fill in itertools.product(range(len(SPECIALS), vocab), repeat=length):
            score = true_score(models, feature, left + list(fill) + right)
            if score > best_score:
                best, best_score = list(fill), score
    return best, best_score
