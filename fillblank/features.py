"""The features file, `data/features/<ds>.h5`, and reading it.

Written by `fillblank.extract.extract` (to a temporary name, then renamed):

    /features    float32 (N, D)  the backbone's pooled penultimate activations, row i for image_ids[i]
    /image_ids   int64 (N,)      ascending: every image of the dataset but the skipped ones
    attrs        backbone, weights, weights_sha256 (of the weights file; "none" without),
                 transform (its repr), feature_dim, device, images (asked for), skipped,
                 and the versions of torch, torchvision, pillow, numpy, h5py (and
                 efficientnet-lite-pytorch for its backbones)

Training, tuning and filling read it here; they do not depend on how it was extracted.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np
import torch

from fillblank.errors import UserError


@contextmanager
def opened(path: Path) -> Iterator[h5py.File]:
    """A features file, open for reading; a missing or broken one stops with one line."""
    try:
        with h5py.File(path, "r") as file:
            yield file
    except FileNotFoundError:
        raise UserError(f"{path}: no such file (run the features stage first)") from None
    except (OSError, KeyError) as error:
        raise UserError(f"{path}: not a readable features file ({error})") from None


def stored_ids(path: Path) -> np.ndarray:
    """The image ids a features file holds, ascending: (N,)."""
    with opened(path) as file:
        return file["image_ids"][:]


def read_features(path: Path, image_ids: np.ndarray) -> torch.Tensor:
    """The features of `image_ids` (any order, repeats allowed), in their order: (N, D)."""
    with opened(path) as file:
        known = file["image_ids"][:]
        rows = np.searchsorted(known, image_ids).clip(max=len(known) - 1)
        if (missing := np.unique(image_ids[known[rows] != image_ids])).size:
            raise UserError(
                f"{path}: no features for {missing.size} of the {len(np.unique(image_ids))} images asked for "
                f"(image {missing[0]} first)"
            )
        unique, inverse = np.unique(rows, return_inverse=True)  # h5py reads sorted, distinct rows
        return torch.from_numpy(file["features"][unique].astype(np.float32)[inverse])
