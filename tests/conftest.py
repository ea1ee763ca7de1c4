"""Shared fixtures: the repository root, and a runner for stage modules as DVC runs them."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_FLICKR8K = REPO.parent / "shared" / "data" / "flickr8k-dev"


def run_stage(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run `python -m stages.<args>` in `cwd` (which holds the params.yaml it reads)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "stages." + args[0], *args[1:]], cwd=cwd, env=env, capture_output=True, text=True
    )


@pytest.fixture
def params_file(tmp_path: Path):
    """Write the repository's params.yaml into tmp_path with some keys replaced."""

    def write(replacements: dict[str, str] | None = None) -> Path:
        text = (REPO / "params.yaml").read_text()
        for old, new in (replacements or {}).items():
            assert old in text, old
            text = text.replace(old, new)
        path = tmp_path / "params.yaml"
        path.write_text(text)
        return path

    return write
