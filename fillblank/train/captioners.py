"""Training a captioner (fillblank/captioner.py), forward or backward, through the one loop
of `fillblank.train.loop`, and a look at what it learnt.

Each update takes `batch_size` captions; its loss is the negative log-likelihood of their
words and `<end>`, averaged over those tokens. The LSTM runs over each padded batch in one
call and the padded positions are masked out of the loss: no Python loop over time steps.

    python -m fillblank.train.captioners data/models/shapes/forward.pt \
        --prepared data/prepared/shapes --features data/features/shapes.h5

prints greedy captions of the first validation images.
"""

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fillblank.captioner import Captioner
from fillblank.checkpoint import load_checkpoint, read_checkpoint
from fillblank.data.text import END_ID, PAD_ID, START_ID
from fillblank.errors import run
from fillblank.params import TrainSettings
from fillblank.train.data import Data, load_data
from fillblank.train.loop import Result, loop

DIRECTIONS = ("forward", "backward")


class CaptionerLoss(nn.Module):
    """Summed negative log-likelihood of the non-padding targets. DDP wraps this module, not
    the captioner, so that its forward covers every parameter the gradients flow to."""

    def __init__(self, model: Captioner):
        super().__init__()
        self.model = model

    def forward(self, features: Tensor, inputs: Tensor, targets: Tensor) -> Tensor:
        real = targets != PAD_ID  # shape: (B, T)
        hidden = self.model.hidden(features, inputs)[real]  # shape: (tokens, hidden)
        logits = self.model.out(self.model.drop(hidden))  # shape: (tokens, V)
        return F.cross_entropy(logits, targets[real], reduction="sum")


def fit_captioner(settings: TrainSettings, data: Data, resume: Path) -> Result:
    """Train a captioner on `data.train`, stopping early on `data.val`; go on from `resume` if it matches."""

    def build() -> tuple[nn.Module, torch.optim.Optimizer, nn.Module]:
        sizes = dict(embed=settings.embed, hidden=settings.hidden, dropout=settings.dropout)
        model = Captioner(len(data.vocab), data.train.features.shape[1], **sizes)
        optimizer = torch.optim.RMSprop(model.parameters(), lr=settings.lr, alpha=settings.rms_decay)
        return model, optimizer, CaptionerLoss(model)

    return loop(settings, data.train, data.val, {"settings": settings.model_dump(), **data.provenance}, resume, build)


@torch.no_grad()
def greedy(model: Captioner, features: Tensor, max_length: int) -> list[list[int]]:
    """The most likely word at every step, from <start> to <end> (excluded) or `max_length` words."""
    state = model.init(features)
    tokens = torch.full((features.shape[0],), START_ID)  # shape: (N,)
    steps = []
    for _ in range(max_length):
        log_probs, state = model.step(tokens, state)  # shape: (N, V)
        tokens = log_probs.argmax(-1)  # shape: (N,)
        steps.append(tokens)
    return [ids[: ids.index(END_ID)] if END_ID in ids else ids for ids in torch.stack(steps, 1).tolist()]


def examples(model: Captioner, data: Data, count: int) -> list[str]:
    """Greedy captions of the first `count` validation images, one line each, in reading order."""
    captions = greedy(model, data.val.features[:count], max_length=int(data.train.lengths.max()) + 1)
    reverse = data.provenance["direction"] == "backward"
    return [
        f"image {image_id}: {' '.join(data.vocab.decode(ids[::-1] if reverse else ids))}"
        for image_id, ids in zip(data.val.image_ids[:count].tolist(), captions, strict=True)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description="Print greedy captions of validation images by a trained captioner.")
    parser.add_argument("model", type=Path, help="a checkpoint, e.g. data/models/flickr8k/forward.pt")
    parser.add_argument("--prepared", type=Path, required=True, help="folder of vocab.json and captions.parquet")
    parser.add_argument("--features", type=Path, required=True, help="the dataset's features.h5")
    parser.add_argument("-n", type=int, default=5, help="how many images (default: 5)")
    args = parser.parse_args()
    direction = read_checkpoint(args.model)["config"]["direction"]
    data = load_data(args.prepared / "vocab.json", args.prepared / "captions.parquet", args.features, direction)
    model = load_checkpoint(args.model, data.vocab, Captioner)
    print("\n".join(examples(model, data, args.n)))


if __name__ == "__main__":
    run(main)
