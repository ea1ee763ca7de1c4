"""Every x86-64 CPU runs the same kernels, so that the metrics made on one machine are
those that `make regression` finds on another (fillblank/__init__.py)."""

import os
import platform
import subprocess
import sys

import pytest

from fillblank import PINNED_KERNELS


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="the instruction set is pinned on x86-64 only")
def test_importing_fillblank_pins_the_instruction_set_even_after_torch():
    # A fresh interpreter, without the settings this one inherited from importing fillblank.
    code = "import torch, fillblank; print(torch.backends.cpu.get_cpu_capability())"
    env = {key: value for key, value in os.environ.items() if key not in PINNED_KERNELS}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == "AVX2"
