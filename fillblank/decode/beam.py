"""The one beam search: a sweep over the positions of a blank, optionally steered by what a
sweep in the other direction left behind.

`sweep` runs a fixed number of steps from states that have read the words before the blank,
keeping for each blank the `beam` best hypotheses by their own log-prob plus, when given,
a context score per (position, word). With no context it is plain beam search; with the
context of a sweep the other way it is one half-iteration of BiBS. A beam is the same
whatever length the search will be stopped at, so one sweep of K steps holds the beams of
every length up to K.

`handover` is what a finished sweep leaves for one the other way: at each position, for
each word, the best score of a hypothesis of this sweep followed by that word.
"""

from dataclasses import dataclass

import torch
from torch import Tensor

from fillblank.decode.step import FIRST_WORD, Model, State, select
from fillblank.errors import UserError


@dataclass(frozen=True)
class Beam:
    """The hypotheses of every blank after t words, best first."""

    tokens: Tensor  # shape: (N, B, t)
    score: Tensor  # shape: (N, B), log-prob of the t words under the sweeping model
    state: State  # each: (N*B, ...)
    log_probs: Tensor  # shape: (N*B, V), of the word after the t words

    def extensions(self) -> Tensor:
        """The score of each hypothesis followed by each word; specials are -inf."""
        n, width, _ = self.tokens.shape
        total = self.score[:, :, None] + self.log_probs.view(n, width, -1)  # shape: (N, B, V)
        total[:, :, :FIRST_WORD] = -torch.inf
        return total


def sweep(
    model: Model, state: State, log_probs: Tensor, length: int, beam: int, context: Tensor | None = None
) -> list[Beam]:
    """Beam search of `length` words from each blank's `state` and next-word `log_probs` (N, V).

    `context` (length, N, V), when given, is added to each extension's score to rank it,
    not to the score a hypothesis keeps. Returns the beams after 0, 1, ..., length words.
    """
    n, vocab = log_probs.shape
    words = vocab - FIRST_WORD
    if beam > words:
        raise UserError(
            f"beam width {beam} is larger than the {words} words a blank can hold "
            f"(the vocabulary less its {FIRST_WORD} special tokens)"
        )
    device = log_probs.device
    # Start from `beam` copies of each blank, all but the first at -inf: the first step
    # then picks `beam` different words from the one real hypothesis.
    score = torch.full((n, beam), -torch.inf, device=device)  # shape: (N, B)
    score[:, 0] = 0.0
    copies = torch.arange(n, device=device).repeat_interleave(beam)  # shape: (N*B,)
    beams = [
        Beam(torch.zeros(n, beam, 0, dtype=torch.long, device=device), score, select(state, copies), log_probs[copies])
    ]
    offsets = torch.arange(n, device=device)[:, None] * beam  # shape: (N, 1)
    for t in range(length):
        last = beams[-1]
        total = last.extensions()  # shape: (N, B, V)
        ranked = total if context is None else total + context[t][:, None, :]  # shape: (N, B, V)
        top = ranked.view(n, beam * vocab).topk(beam, dim=1).indices  # shape: (N, B)
        parent, word = top // vocab, top % vocab  # shape: (N, B)
        tokens = torch.cat(
            [last.tokens.gather(1, parent[:, :, None].expand(-1, -1, t)), word[:, :, None]], dim=2
        )  # shape: (N, B, t+1)
        rows = (offsets + parent).view(-1)  # shape: (N*B,)
        next_log_probs, next_state = model.step(word.view(-1), select(last.state, rows))  # shape: (N*B, V)
        beams.append(Beam(tokens, total.view(n, -1).gather(1, top), next_state, next_log_probs))
    return beams


def handover(beams: list[Beam]) -> Tensor:
    """For a sweep the other way: at each position, each word's best score after this sweep's hypotheses.

    Position t's entry is taken from the beam before the t-th word: (length, N, V).
    """
    return torch.stack([beam.extensions().amax(1) for beam in beams[:-1]])
