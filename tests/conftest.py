"""Shared helpers and fixtures: the repository root, a runner for stage modules as DVC runs
them, fresh copies of the repository with params merged in, and a small trained `shapes`."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

from fillblank import cli, features, params, train
from fillblank.data import karpathy
from fillblank.data.sources import shapes
from fillblank.data.text import Vocab
from fillblank.model import save_checkpoint
from fillblank.params import ShapesSource, TrainSettings

REPO = Path(__file__).resolve().parents[1]
SHARED_FLICKR8K = REPO.parent / "shared" / "data" / "flickr8k-dev"


def sh(*args: str, cwd: Path) -> str:
    """Run a command with this environment's programs (dvc) first on PATH; its stdout, or a failure showing both outputs."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def clone(dest: Path, params: dict) -> Path:
    """The project's files as a fresh clone has them (the working tree's, uncommitted changes
    included, no pipeline outputs), in a new git repository, with `params` merged over params.yaml."""
    files = sh("git", "ls-files", "--cached", "--others", "--exclude-standard", cwd=REPO).split("\n")
    for name in filter(None, files):
        if (REPO / name).is_file() and not name.startswith(("data/", "metrics/", "reports/")):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    merged = merge(yaml.safe_load((dest / "params.yaml").read_text()), params)
    (dest / "params.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))
    sh("git", "init", "-q", cwd=dest)
    return dest


def merge(base: dict, changes: dict) -> dict:
    """`base` with `changes` written over it, key by key at every depth."""
    merged = dict(base)
    for key, value in changes.items():
        both = isinstance(value, dict) and isinstance(base.get(key), dict)
        merged[key] = merge(base[key], value) if both else value
    return merged


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
    seed=0, embed=64, hidden=128, dropout=0.2, lr=0.003, rms_decay=0.99, clip=5.0, batch_size=25, max_epochs=20, patience=5
)


@pytest.fixture(scope="session")
def shapes_project(tmp_path_factory) -> Path:
    """A project folder as `dvc repro` leaves it, for the small `shapes` above: params.yaml,
    the prepared captions, the features and both captioners, all made by the library. It
    takes about a minute, so the tests that use it are marked slow."""
    root = tmp_path_factory.mktemp("project")
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    raw, prepared, models = root / "data/raw/shapes", root / "data/prepared/shapes", root / "data/models/shapes"
    shapes.fetch(raw, SHAPES)
    captions = karpathy.read(raw / "dataset_shapes.json")
    prepared.mkdir(parents=True)
    train_words = captions.filter(pc.equal(captions["split"], "train"))["tokens"].to_pylist()
    Vocab.build(train_words, params.load(root / "params.yaml").prepare.min_count).save(prepared / "vocab.json")
    pq.write_table(captions, prepared / "captions.parquet")
    images = sorted(set(zip(captions["image_id"].to_pylist(), captions["filename"].to_pylist())))
    h5 = root / "data/features/shapes.h5"
    net = features.backbone("efficientnet_lite0", "IMAGENET1K")
    features.extract(images, [raw / "images/shapes.zip"], h5, h5.with_suffix(".skipped.json"), net, 16, 0, 0.0)
    with cli.one_thread():  # small models: a second thread costs more than it gives
        for direction in train.DIRECTIONS:
            data = train.load_data(prepared / "vocab.json", prepared / "captions.parquet", h5, direction)
            result = train.fit(TRAIN, data, root / f"{direction}.resume.pt")
            save_checkpoint(models / f"{direction}.pt", result.model, {"dataset": "shapes", **result.config}, data.vocab)
    return root
