"""Training the infiller (fillblank/infiller.py) through the one loop of `fillblank.train.loop`.

Examples (`Blanked`): every caption of a split, cut at a random run of words (1 to n - 2 of
its n words, keeping a word on each side, as the test blanks do, so every ratio is
covered), the length given half of the time; drawn afresh each epoch from a generator
seeded by (seed, epoch), and once for all (epoch 0) for validation. The loss is the
negative log-likelihood of the fill's words and <end>.
"""

from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from fillblank.data.text import END_ID, PAD_ID
from fillblank.infiller import LENGTHS, Infiller, context_ids, padded
from fillblank.params import InfillerSettings
from fillblank.train.data import Data, Split
from fillblank.train.loop import Result, loop, mixed_seed

GIVEN = 0.5  # share of training examples whose length is given


class Blanked:
    """A split's captions, each cut at a blank drawn afresh per epoch (the module docstring)."""

    def __init__(self, split: Split, seed: int, blank: int):
        self.split, self.seed, self.blank = split, seed, blank
        self.words = [split.words(n) for n in range(len(split))]
        self.drawn: tuple[int, Tensor, Tensor, Tensor] | None = None

    def __len__(self) -> int:
        return len(self.words)

    def draw(self, epoch: int) -> tuple[Tensor, Tensor, Tensor]:
        """Each caption's blank in `epoch`: first word (N,), length (N,), length given (N,) bool."""
        if self.drawn is None or self.drawn[0] != epoch:
            generator = torch.Generator().manual_seed(mixed_seed(self.seed, epoch))
            n = torch.tensor([len(w) for w in self.words])  # shape: (N,)
            kept = (n >= 3).long()  # a word kept on each side when there are three or more
            most = (n - 2 * kept).clamp(min=1)  # shape: (N,)
            length = 1 + (torch.rand(len(n), generator=generator) * most).long()  # shape: (N,): 1 .. most
            first = (
                kept + (torch.rand(len(n), generator=generator) * (n - 2 * kept - length + 1).clamp(min=1)).long()
            )  # shape: (N,)
            given = torch.rand(len(n), generator=generator) < GIVEN  # shape: (N,)
            self.drawn = (epoch, first, length, given)
        return self.drawn[1:]

    def count(self, index: Tensor, epoch: int) -> int:
        _, length, _ = self.draw(epoch)
        return int(length[index].sum()) + len(index)  # the fill's words and <end>

    def batch(self, index: Tensor, epoch: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """features (B, D), context (B, S), prefix (B, T) and targets (B, T): the fills' words and <end>."""
        first, length, given = self.draw(epoch)
        contexts, prefixes, targets = [], [], []
        for i in index.tolist():
            words, a, k = self.words[i], int(first[i]), int(length[i])
            fill = words[a : a + k]
            contexts.append(context_ids(words[:a], words[a + k :], self.blank))
            prefixes.append([min(k, LENGTHS) if bool(given[i]) else 0, *fill])
            targets.append([*fill, END_ID])
        return self.split.features[self.split.rows[index]], padded(contexts), padded(prefixes), padded(targets)


class InfillerLoss(nn.Module):
    """Summed negative log-likelihood of the fills' words and <end> (DDP wraps this module)."""

    def __init__(self, model: Infiller):
        super().__init__()
        self.model = model

    def forward(self, features: Tensor, context: Tensor, prefix: Tensor, targets: Tensor) -> Tensor:
        memory, pad = self.model.encode(features, context)
        log_probs = self.model.decode(memory, pad, prefix)  # shape: (B, T, V)
        real = targets != PAD_ID  # shape: (B, T)
        return F.nll_loss(log_probs[real], targets[real], reduction="sum")


def fit_infiller(settings: InfillerSettings, data: Data, resume: Path) -> Result:
    """Train an infiller on `data.train` (loaded with direction "infiller"), stopping early on
    the validation loss of the blank words; go on from `resume` if it matches."""
    vocab_size = len(data.vocab)

    def build() -> tuple[nn.Module, torch.optim.Optimizer, nn.Module]:
        model = Infiller(
            vocab_size,
            data.train.features.shape[1],
            settings.width,
            settings.heads,
            settings.layers,
            settings.feedforward,
            settings.image_tokens,
            settings.dropout,
        )
        return model, torch.optim.AdamW(model.parameters(), lr=settings.lr), InfillerLoss(model)

    train, val = (Blanked(split, settings.seed, vocab_size) for split in (data.train, data.val))
    return loop(settings, train, val, {"settings": settings.model_dump(), **data.provenance}, resume, build)
