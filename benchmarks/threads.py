"""Should the tests' background build of `shapes` run one thread or two? Epochs of its
longest stage, the infiller's training, at one thread and at two (OpenMP's waits as PyTorch
leaves them, and `OMP_WAIT_POLICY=PASSIVE`), each alone and beside a busy process at nice
10, as a test process of `make test` runs beside the build (tests/conftest.py). Each
setting trains in a fresh process; prints its wall and CPU seconds, and from the same run
each setting's speed and CPU over one thread's.

Run it in a project where `dvc repro` has prepared `shapes` and extracted its features:

    python benchmarks/threads.py [--epochs 2]
"""

import argparse
import os
import resource
import subprocess
import sys
import time

TRAIN = """
import sys, tempfile
from pathlib import Path
from fillblank import params
from fillblank.train.data import load_data
from fillblank.train.infiller import fit_infiller
settings = params.load().infiller.settings("shapes").model_copy(update={"max_epochs": int(sys.argv[1]), "patience": 99})
data = load_data(Path("data/prepared/shapes/vocab.json"), Path("data/prepared/shapes/captions.parquet"),
                 Path("data/features/shapes.h5"), "infiller")
with tempfile.TemporaryDirectory() as folder:
    fit_infiller(settings, data, Path(folder) / "resume.pt")
"""
SETTINGS = {
    "1 thread": {"OMP_NUM_THREADS": "1"},
    "2 threads": {"OMP_NUM_THREADS": "2"},
    "2 threads, passive waits": {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"},
}


def cpu_seconds() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def train(epochs: int, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one training run in a fresh process."""
    cpu, start = cpu_seconds(), time.perf_counter()
    subprocess.run([sys.executable, "-c", TRAIN, str(epochs)], env=os.environ | env, check=True, capture_output=True)
    return time.perf_counter() - start, cpu_seconds() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    for beside in (False, True):
        print("beside a busy process at nice 10" if beside else "alone")
        first = None
        for name, env in SETTINGS.items():
            busy = subprocess.Popen(["nice", "-n", "10", sys.executable, "-c", "while True: pass"]) if beside else None
            wall, cpu = train(args.epochs, env | {"PYTHONPATH": os.getcwd()})
            if busy:
                busy.kill()
                busy.wait()
            first = first or (wall, cpu)
            ratios = f"speed x{first[0] / wall:.2f}, CPU x{cpu / first[1]:.2f}"
            print(f"  {name:25s} {wall:6.1f} s, CPU {cpu:6.1f} s: {ratios}", flush=True)


if __name__ == "__main__":
    main()
