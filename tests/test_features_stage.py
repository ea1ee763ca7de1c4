"""The `features` stage as DVC runs it: params in, features and report out, one line on failure."""

import errno
import json
import sys
import unicodedata
import zipfile
from pathlib import Path

import h5py
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_stage
from test_features import jpeg, photo_zip

from fillblank import extract
from fillblank.errors import run
from stages import features as features_stage


def stage_inputs(root: Path, filenames: list[str]) -> None:
    """data/raw/flickr8k/images/photos.zip and an images.parquet asking for `filenames`."""
    photo_zip(root / "data/raw/flickr8k/images/photos.zip")
    (root / "data/prepared/flickr8k").mkdir(parents=True)
    table = pa.table({"image_id": list(range(len(filenames))), "filename": filenames})
    pq.write_table(table, root / "data/prepared/flickr8k/images.parquet")


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


def test_images_stored_under_the_names_zip_tools_really_write_are_found(tmp_path, params_file):
    """macOS's zip writes `é` decomposed (NFD); Info-ZIP and older Windows tools write UTF-8
    names without the zip's UTF-8 flag, which Python's zipfile then reads as cp437."""
    params_file({"workers: 2 ": "workers: 0 "})
    decomposed = unicodedata.normalize("NFD", "café.jpg")
    archive = tmp_path / "data/raw/flickr8k/images/photos.zip"
    archive.parent.mkdir(parents=True)
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr(f"photos/{decomposed}", jpeg(0))
        zipped.writestr("photos/naXXve.jpg", jpeg(1))  # an ASCII name as long as naïve.jpg's UTF-8 bytes ...
    # ... replaced by them, in the local and the central header, without setting the UTF-8 flag
    archive.write_bytes(archive.read_bytes().replace(b"naXXve.jpg", "naïve.jpg".encode()))
    with zipfile.ZipFile(archive) as zipped:
        assert "photos/" + "naïve.jpg".encode().decode("cp437") in zipped.namelist()  # read as cp437: "na├»ve.jpg"
    (tmp_path / "data/prepared/flickr8k").mkdir(parents=True)
    table = pa.table({"image_id": [0, 1], "filename": ["café.jpg", "naïve.jpg"]})  # as the captions name them (NFC)
    pq.write_table(table, tmp_path / "data/prepared/flickr8k/images.parquet")
    result = run_stage("features", "flickr8k", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "2 images x 1280 features" in result.stdout and "; 0 skipped" in result.stdout


def run_in_process(monkeypatch, project: Path, capsys) -> tuple[int, str]:
    """The stage's `main` as `python -m stages.features flickr8k` runs it: (exit status, stderr)."""
    monkeypatch.chdir(project)
    monkeypatch.setattr(sys, "argv", ["features", "flickr8k"])
    with pytest.raises(SystemExit) as stop:
        run(features_stage.main)
    return stop.value.code, capsys.readouterr().err


def test_a_full_disk_is_found_before_the_work_in_one_line(tmp_path, params_file, monkeypatch, capsys):
    params_file({"workers: 2 ": "workers: 0 "})
    stage_inputs(tmp_path, ["0.jpg", "1.jpg", "2.jpg"])
    monkeypatch.setattr(
        extract.shutil, "disk_usage", lambda folder: extract.shutil._ntuple_diskusage(10**9, 10**9, 600_000)
    )
    status, err = run_in_process(monkeypatch, tmp_path, capsys)
    assert status == 2 and err.count("\n") == 1
    assert err.startswith("error: data/features: 0.6 MB free, and the features need about ")
    assert not (tmp_path / "data/features/flickr8k.h5").exists()
    assert not (tmp_path / "data/features/flickr8k.skipped.json").exists()


def test_a_disk_that_fills_while_writing_leaves_nothing_half_written(tmp_path, params_file, monkeypatch, capsys):
    params_file({"workers: 2 ": "workers: 0 "})
    stage_inputs(tmp_path, ["0.jpg", "1.jpg", "2.jpg"])

    def full(h5, *args):
        raise OSError(errno.ENOSPC, "No space left on device", h5.filename)

    monkeypatch.setattr(extract, "write_features", full)
    status, err = run_in_process(monkeypatch, tmp_path, capsys)
    assert status == 2 and err.count("\n") == 1
    assert err.startswith("error: ") and err.endswith(
        ".flickr8k.h5.tmp-" + err.split(".tmp-")[1].split(":")[0] + ": No space left on device\n"
    )
    assert (
        sorted(path.name for path in (tmp_path / "data/features").iterdir()) == []
    )  # no features, report or temporary


def test_an_unwritable_output_folder_stops_the_stage_before_any_image_is_read(tmp_path, params_file):
    params_file({"workers: 2 ": "workers: 0 "})
    stage_inputs(tmp_path, ["0.jpg"])
    (tmp_path / "data/features").write_text("a file where the folder should be")
    result = run_stage("features", "flickr8k", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: data/features") and "img/s" not in result.stderr
