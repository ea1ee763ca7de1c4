"""Is decoding hidden behind the model? The features stage's images per second against the
backbone's own forward throughput on preloaded tensors, both measured in this one run.

    python benchmarks/features.py [--images 512] [--backbone NAME --weights W]
                                  [--batch-size B] [--workers K] [--device cpu]

The stage side is `fillblank.extract.extract` end to end: zip reads, decoding and
transforms in DataLoader workers, the forward pass, the HDF5 writes. The model side runs
the same backbone, batch size and device over the same images already decoded into
memory. Its throughput is taken before and after the stage run and averaged, so that a
machine whose load drifts does not flatter either side. Target: ratio >= 0.8.

Backbone, weights, batch size and workers default to the `features` section of
params.yaml; the device to CUDA when PyTorch sees a GPU, as the stage picks it (`--device
cpu` hides the GPU from this process, the stage included). Images: the first N of
../shared/data/flickr8k-dev's zip when it is there (real photos), else N generated 500x375
JPEGs.
"""

import argparse
import io
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fillblank import params  # noqa: E402
from fillblank.backbones import Backbone, backbone  # noqa: E402
from fillblank.extract import ZipImages, extract  # noqa: E402

SHARED_ZIP = Path(__file__).resolve().parents[2] / "shared/data/flickr8k-dev/Flickr8k_Dataset.zip"


def photos(count: int, folder: Path) -> tuple[Path, list[tuple[int, str]]]:
    """An image zip and (image_id, filename) pairs for `count` of its images."""
    if SHARED_ZIP.is_file():
        with zipfile.ZipFile(SHARED_ZIP) as zipped:
            names = [n for n in zipped.namelist() if n.endswith(".jpg")][:count]
        return SHARED_ZIP, [(i, Path(n).name) for i, n in enumerate(names)]
    archive = folder / "generated.zip"
    rows, cols = np.mgrid[0:375, 0:500]
    with zipfile.ZipFile(archive, "w") as zipped:
        for i in range(count):
            pixels = np.stack([(rows + 7 * i) % 256, (cols * 3 + i) % 256, (rows + cols + 11 * i) % 256], -1)
            buffer = io.BytesIO()
            Image.fromarray(pixels.astype(np.uint8)).save(buffer, "JPEG", quality=90)
            zipped.writestr(f"generated/{i}.jpg", buffer.getvalue())
    return archive, [(i, f"{i}.jpg") for i in range(count)]


def forward_rate(net: Backbone, batches: list[torch.Tensor], device: torch.device) -> float:
    model = net.model.to(device)
    with torch.inference_mode():
        model(batches[0].to(device))  # warm-up: allocator, kernels
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for batch in batches:
            model(batch.to(device, non_blocking=True)).float().cpu()  # the stage brings rows back too
        elapsed = time.perf_counter() - start
    return sum(len(batch) for batch in batches) / elapsed


def parser() -> argparse.ArgumentParser:
    settings = params.load(Path(__file__).resolve().parents[1] / "params.yaml").features
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--backbone", default=settings.backbone)
    parser.add_argument("--weights", default=settings.weights)
    parser.add_argument("--batch-size", type=int, default=settings.batch_size)
    parser.add_argument("--workers", type=int, default=settings.workers)
    parser.add_argument(
        "--device", choices=["cpu", "cuda"], default=None, help="default: cuda when PyTorch sees a GPU, else cpu"
    )
    return parser


def measure(args: argparse.Namespace) -> dict:
    """Images per second of the stage and of the bare backbone (before, after and their mean)."""
    if args.device == "cpu":
        # The stage takes the GPU whenever PyTorch sees one; hidden before CUDA starts, it sees none.
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    if args.device == "cpu" and torch.cuda.is_available():
        raise SystemExit("--device cpu: CUDA was started in this process before the GPU could be hidden")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: PyTorch sees no CUDA GPU here")
    net = backbone(args.backbone, args.weights)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        archive, images = photos(args.images, Path(tmp))
        with zipfile.ZipFile(archive) as zipped:
            members = {Path(n).name: n for n in zipped.namelist()}
        decoded = ZipImages([(archive, members[name]) for _, name in images], net.transform)
        tensors = [decoded[i][1] for i in range(len(decoded))]
        batches = [torch.stack(tensors[i : i + args.batch_size]) for i in range(0, len(tensors), args.batch_size)]

        before = forward_rate(net, batches, device)
        start = time.perf_counter()
        out, report = Path(tmp) / "f.h5", Path(tmp) / "s.json"
        extract(images, [archive], out, report, net, args.batch_size, args.workers, max_skipped=0.0)
        stage = len(images) / (time.perf_counter() - start)
        after = forward_rate(net, batches, device)
    return {
        "setup": f"backbone {args.backbone} ({args.weights}), {len(images)} images, batch {args.batch_size}, "
        f"{args.workers} workers, {device.type}, {torch.get_num_threads()} threads",
        "stage": stage,
        "before": before,
        "after": after,
        "backbone": (before + after) / 2,
    }


def main() -> None:
    measured = measure(parser().parse_args())
    print(measured["setup"])
    print(f"stage:    {measured['stage']:8.1f} images/s")
    print(
        f"backbone: {measured['backbone']:8.1f} images/s on preloaded tensors "
        f"(before {measured['before']:.1f}, after {measured['after']:.1f})"
    )
    print(f"ratio:    {measured['stage'] / measured['backbone']:8.2f}   (target >= 0.80)")


if __name__ == "__main__":
    main()
