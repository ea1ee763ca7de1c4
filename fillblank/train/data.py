"""A prepared dataset's train and val captions as tensors, with their images' features.

Reads `vocab.json` and `captions.parquet` (fillblank/data/text.py, fillblank/data/karpathy.py)
and the features file (fillblank/features.py). The backward captioner reads every caption
reversed; the infiller reads them as the forward one does and cuts its own blanks
(fillblank/train/infiller.py).
"""

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from fillblank import tables
from fillblank.data.text import END_ID, PAD_ID, START_ID, Vocab
from fillblank.errors import UserError
from fillblank.features import read_features, stored_ids
from fillblank.provenance import file_sha256


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
    seen = np.isin(table["image_id"].to_numpy(), stored_ids(features))
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
            features=read_features(features, image_ids),
            rows=torch.from_numpy(np.searchsorted(image_ids, rows["image_id"].to_numpy())),
            captions=[words.ids(caption[::-1] if direction == "backward" else caption) for caption in rows["tokens"]],
        )
    inputs = {"vocab": vocab, "captions": captions, "features": features}
    provenance = {"direction": direction, **{f"{name}_sha256": file_sha256(path) for name, path in inputs.items()}}
    return Data(words, splits["train"], splits["val"], provenance)
