"""Checkpoints: a trained model's sizes, weights, how it was trained, and the vocabulary it speaks.

Layout (`save_checkpoint`; a plain dict that `torch.load(weights_only=True)` reads, so a
checkpoint from elsewhere cannot run code):

    {"sizes": {...the model's constructor arguments: vocab_size, feature_dim, ...},
     "config": {...whatever the trainer records: dataset, direction, settings, and
                "provenance": the machine it trained on (`fillblank.provenance`)},
     "vocab_sha256": "...", "state_dict": {...}}

A model class is rebuilt from `sizes` (`fillblank.captioner.Captioner`,
`fillblank.infiller.Infiller`), never unpickled.
"""

import io
from pathlib import Path

import torch
from torch import nn

from fillblank.atomic import atomic_path
from fillblank.data.text import Vocab
from fillblank.errors import UserError


def save_checkpoint(path: str | Path, model: nn.Module, config: dict, vocab: Vocab) -> None:
    """Write the model's sizes and weights, the trainer's `config` and the vocabulary's hash."""
    checkpoint = {
        "sizes": model.sizes,
        "config": config,
        "vocab_sha256": vocab.sha256,
        "state_dict": model.state_dict(),
    }
    buffer = io.BytesIO()  # torch.save names the archive inside after a file: a buffer keeps the bytes path-free
    torch.save(checkpoint, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def load_checkpoint(path: str | Path, vocab: Vocab, kind: type[nn.Module]) -> nn.Module:
    """The model saved at `path` (a `kind`: `Captioner` or `Infiller`), in
    eval mode, on the CPU; it must have been trained on `vocab`. Its `config` is the
    checkpoint's: how, and on what machine, it was trained."""
    checkpoint = read_checkpoint(path)
    if checkpoint["vocab_sha256"] != vocab.sha256:
        raise UserError(
            f"{path}: trained on another vocabulary (sha256 {checkpoint['vocab_sha256'][:12]}, "
            f"this one is {vocab.sha256[:12]}); retrain it or use the vocab.json it was trained with"
        )
    try:
        model = kind(**checkpoint["sizes"])
        model.load_state_dict(checkpoint["state_dict"])
    except (TypeError, RuntimeError):  # another kind's sizes or weights
        raise UserError(f"{path}: not a checkpoint of a {kind.__name__}") from None
    model.config = checkpoint["config"]
    return model.eval()


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint's dict as saved (`config` tells how the model was trained)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: no such checkpoint") from None
    except Exception as error:  # torch raises many kinds for a file that is not a checkpoint
        raise UserError(f"{path}: not a readable checkpoint ({type(error).__name__})") from None
    if not isinstance(checkpoint, dict) or not {"sizes", "config", "vocab_sha256", "state_dict"} <= checkpoint.keys():
        raise UserError(f"{path}: not a fillblank checkpoint")
    return checkpoint
