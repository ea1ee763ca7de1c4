"""The one step interface every decoder uses, and what is built on it alone.

A captioner is seen only through

    init(features (N, D)) -> state                          # a tuple of tensors, batch as dim 0
    step(tokens (N,), state) -> (log_probs (N, V), state)   # the first call reads <start>

(`fillblank.captioner.Captioner`, and the toy models of the tests). The backward captioner has
the same interface over reversed sentences, so every search is written once, left to
right, and runs right to left on the `mirrored` blanks with the two models swapped.

On it: `advance` reads ragged token sequences, `log_prob` and `bidirectional` score whole
sentences from <start>, and `side` + `complete` (a search's hypotheses) or `read_on` (any
fills) give the same S(Y) from where the two captioners already stand, reading only what
is left.

A blank is filled with real words only (ids from `FIRST_WORD` on), never with <pad>,
<start>, <end> or <unk>: a fill of "<unk>" would tell a reader nothing.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from fillblank.data.text import END_ID, PAD_ID, SPECIALS, START_ID, Vocab
from fillblank.decode.models import Model, Models, State

FIRST_WORD = len(SPECIALS)
# Nats: sums of the same float32 log-probs in other orders (a bound and a score, one batch and
# another) differ in the last bits; a difference this small is no difference.
SLACK = 1e-4


@dataclass(frozen=True)
class Blanks:
    """A batch of blanks as ids: each image and the words on either side of its blank."""

    features: Tensor  # shape: (N, D)
    left: list[list[int]]
    right: list[list[int]]

    @classmethod
    def of_words(cls, features: Tensor, left: Sequence[Sequence[str]], right: Sequence[Sequence[str]], vocab: Vocab):
        """The blanks `left[i] ___ right[i]` of images `features[i]`, their words read as `vocab`'s ids."""
        return cls(features, [vocab.ids(words) for words in left], [vocab.ids(words) for words in right])

    def __len__(self) -> int:
        return len(self.left)

    def mirrored(self) -> "Blanks":
        """The same blanks read right to left, as the backward captioner reads them."""
        return Blanks(self.features, [words[::-1] for words in self.right], [words[::-1] for words in self.left])

    def take(self, index: Sequence[int]) -> "Blanks":
        return Blanks(self.features[list(index)], [self.left[i] for i in index], [self.right[i] for i in index])


def select(state: State, rows: Tensor) -> State:
    """The state of each row in `rows` (back-pointers), in that order."""
    return tuple(tensor.index_select(0, rows) for tensor in state)


def start(model: Model, features: Tensor) -> tuple[State, Tensor]:
    """The state after <start> and the distribution of the first word."""
    state = model.init(features)
    tokens = torch.full((features.shape[0],), START_ID, device=features.device)  # shape: (N,)
    log_probs, state = model.step(tokens, state)  # shape: (N, V)
    return state, log_probs


def advance(
    model: Model, state: State, log_probs: Tensor, sequences: Sequence[Sequence[int]]
) -> tuple[State, Tensor, Tensor]:
    """Feed row i the tokens `sequences[i]`, of any length, scoring each before reading it.

    `log_probs` (N, V) is the distribution of each row's next token. Returns the state after
    each row's last token, the distribution of the token after it, and the summed log-prob
    of the tokens read (N,). The rows are read longest first, and each step computes only
    those whose sequence goes on, as packed sequences are: no step is spent on padding.
    """
    n, device = log_probs.shape[0], log_probs.device
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)  # shape: (N,)
    order = torch.argsort(lengths, descending=True, stable=True)  # shape: (N,)
    width = int(lengths.max()) if n else 0
    padded = [list(sequences[i]) + [PAD_ID] * (width - len(sequences[i])) for i in order.tolist()]
    tokens = torch.tensor(padded, dtype=torch.long, device=device).view(n, width)  # shape: (N, T), longest first
    going = (lengths[order][None, :] > torch.arange(width)[:, None]).sum(1).tolist()  # rows still reading at each step
    order = order.to(device)
    state, log_probs = select(state, order), log_probs.index_select(0, order)  # copies, written in place below
    total = log_probs.new_zeros(n)  # shape: (N,)
    for t, a in enumerate(going):
        token = tokens[:a, t]  # shape: (a,)
        total[:a] += log_probs[:a].gather(1, token[:, None])[:, 0]
        new_log_probs, new_state = model.step(token, tuple(tensor[:a] for tensor in state))
        log_probs[:a] = new_log_probs
        for old, new in zip(state, new_state, strict=True):
            old[:a] = new
    back = torch.argsort(order)  # shape: (N,)
    return select(state, back), log_probs.index_select(0, back), total.index_select(0, back)


def log_prob(model: Model, features: Tensor, sentences: Sequence[Sequence[int]]) -> Tensor:
    """log P(sentence | image) in the model's own reading order, <end> included: (N,)."""
    state, log_probs = start(model, features)
    _, log_probs, total = advance(model, state, log_probs, sentences)
    return total + log_probs[:, END_ID]


def bidirectional(models: Models, features: Tensor, sentences: Sequence[Sequence[int]]) -> Tensor:
    """S(Y) = log P_fwd(Y | I) + log P_bwd(Y | I) of each whole sentence (BiBS eq. 6): (N,)."""
    backward = log_prob(models.backward, features, [s[::-1] for s in sentences])  # shape: (N,)
    return log_prob(models.forward, features, sentences) + backward


@dataclass(frozen=True)
class Side:
    """One reading direction: its captioners (the one that reads this way first), its view
    of the blanks, and that captioner's state after the context before the blank."""

    models: Models
    blanks: Blanks
    state: State  # each: (N, ...)
    log_probs: Tensor  # shape: (N, V), of the blank's first word
    context: Tensor  # shape: (N,), log-prob of <start> and the context read

    def take(self, index: Tensor) -> "Side":
        return Side(
            self.models,
            self.blanks.take(index.tolist()),
            select(self.state, index),
            self.log_probs[index],
            self.context[index],
        )


def side(models: Models, blanks: Blanks) -> Side:
    state, log_probs = start(models.forward, blanks.features)
    state, log_probs, context = advance(models.forward, state, log_probs, blanks.left)
    return Side(models, blanks, state, log_probs, context)


def both_ways(models: Models, blanks: Blanks) -> tuple[Side, Side]:
    """The two reading directions of `blanks`: left to right, then right to left (mirrored)."""
    return side(models, blanks), side(models.mirrored(), blanks.mirrored())


def complete(
    this: Side, other: Side, blank: Tensor, fills: list[list[int]], read: Tensor, state: State, log_probs: Tensor
) -> Tensor:
    """S(Y) of each fill (in `this` side's reading order) of blank `blank[i]`, going on from
    where the two captioners already are rather than from <start>: (R,).

    `read` (R,) is the log-prob of the context and the fill under `this` side's captioner,
    `state` and `log_probs` (R, V) where it stands after them.
    """
    return finish(this, blank, read, state, log_probs) + other_way(this, other, blank, fills)


def finish(this: Side, blank: Tensor, read: Tensor, state: State, log_probs: Tensor) -> Tensor:
    """This side's captioner has read the context before and the fill: it reads the context
    after and <end>, giving its log-prob of the whole sentence (R,)."""
    after = [this.blanks.right[n] for n in blank.tolist()]
    _, log_probs, rest = advance(this.models.forward, state, log_probs, after)
    return read + rest + log_probs[:, END_ID]


def other_way(this: Side, other: Side, blank: Tensor, fills: list[list[int]]) -> Tensor:
    """The other captioner has read the context after: it reads the fill and the context
    before, backwards, and <end>, giving its log-prob of the whole sentence (R,)."""
    ahead = [fill[::-1] + this.blanks.left[n][::-1] for fill, n in zip(fills, blank.tolist(), strict=True)]
    _, log_probs, rest = advance(other.models.forward, select(other.state, blank), other.log_probs[blank], ahead)
    return other.context[blank] + rest + log_probs[:, END_ID]


def read_on(sides: tuple[Side, Side], blank: Tensor, fills: list[list[int]]) -> Tensor:
    """S(Y) of each fill (left to right) of blank `blank[i]`, each captioner of `both_ways`
    reading on from the context it has read: the forward one the fill, the words after and
    <end>; the backward one the fill, the words before and <end>, backwards: (R,)."""
    return other_way(sides[1], sides[0], blank, [fill[::-1] for fill in fills]) + other_way(
        sides[0], sides[1], blank, fills
    )


Scorer = Callable[[Tensor, Sequence[Sequence[int]]], Tensor]


def fill_scores(scorer: Scorer, blanks: Blanks, rows: Sequence[int], fills: Sequence[Sequence[int]]) -> Tensor:
    """`scorer` of each sentence left + fill + right, where fill i fills blank rows[i]: (R,)."""
    sentences = [blanks.left[r] + list(fill) + blanks.right[r] for r, fill in zip(rows, fills, strict=True)]
    return scorer(blanks.features[list(rows)], sentences)


def best(
    blanks: Blanks, candidates: list[list[list[int]]], scorer: Scorer, bonus: float = 0.0
) -> tuple[list[list[int]], Tensor]:
    """Each blank's candidate fill of the highest `scorer` plus `bonus` per word (the length
    rule, `fillblank.decode.length`), and that sum: (N,).

    `candidates[n]` are blank n's fills; every blank has the same number of them.
    """
    width = len(candidates[0])
    flat = [f for fills in candidates for f in fills]
    rows = [n for n in range(len(blanks)) for _ in range(width)]
    words = torch.tensor([len(f) for f in flat], dtype=torch.float32, device=blanks.features.device)  # shape: (N * C,)
    scores = (fill_scores(scorer, blanks, rows, flat) + bonus * words).view(-1, width)  # shape: (N, C)
    top, index = scores.max(1)  # shape: (N,)
    return [fills[i] for fills, i in zip(candidates, index.tolist(), strict=True)], top
