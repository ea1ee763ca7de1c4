"""benchmarks/gpu_check.py as a user runs it: at its smallest on the CPU, every part passes
and the table holds them all; without a GPU and without --device cpu it stops with one line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
PARTS = ("fixture", "train", "resume", "decode", "features", "total")


def gpu_check(*args: str, out: Path) -> subprocess.CompletedProcess:
    # One thread: the models are tiny, and a second thread on a busy machine only waits.
    env = {**os.environ, "OUT": str(out), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "benchmarks/gpu_check.py", *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # fresh processes for every stage: about a minute on two cores
def test_the_small_check_on_the_cpu_passes_and_writes_one_table_of_every_part(tmp_path):
    done = gpu_check("--device", "cpu", "--small", out=tmp_path)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    table = (tmp_path / "gpu_check.md").read_text()
    assert table in done.stdout
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    by_part = {}
    for part, *cells in rows[1:]:
        by_part.setdefault(part.removeprefix("| "), []).append(cells)
    assert set(by_part) == set(PARTS)
    (fixture,) = by_part["fixture"]
    assert fixture[1] == "pass" and "vs the committed CPU metrics" in fixture[0], fixture
    assert [cells[1] for cells in by_part["resume"]] == ["pass"]
    assert {cells[0].split(",")[0] for cells in by_part["train"][1:]} == {
        "forward captioner",
        "backward captioner",
        "infiller",
    }
    assert [cells[1] for cells in by_part["total"]] == ["pass"]

    raw = json.loads((tmp_path / "gpu_check.json").read_text())
    assert raw["passed"] and raw["fixture"]["failed"] == []
    assert all(model["tokens_per_second"] > 0 for model in raw["train"].values())
    assert raw["resume"]["said_resuming"] and raw["resume"]["max_difference"] == 0
    assert {key.split("/")[0] for key in raw["decode"]["runs"]} == {"forward"}
    assert (tmp_path / "gpu_check_fills.parquet").is_file()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_a_gpu_it_stops_with_one_line_unless_told_cpu(tmp_path):
    done = gpu_check(out=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: PyTorch sees no CUDA GPU here; run with --device cpu to check the CPU instead"
    ]
    assert not (tmp_path / "gpu_check.md").exists()
