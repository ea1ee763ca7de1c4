"""The `features` stage as DVC runs it: params in, features and report out, one line on failure."""

import json
from pathlib import Path

import h5py
import pyarrow as pa
import pyarrow.parquet as pq
from conftest import run_stage
from test_features import photo_zip


def stage_inputs(root: Path, filenames: list[str]) -> None:
    """data/raw/flickr8k/images/photos.zip and a captions.parquet asking for `filenames`."""
    photo_zip(root / "data/raw/flickr8k/images/photos.zip")
    (root / "data/prepared/flickr8k").mkdir(parents=True)
    ids = list(range(len(filenames)))
    table = pa.table({"image_id": ids * 2, "filename": filenames * 2})  # two captions per image
    pq.write_table(table, root / "data/prepared/flickr8k/captions.parquet")


def test_the_stage_writes_features_and_report_from_params(tmp_path, params_file):
    params_file({"workers: 2 ": "workers: 0 "})
    stage_inputs(tmp_path, ["0.jpg", "1.jpg", "2.jpg"])
    result = run_stage("features", "flickr8k", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "flickr8k: 3 images x 1280 features (efficientnet_lite0, IMAGENET1K); 0 skipped" in result.stdout
    with h5py.File(tmp_path / "data/features/flickr8k.h5") as h5:
        assert h5["image_ids"][:].tolist() == [0, 1, 2]
    assert json.loads((tmp_path / "data/features/flickr8k.skipped.json").read_text())["skipped"] == []


def test_the_stage_stops_in_one_line_when_too_many_images_are_broken(tmp_path, params_file):
    params_file({"workers: 2 ": "workers: 0 "})
    stage_inputs(tmp_path, ["0.jpg", "5.jpg", "6.jpg"])
    result = run_stage("features", "flickr8k", cwd=tmp_path)
    assert result.returncode == 2
    last = result.stderr.splitlines()[-1]  # after the progress bar
    assert last.startswith("error: 2 of 3 images could not be used") and "5.jpg (OSError" in last
    assert not (tmp_path / "data/features/flickr8k.h5").exists()
