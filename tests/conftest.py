"""Shared helpers and fixtures: the repository root, a runner for stage modules as DVC runs
them, fresh copies of the repository with params merged in, and a small trained `shapes`."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

# clone(dest, params): the project's files as a fresh clone has them, with params merged in;
# write_params(dest, params): only its params.yaml
from experiments.run import write_params
from fillblank import train
from fillblank.params import ShapesSource, TrainSettings

REPO = Path(__file__).resolve().parents[1]
SHARED_FLICKR8K = REPO.parent / "shared" / "data" / "flickr8k-dev"


def sh(*args: str, cwd: Path) -> str:
    """Run a command with this environment's programs (dvc) first on PATH; its stdout, or a failure showing both outputs."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout}\n{result.stderr}"
    return result.stdout


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


# A small `shapes`: built in about a minute on two cores, large enough to fill blanks well.
SHAPES = ShapesSource(seed=0, train=300, val=30, test=30, image_size=64)
TRAIN = TrainSettings(
    seed=0,
    embed=64,
    hidden=128,
    dropout=0.2,
    lr=0.003,
    rms_decay=0.99,
    clip=5.0,
    batch_size=25,
    max_epochs=20,
    patience=5,
)


@pytest.fixture(scope="session")
def shapes_project(tmp_path_factory) -> Path:
    """A project folder as `dvc repro` leaves it after training, for the small `shapes`
    above: its params.yaml and what the download, prepare, features, both train stages and
    the length rule's tuning write. It takes about a minute, so the tests that use it are marked slow."""
    root = tmp_path_factory.mktemp("project")
    write_params(
        root, {"sources": {"shapes": SHAPES.model_dump()}, "train": {"overrides": {"shapes": TRAIN.model_dump()}}}
    )
    for stage, *direction in [
        ("download",),
        ("prepare",),
        ("features",),
        *(("train", d) for d in train.DIRECTIONS),
        ("length",),
    ]:
        result = run_stage(stage, "shapes", *direction, cwd=root)
        assert result.returncode == 0, f"{stage} {' '.join(direction)}:\n{result.stdout}\n{result.stderr}"
    return root
