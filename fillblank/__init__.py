"""fillblank: fill-in-the-blank image captioning with Bidirectional Beam Search.

The library knows nothing of DVC; `stages/` wires it into the pipeline.
"""

import os

# The same bits on every x86-64 CPU. Left to themselves, PyTorch's own kernels, MKL and
# oneDNN each pick their code by the CPU's instruction set (AVX-512, AMX, ...), and the
# float rounding differs with it: captioners trained on two kinds of CPU then differ in
# the last bits, then in their beams, and `make regression` cannot compare metrics made
# on another machine. AVX2 is the widest set they share. Each is read at the first
# computation, not at `import torch`; set one yourself to choose (faster, machine-specific).
PINNED_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
os.environ |= {name: value for name, value in PINNED_KERNELS.items() if name not in os.environ}
