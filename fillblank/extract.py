"""CNN features of a dataset's images, read straight from its zips, into the features file.

`extract` runs every image through a backbone (fillblank/backbones.py) and writes
`data/features/<ds>.h5` (layout: fillblank/features.py) and beside it the report of images
that could not be used (later stages leave them out):

    <ds>.skipped.json   {"images": 8091, "skipped": [{"image_id": 7, "filename": "x.jpg",
                         "reason": "OSError: image file is truncated"}, ...]}

A run where more than `max_skipped` (a fraction) of the images fail writes the report, not
the features, and stops with one line naming the first few.

Images are decoded in DataLoader workers, each opening its own handle on each zip.
"""

import contextlib
import io
import json
import os
import re
import shutil
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path, PurePosixPath

import h5py
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from fillblank import images
from fillblank.atomic import atomic_path, write_text
from fillblank.backbones import Backbone
from fillblank.errors import UserError

LIBRARIES = ("torch", "torchvision", "pillow", "numpy", "h5py")  # whose versions the provenance records
# What a broken image raises while its zip member is inflated and PIL opens, decodes or converts
# it (zlib.error: a corrupt member; SyntaxError: some broken PNGs).
IMAGE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, zipfile.BadZipFile, zlib.error)
IMAGE_ERRORS += (Image.DecompressionBombError,)
# The compression methods zipfile reads.
READABLE = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}


class ZipImages(Dataset):
    """Images as (position, tensor, "") or, when unreadable, (position, None, reason)."""

    def __init__(self, members: Sequence[tuple[Path, str]], transform: Callable):
        self.members = members
        self.transform = transform
        self._zips: dict[tuple[int, Path], zipfile.ZipFile] = {}

    def __len__(self) -> int:
        return len(self.members)

    def __getitem__(self, position: int) -> tuple[int, torch.Tensor | None, str]:
        path, member = self.members[position]
        key = (os.getpid(), path)  # a zip handle shared across fork would share its file offset
        if key not in self._zips:
            self._zips[key] = zipfile.ZipFile(path)
        try:
            with Image.open(io.BytesIO(self._zips[key].read(member))) as image:
                return position, self.transform(images.rgb(image)), ""
        except IMAGE_ERRORS as error:
            # without the object's address, which would make the report differ run to run
            return position, None, re.sub(r" <[^>]* at 0x[0-9a-f]+>", "", f"{type(error).__name__}: {error}")


def _collate(batch: list) -> tuple[torch.Tensor, torch.Tensor | None, list[tuple[int, str]]]:
    good = [(position, image) for position, image, _ in batch if image is not None]
    failed = [(position, reason) for position, image, reason in batch if image is None]
    positions = torch.tensor([position for position, _ in good], dtype=torch.long)  # shape: (B,)
    images = torch.stack([image for _, image in good]) if good else None  # shape: (B, 3, H, W)
    return positions, images, failed


def member_index(archives: Sequence[Path], wanted: set[str]) -> dict[str, tuple[Path, str]]:
    """Where each of the `wanted` base names (`base_name`) is in `archives`: (archive, member).
    A name held by two members of different content, or a member no `zipfile` can read
    (encrypted, or packed with a method it lacks, as Deflate64), is one `UserError`, not a
    silent pick or a crash hours in."""
    index: dict[str, tuple[Path, zipfile.ZipInfo]] = {}
    for archive in sorted(archives):
        try:
            with zipfile.ZipFile(archive) as zipped:
                members = zipped.infolist()
        except (zipfile.BadZipFile, OSError) as error:
            raise UserError(f"{archive}: not a readable zip ({error})") from None
        for info in members:
            for name in member_names(info) & wanted:
                if info.flag_bits & 0x1 or info.compress_type not in READABLE:
                    method = f"packed with compression method {info.compress_type}"
                    problem = "encrypted" if info.flag_bits & 0x1 else method
                    raise UserError(
                        f"{archive}: {info.filename} is {problem}, which Python's zipfile cannot read; "
                        "re-pack the images with `zip`"
                    )
                if name in index and (index[name][1].CRC, index[name][1].file_size) != (info.CRC, info.file_size):
                    first = f"{index[name][0].name}:{index[name][1].filename}"
                    raise UserError(
                        f"{name}: two different images by that name ({first} and {archive.name}:{info.filename}); "
                        f"keep one, or rename one and its entry in the captions"
                    )
                index.setdefault(name, (archive, info))
    return {name: (archive, info.filename) for name, (archive, info) in index.items()}


def base_name(filename: str) -> str:
    """The name an image is found by: the last part of its path, with either slash (Windows'
    own zip writer stores `\\`), in Unicode's composed form (macOS writes `é` decomposed)."""
    return unicodedata.normalize("NFC", PurePosixPath(filename.replace("\\", "/")).name)


def member_names(info: zipfile.ZipInfo) -> set[str]:
    """The base names a zip member may stand for. Without the UTF-8 flag, zipfile reads a name
    as cp437, as the format says; but Info-ZIP and older Windows tools write UTF-8 there
    without the flag, so the same bytes read as UTF-8 are a candidate too."""
    names = {base_name(info.filename)}
    if not info.flag_bits & 0x800:
        with contextlib.suppress(UnicodeError):  # not UTF-8: cp437 it is
            names.add(base_name(info.filename.encode("cp437").decode("utf-8")))
    return names


def extract(
    images: Sequence[tuple[int, str]],
    archives: Sequence[Path],
    out: Path,
    report: Path,
    net: Backbone,
    batch_size: int,
    workers: int,
    max_skipped: float,
) -> tuple[int, int]:
    """Features of `images` ((image_id, filename) pairs), each found by the base name of its
    filename in `archives`; return (features written, images skipped). The features, or with
    too many images skipped the report alone, are written whole or not at all."""
    index = member_index(archives, {base_name(filename) for _, filename in images})
    images = sorted(set(images))
    found = [(image_id, filename) for image_id, filename in images if base_name(filename) in index]
    skipped = [
        {"image_id": image_id, "filename": filename, "reason": "not in any image zip"}
        for image_id, filename in images
        if base_name(filename) not in index
    ]
    members = [index[base_name(filename)] for _, filename in found]
    check_space(out.parent, len(found) * net.dim * 4)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = net.model.to(device)
    loader = DataLoader(
        ZipImages(members, net.transform),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=device.type == "cuda",
    )
    with atomic_path(out) as tmp:
        with h5py.File(tmp, "w") as h5:
            skipped += write_features(h5, loader, found, model, device, net)
            skipped.sort(key=lambda entry: entry["image_id"])
            listed = json.dumps({"images": len(images), "skipped": skipped}, indent=1) + "\n"
            if len(skipped) > max_skipped * len(images):
                write_text(report, listed)
                first = "; ".join(f"{entry['filename']} ({entry['reason']})" for entry in skipped[:3])
                raise UserError(
                    f"{len(skipped)} of {len(images)} images could not be used, more than features.max_skipped "
                    f"({max_skipped:.1%}): {first}{'; ...' if len(skipped) > 3 else ''}; all listed in {report}"
                )
            h5.attrs.update(
                {
                    "backbone": net.name,
                    "weights": net.weights,
                    "weights_sha256": net.weights_sha256,
                    "transform": repr(net.transform),
                    "feature_dim": net.dim,
                    "device": device.type,
                    "images": len(images),
                    "skipped": len(skipped),
                    **{f"{package}_version": version(package) for package in LIBRARIES},
                    **{f"{package}_version": value for package, value in net.versions.items()},
                }
            )
        write_text(report, listed)  # once the features are whole; they are renamed into place right after
    return len(images) - len(skipped), len(skipped)


def write_features(
    h5: h5py.File, loader: DataLoader, found: list[tuple[int, str]], model, device, net: Backbone
) -> list[dict]:
    """Run every batch of `loader` through `model` into `h5`'s /features and /image_ids; the
    images that could not be decoded, as skipped-report entries."""
    features = h5.create_dataset(
        "features", (0, net.dim), "float32", maxshape=(None, net.dim), chunks=(256, net.dim), track_times=False
    )
    image_ids = h5.create_dataset("image_ids", (0,), "int64", maxshape=(None,), chunks=(4096,), track_times=False)
    skipped = []
    with torch.inference_mode(), tqdm(total=len(found), desc=f"features ({net.name})", unit="img") as bar:
        for positions, batch, failed in loader:
            skipped += [{"image_id": found[p][0], "filename": found[p][1], "reason": reason} for p, reason in failed]
            if batch is not None:
                rows = model(batch.to(device, non_blocking=True)).float().cpu().numpy()  # shape: (B, D)
                start = features.shape[0]
                features.resize(start + len(rows), axis=0)
                features[start:] = rows
                image_ids.resize(start + len(rows), axis=0)
                image_ids[start:] = np.array([found[p][0] for p in positions.tolist()], dtype=np.int64)
            bar.update(len(positions) + len(failed))
    return skipped


def check_space(folder: Path, needed: int) -> None:
    """Stop with one line unless `folder`'s disk has room for about `needed` bytes of features
    (and a tenth more for HDF5's own): a full disk found at the start, not as a crash at the end."""
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < needed * 1.1 + (1 << 20):
        raise UserError(f"{folder}: {free / 1e6:.1f} MB free, and the features need about {needed * 1.1 / 1e6:.1f} MB")
