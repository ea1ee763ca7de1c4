"""Running under torchrun: the process group, and what the ranks share.

Training (`fillblank.train`) and filling (`stages/fill.py`) both run as one process or as
`torchrun --nproc_per_node N -m stages.<stage> ...`: each joins torchrun's group with
`group()`, works on its share, and combines with the others through `all_sum` or
`gather`; outside torchrun these are the single process's own values.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import Tensor


@contextmanager
def group() -> Iterator[None]:
    """Join torchrun's process group when launched by it (gloo on CPUs, NCCL on GPUs)."""
    if "WORLD_SIZE" not in os.environ:
        yield
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank())
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def rank_world() -> tuple[int, int]:
    """This process's rank and the number of processes: (0, 1) outside torchrun."""
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def local_rank() -> int:
    """This process's rank on its machine, which picks its GPU."""
    return int(os.environ.get("LOCAL_RANK", 0))


def all_sum(total: Tensor) -> float:
    """The sum of `total` (a scalar) over every process."""
    if dist.is_initialized():
        dist.all_reduce(total)
    return total.item()


def gather(part: object) -> list[object]:
    """Every process's `part` (any picklable object), in rank order."""
    if not dist.is_initialized():
        return [part]
    parts: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, part)
    return parts
