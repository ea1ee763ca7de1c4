"""What computed a result: recorded in every checkpoint and in `metrics/<dataset>.json`.

PyTorch picks its CPU kernels (and so its float rounding) by the instruction set it finds,
and its thread count changes the order of sums, so two machines running the same code on
the same data may differ in the last bits, and captioners trained on them in their fills.
When two results differ, these fields say whether the machines did; `file_sha256` says
whether the inputs did (checkpoints record their inputs' and the backbone weights').
"""

import hashlib
from pathlib import Path

import torch


def machine(device: torch.device | str = "cpu") -> dict:
    """`{"torch", "cpu_capability", "threads", "device"}` of this process, computing on `device`."""
    return {
        "torch": str(torch.__version__),  # a str subclass, which `torch.load(weights_only=True)` refuses
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "device": str(device),
    }


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, as hex, read in blocks."""
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()
