"""The training loop: the captioners (fillblank/model.py), forward or backward, and, through
the same `loop`, the infiller (fillblank/infill.py), which brings its own examples, loss
and optimizer.

Inputs: `vocab.json` and `captions.parquet` (fillblank/data/text.py, fillblank/data/karpathy.py)
and `features.h5` (fillblank/features.py). The backward captioner reads every caption
reversed. Each update takes `batch_size` captions; its loss is the negative log-likelihood
of their words and `<end>`, averaged over those tokens. The LSTM runs over each padded
batch in one call and the padded positions are masked out of the loss: no Python loop
over time steps. Training stops after `patience` epochs without a better validation
perplexity (or at `max_epochs`) and keeps the best epoch's weights.

Determinism: epoch e shuffles with a generator seeded by (seed, e) and draws dropout from
one seeded by (seed, e, rank), so a resumed run replays exactly the epochs an uninterrupted
run would have; on the CPU, two runs with the same settings give identical weights.

Resuming: after every epoch the file `resume` holds all that is needed to go on:

    {"config": {...}, "epoch": epochs done, "model": state dict, "optimizer": state dict,
     "best": state dict of the best epoch, "best_epoch": int, "history": [row per epoch],
     "train_tokens": int, "train_seconds": float}

It is used only when its `config` equals this run's (the settings, the direction, the
SHA-256 of every input and of the training code, `TRAINING_CODE`), so changed params, data
or code start afresh instead of resuming.

Distributed: under `torchrun --nproc_per_node N`, every process reads all the data, and
process r takes the captions r, r + N, ... of each batch; DDP sums the gradients so that
an update is the one a single process would make on the whole batch (up to rounding and
dropout). Only rank 0 writes files. Processes on several machines need a shared disk for
`resume`.

Curves (`curves_csv`), one row per epoch, per-token losses in nats:

    epoch,train_loss,val_loss,val_perplexity

Metrics (`Result.metrics`): {"best_val_perplexity", "best_epoch", "epochs",
"tokens_per_second"} (training tokens per second of training time, over all epochs).
"""

import argparse
import hashlib
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from fillblank import distributed, provenance, tables
from fillblank import features as image_features
from fillblank.atomic import atomic_path
from fillblank.data.text import END_ID, PAD_ID, START_ID, Vocab
from fillblank.errors import UserError, run
from fillblank.model import Captioner, load_checkpoint, read_checkpoint
from fillblank.params import TrainSettings
from fillblank.provenance import file_sha256

DIRECTIONS = ("forward", "backward")
TRAINING_CODE = ("train.py", "model.py", "infill.py", "distributed.py")  # in fillblank/


@dataclass(frozen=True)
class Split:
    """One split's captions as tensors, ready to batch. The captions lie back to back, not
    padded to the longest, so that one very long caption costs its own length, not the
    split's size times it (a 2,000-word caption among COCO's 400,000 would take 6 GB)."""

    image_ids: Tensor  # (I,) int64: the split's images, sorted
    features: Tensor  # (I, D) float32: their features
    rows: Tensor  # (N,) int64: each caption's image, as a row of `features`
    tokens: Tensor  # (total,) int64: each caption's <start>, words (reversed for backward) and <end>, one after another
    starts: Tensor  # (N,) int64: where each caption's <start> is in `tokens`
    lengths: Tensor  # (N,) int64: tokens each caption must predict: its words and <end>

    @classmethod
    def of(cls, image_ids: Tensor, features: Tensor, rows: Tensor, captions: list[list[int]]) -> "Split":
        """The split of `captions` (word ids, without <start> and <end>), caption n of image row `rows[n]`."""
        lengths = torch.tensor([len(ids) + 1 for ids in captions], dtype=torch.long)
        tokens = torch.tensor([token for ids in captions for token in (START_ID, *ids, END_ID)], dtype=torch.long)
        return cls(image_ids, features, rows, tokens, torch.cumsum(lengths + 1, 0) - (lengths + 1), lengths)

    def __len__(self) -> int:
        return len(self.rows)

    def words(self, n: int) -> list[int]:
        """Caption n's word ids, without <start> and <end>."""
        start = int(self.starts[n])
        return self.tokens[start + 1 : start + int(self.lengths[n])].tolist()

    def count(self, index: Tensor, epoch: int) -> int:
        """The tokens the captions `index` predict."""
        return int(self.lengths[index].sum())

    def batch(self, index: Tensor, epoch: int) -> tuple[Tensor, Tensor, Tensor]:
        """features (B, D), inputs (B, T) from <start>, targets (B, T): the inputs shifted by one."""
        span = torch.arange(int(self.lengths[index].max()) + 1)  # shape: (T + 1,)
        real = span < self.lengths[index, None] + 1  # shape: (B, T + 1)
        at = (self.starts[index, None] + span).clamp(max=len(self.tokens) - 1)  # shape: (B, T + 1)
        tokens = torch.where(real, self.tokens[at], PAD_ID)  # shape: (B, T + 1)
        return self.features[self.rows[index]], tokens[:, :-1], tokens[:, 1:]


class Examples(Protocol):
    """What `loop` trains on: a split of examples that `batch` turns into the loss module's
    inputs, as drawn in `epoch` (the infiller draws its blanks afresh every epoch)."""

    def __len__(self) -> int: ...

    def count(self, index: Tensor, epoch: int) -> int: ...  # target tokens of the examples `index`

    def batch(self, index: Tensor, epoch: int) -> tuple[Tensor, ...]: ...


class Schedule(Protocol):
    """The settings `loop` reads (TrainSettings, InfillSettings)."""

    seed: int
    clip: float
    batch_size: int
    max_epochs: int
    patience: int


@dataclass(frozen=True)
class Data:
    vocab: Vocab
    train: Split
    val: Split
    provenance: dict  # direction and inputs' SHA-256: what a checkpoint was trained on


def load_data(vocab: Path, captions: Path, features: Path, direction: str) -> Data:
    """The train and val splits of a prepared dataset, as the `direction` captioner reads them."""
    for path in (vocab, captions, features):
        if not Path(path).is_file():
            raise UserError(f"{path}: no such file (run the stages before train)")
    words = Vocab.load(vocab)
    table = tables.read(captions, ["image_id", "split", "tokens"]).to_pandas()
    # The features stage leaves out images it cannot read (and says which); so do we.
    seen = np.isin(table["image_id"].to_numpy(), image_features.stored_ids(features))
    if not seen.all():
        print(
            f"{features}: no features for {(~seen).sum()} captions of {captions}; training without them",
            file=sys.stderr,
        )
    splits = {}
    for name in ("train", "val"):
        rows = table[seen & (table["split"] == name).to_numpy()]
        if rows.empty:
            raise UserError(f"{captions}: no captions in the {name} split with features in {features}")
        image_ids = np.unique(rows["image_id"].to_numpy())
        splits[name] = Split.of(
            image_ids=torch.from_numpy(image_ids),
            features=image_features.read(features, image_ids),
            rows=torch.from_numpy(np.searchsorted(image_ids, rows["image_id"].to_numpy())),
            captions=[words.ids(caption[::-1] if direction == "backward" else caption) for caption in rows["tokens"]],
        )
    inputs = {"vocab": vocab, "captions": captions, "features": features}
    provenance = {"direction": direction, **{f"{name}_sha256": file_sha256(path) for name, path in inputs.items()}}
    return Data(words, splits["train"], splits["val"], provenance)


class Loss(nn.Module):
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


@dataclass
class Result:
    model: nn.Module  # the best epoch's weights, in eval mode
    config: dict  # settings and provenance, as checkpoints record them
    history: list[dict]  # one row per epoch, as in the curves
    best_epoch: int
    tokens_per_second: float

    def metrics(self) -> dict:
        best = self.history[self.best_epoch - 1]["val_perplexity"]
        epochs = len(self.history)
        return {
            "best_val_perplexity": best,
            "best_epoch": self.best_epoch,
            "epochs": epochs,
            "tokens_per_second": self.tokens_per_second,
        }


def fit(settings: TrainSettings, data: Data, resume: Path) -> Result:
    """Train a captioner on `data.train`, stopping early on `data.val`; go on from `resume` if it matches."""

    def build() -> tuple[nn.Module, torch.optim.Optimizer, nn.Module]:
        sizes = dict(embed=settings.embed, hidden=settings.hidden, dropout=settings.dropout)
        model = Captioner(len(data.vocab), data.train.features.shape[1], **sizes)
        return model, torch.optim.RMSprop(model.parameters(), lr=settings.lr, alpha=settings.rms_decay), Loss(model)

    return loop(settings, data.train, data.val, {"settings": settings.model_dump(), **data.provenance}, resume, build)


def loop(settings: Schedule, train: Examples, val: Examples, config: dict, resume: Path, build) -> Result:
    """Train what `build()` returns, (model, optimizer, loss module), on `train`, stopping early
    on `val`'s loss per token; go on from `resume` if its `config` matches this one."""
    rank, world = distributed.rank_world()
    device = torch.device("cuda", distributed.local_rank()) if torch.cuda.is_available() else torch.device("cpu")
    torch.manual_seed(mixed_seed(settings.seed))
    model, optimizer, loss_module = build()
    model.to(device)
    # What a resumed run must match: the settings and inputs, and the code that trained it
    # (a fix to the loss must not go on from epochs of the old code).
    resumable = config | {"code_sha256": code_sha256()}
    state = _resumed(resume, resumable, device)
    if state:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if rank == 0:
            print(f"resuming from {resume} after epoch {state['epoch']}")
    else:
        state = dict(config=resumable, epoch=0, best=None, best_epoch=0, history=[], train_tokens=0, train_seconds=0.0)
    loss = DistributedDataParallel(loss_module) if world > 1 else loss_module

    while state["epoch"] < settings.max_epochs and state["epoch"] - state["best_epoch"] < settings.patience:
        epoch = state["epoch"] + 1
        train_loss, tokens, seconds = _train_epoch(loss, optimizer, train, settings, epoch, rank, world, device)
        val_loss = evaluate(loss_module, val, settings.batch_size, rank, world)
        state["history"].append(
            {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "val_perplexity": math.exp(val_loss)}
        )
        if state["best"] is None or val_loss < state["history"][state["best_epoch"] - 1]["val_loss"]:
            state["best"] = {key: value.detach().clone() for key, value in model.state_dict().items()}
            state["best_epoch"] = epoch
        state.update(epoch=epoch, model=model.state_dict(), optimizer=optimizer.state_dict())
        state["train_tokens"] += tokens
        state["train_seconds"] += seconds
        if rank == 0:
            with atomic_path(resume) as tmp:
                torch.save(state, tmp)
            print(
                f"epoch {epoch}: train loss {train_loss:.4f}, val perplexity {math.exp(val_loss):.3f}, {tokens / seconds:.0f} tokens/s"
            )

    model.load_state_dict(state["best"])
    tokens_per_second = state["train_tokens"] / state["train_seconds"]
    # Not part of `config`, which a resumed run must match: another thread count may go on.
    recorded = config | {"provenance": provenance.machine(device)}
    return Result(model.cpu().eval(), recorded, state["history"], state["best_epoch"], tokens_per_second)


def _train_epoch(
    loss_fn, optimizer, split: Examples, settings: Schedule, epoch: int, rank: int, world: int, device
) -> tuple[float, int, float]:
    """One pass over `split` in this epoch's order: (loss per token, tokens, seconds)."""
    torch.manual_seed(mixed_seed(settings.seed, epoch, rank))  # dropout
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(mixed_seed(settings.seed, epoch)))
    batches = list(order.split(settings.batch_size))
    if len(batches) > 1 and len(batches[-1]) < world:  # every process needs a caption
        batches[-2:] = [torch.cat(batches[-2:])]
    loss_fn.train()
    total, tokens = torch.zeros((), dtype=torch.float64, device=device), 0
    start = time.perf_counter()
    for index in tqdm(batches, desc=f"epoch {epoch}", unit="batch", leave=False, disable=rank != 0):
        batch_tokens = split.count(index, epoch)  # of the whole batch, all processes together
        loss = loss_fn(*(tensor.to(device) for tensor in split.batch(index[rank::world], epoch)))
        optimizer.zero_grad()
        (loss * world / batch_tokens).backward()  # DDP averages over processes: the mean per token
        nn.utils.clip_grad_value_(loss_fn.parameters(), settings.clip)
        optimizer.step()
        total += loss.detach()
        tokens += batch_tokens
    seconds = time.perf_counter() - start
    return distributed.all_sum(total) / tokens, tokens, seconds


@torch.no_grad()
def evaluate(loss_fn: nn.Module, split: Examples, batch_size: int, rank: int = 0, world: int = 1) -> float:
    """Negative log-likelihood per token of `split` as drawn in epoch 0 (its perplexity is the exp of this)."""
    device = next(loss_fn.parameters()).device
    loss_fn.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    for index in torch.arange(len(split))[rank::world].split(batch_size):
        total += loss_fn(*(tensor.to(device) for tensor in split.batch(index, 0)))
    return distributed.all_sum(total) / split.count(torch.arange(len(split)), 0)


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
        for image_id, ids in zip(data.val.image_ids.tolist(), captions)
    ]


def curves_csv(history: list[dict]) -> str:
    lines = ["epoch,train_loss,val_loss,val_perplexity"]
    lines += [
        f"{row['epoch']},{row['train_loss']:.6f},{row['val_loss']:.6f},{row['val_perplexity']:.6f}" for row in history
    ]
    return "\n".join(lines) + "\n"


def mixed_seed(*keys: int) -> int:
    """A well-mixed seed from several integers: (0, 1) and (1, 0) give unrelated streams."""
    return int(np.random.SeedSequence(keys).generate_state(1)[0])


def _resumed(resume: Path, config: dict, device) -> dict | None:
    """The saved training state, if there is one for exactly this `config`."""
    if not resume.is_file():
        return None
    try:
        state = torch.load(resume, map_location=device, weights_only=True)
    except Exception:  # a state we cannot read is a state we cannot use: start afresh
        return None
    return state if state.get("config") == config else None


def code_sha256() -> str:
    """One SHA-256 over the training code: the modules dvc.yaml lists as the train stages' code."""
    digest = hashlib.sha256()
    for name in TRAINING_CODE:
        digest.update((Path(__file__).parent / name).read_bytes())
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description="Print greedy captions of validation images by a trained captioner.")
    parser.add_argument("model", type=Path, help="a checkpoint, e.g. data/models/flickr8k/forward.pt")
    parser.add_argument("--prepared", type=Path, required=True, help="folder of vocab.json and captions.parquet")
    parser.add_argument("--features", type=Path, required=True, help="the dataset's features.h5")
    parser.add_argument("-n", type=int, default=5, help="how many images (default: 5)")
    args = parser.parse_args()
    direction = read_checkpoint(args.model)["config"]["direction"]
    data = load_data(args.prepared / "vocab.json", args.prepared / "captions.parquet", args.features, direction)
    model = load_checkpoint(args.model, data.vocab)
    print("\n".join(examples(model, data, args.n)))


if __name__ == "__main__":
    run(main)
