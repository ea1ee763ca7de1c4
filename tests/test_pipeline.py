"""The DVC pipeline itself, on a small `shapes`, in a fresh copy of the repository."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

BIN = Path(sys.executable).parent


def sh(*args: str, cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """The project's files as a fresh clone would have them, with a small `shapes`."""
    files = sh("git", "ls-files", "--cached", "--others", "--exclude-standard", cwd=REPO).split("\n")
    for name in filter(None, files):
        if (REPO / name).is_file() and not name.startswith(("data/", "metrics/", "reports/")):
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, tmp_path / name)
    params = (tmp_path / "params.yaml").read_text()
    for key, small in (("train: 2000", "train: 100"), ("val: 200", "val: 20"), ("test: 200", "test: 20")):
        params = params.replace(key, small)
    (tmp_path / "params.yaml").write_text(params)
    sh("git", "init", "-q", cwd=tmp_path)
    return tmp_path


def test_repro_builds_prepared_data_then_is_a_clean_no_op(clone):
    sh("dvc", "repro", "prepare", cwd=clone)
    assert (clone / "data/raw/shapes/images/shapes.zip").exists()
    assert (clone / "data/raw/shapes/SHA256SUMS").read_text().count("\n") == 2
    assert (clone / "data/prepared/shapes/vocab.json").exists()
    assert (clone / "data/prepared/shapes/captions.parquet").exists()

    again = sh("dvc", "repro", "prepare", cwd=clone)
    assert "didn't change, skipping" in again and "Running stage" not in again
    assert "up to date" in sh("dvc", "status", "prepare", cwd=clone)


def test_changing_a_param_reruns_only_the_stages_that_use_it(clone):
    sh("dvc", "repro", "prepare", cwd=clone)
    params = (clone / "params.yaml").read_text().replace("min_count: 5", "min_count: 3")
    (clone / "params.yaml").write_text(params)
    out = sh("dvc", "repro", "prepare", cwd=clone)
    assert "Running stage 'prepare@shapes'" in out
    assert "Running stage 'download@shapes'" not in out
