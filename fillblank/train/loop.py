"""The one training loop, for every model: the captioners (fillblank/train/captioners.py)
and the infiller (fillblank/train/infiller.py) each bring their examples, loss and
optimizer. Training stops after `patience` epochs without a lower validation loss per
token (or at `max_epochs`) and keeps the best epoch's weights.

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
process r takes the examples r, r + N, ... of each batch; DDP sums the gradients so that
an update is the one a single process would make on the whole batch (up to rounding and
dropout). Only rank 0 writes files. Processes on several machines need a shared disk for
`resume`.

Curves (`curves_csv`), one row per epoch, per-token losses in nats:

    epoch,train_loss,val_loss,val_perplexity

Metrics (`Result.metrics`): {"best_val_perplexity", "best_epoch", "epochs",
"tokens_per_second"} (training tokens per second of training time, over all epochs).
"""

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from fillblank import distributed, provenance
from fillblank.atomic import atomic_path

# The modules a resumed run's code must match, below fillblank/: those dvc.yaml lists as the train stages' code.
TRAINING_CODE = (
    "train/data.py",
    "train/loop.py",
    "train/captioners.py",
    "train/infiller.py",
    "captioner.py",
    "infiller.py",
    "distributed.py",
)


class Examples(Protocol):
    """What `loop` trains on: a split of examples that `batch` turns into the loss module's
    inputs, as drawn in `epoch` (the infiller draws its blanks afresh every epoch)."""

    def __len__(self) -> int: ...

    def count(self, index: Tensor, epoch: int) -> int: ...  # target tokens of the examples `index`

    def batch(self, index: Tensor, epoch: int) -> tuple[Tensor, ...]: ...


class Schedule(Protocol):
    """The settings `loop` reads (TrainSettings, InfillerSettings)."""

    seed: int
    clip: float
    batch_size: int
    max_epochs: int
    patience: int


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


Build = Callable[[], tuple[nn.Module, torch.optim.Optimizer, nn.Module]]  # (model, optimizer, loss module)


def loop(settings: Schedule, train: Examples, val: Examples, config: dict, resume: Path, build: Build) -> Result:
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
    state = resumed(resume, resumable, device)
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
        train_loss, tokens, seconds = train_epoch(loss, optimizer, train, settings, epoch, rank, world, device)
        val_loss = validation_loss(loss_module, val, settings.batch_size, rank, world)
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
            speed = f"{tokens / seconds:.0f} tokens/s"
            print(f"epoch {epoch}: train loss {train_loss:.4f}, val perplexity {math.exp(val_loss):.3f}, {speed}")

    model.load_state_dict(state["best"])
    tokens_per_second = state["train_tokens"] / state["train_seconds"]
    # Not part of `config`, which a resumed run must match: another thread count may go on.
    recorded = config | {"provenance": provenance.machine(device)}
    return Result(model.cpu().eval(), recorded, state["history"], state["best_epoch"], tokens_per_second)


def train_epoch(
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
def validation_loss(loss_fn: nn.Module, split: Examples, batch_size: int, rank: int = 0, world: int = 1) -> float:
    """Negative log-likelihood per token of `split` as drawn in epoch 0 (its perplexity is the exp of this)."""
    device = next(loss_fn.parameters()).device
    loss_fn.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    for index in torch.arange(len(split))[rank::world].split(batch_size):
        total += loss_fn(*(tensor.to(device) for tensor in split.batch(index, 0)))
    return distributed.all_sum(total) / split.count(torch.arange(len(split)), 0)


def curves_csv(history: list[dict]) -> str:
    lines = ["epoch,train_loss,val_loss,val_perplexity"]
    lines += [
        f"{row['epoch']},{row['train_loss']:.6f},{row['val_loss']:.6f},{row['val_perplexity']:.6f}" for row in history
    ]
    return "\n".join(lines) + "\n"


def mixed_seed(*keys: int) -> int:
    """A well-mixed seed from several integers: (0, 1) and (1, 0) give unrelated streams."""
    return int(np.random.SeedSequence(keys).generate_state(1)[0])


def resumed(resume: Path, config: dict, device) -> dict | None:
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
        digest.update((Path(__file__).parents[1] / name).read_bytes())
    return digest.hexdigest()
