"""The fill stage end to end on tiny random captioners: the fills table of the contract."""

import errno
import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import REPO, run_stage
from synthetic import tuned_length
from toy_models import one_thread, random_captioner  # noqa: F401

from fillblank import blanks, decode
from fillblank.checkpoint import save_checkpoint
from fillblank.data.text import Vocab
from fillblank.errors import UserError, run
from fillblank.evaluate import BLANK_COLUMNS, FILL_COLUMNS, check_fills, read_table
from stages import fill as fill_stage

CAPTIONS = [
    ["a", "red", "circle", "above", "a", "blue", "square"],
    ["two", "green", "stars"],
    ["a", "small", "yellow", "diamond"],
]


@pytest.fixture
def inputs(tmp_path, params_file, monkeypatch):
    """A vocabulary, two captioners, features and a blank set, as the earlier stages leave them."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # tiny tensors: extra threads only wait on a busy machine
    params_file(
        {"ratios: [0.25, 0.5, 0.75]": "ratios: [0.3, 0.6]", "beam: 7": "beam: 3", "max_length: 10": "max_length: 4"}
    )
    vocab = Vocab.build(CAPTIONS, min_count=1)
    vocab.save(tmp_path / "vocab.json")
    for seed, direction in enumerate(("forward", "backward")):
        model = random_captioner(len(vocab), seed, feature_dim=5)
        save_checkpoint(tmp_path / "models" / f"{direction}.pt", model, {"direction": direction}, vocab)
    with h5py.File(tmp_path / "features.h5", "w") as file:
        file["image_ids"] = np.array([3, 5, 8], dtype=np.int64)
        file["features"] = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    captions = pa.table({"image_id": [8, 3, 8], "split": ["test"] * 3, "sentence_id": [0, 1, 2], "tokens": CAPTIONS})
    pq.write_table(blanks.table(captions, [0.3, 0.6]), tmp_path / "blanks.parquet")
    (tmp_path / "length.json").write_text(json.dumps(tuned_length(0.5)))  # as stage length@<dataset> tunes it
    return tmp_path


FILES = [
    "--models",
    "models",
    "--vocab",
    "vocab.json",
    "--features",
    "features.h5",
    "--blanks",
    "blanks.parquet",
    "--length",
    "length.json",
]


def fill(folder, method):
    """The stage as DVC runs it, in a process of its own."""
    return run_stage("fill", "shapes", method, *FILES, "--out", f"fills/{method}.parquet", cwd=folder)


def fill_here(folder, method, monkeypatch):
    """The stage's `main` in this process: quicker, and a mistake raises its UserError."""
    monkeypatch.chdir(folder)
    monkeypatch.setattr(sys, "argv", ["fill", "shapes", method, *FILES, "--out", f"fills/{method}.parquet"])
    fill_stage.main()


def check(folder, method, settings):
    path = folder / "fills" / f"{method}.parquet"
    assert pq.read_schema(path).names == list(FILL_COLUMNS)
    fills, blank_set = read_table(path, FILL_COLUMNS), read_table(folder / "blanks.parquet", BLANK_COLUMNS)
    check_fills(fills, blank_set, path, settings)  # what the evaluate stage demands: every blank, sentences that add up
    assert sorted(set(fills["setting"])) == settings
    assert len(fills) == len(blank_set) * len(settings)
    assert (fills["score"] < 0).all() and (fills["seconds"] > 0).all()
    assert fills.loc[fills["setting"] == "unknown", "length"].between(1, 4).all()


def test_the_fill_stage_writes_a_fill_per_blank_and_setting(inputs):
    result = fill(inputs, "bibs")
    assert result.returncode == 0, result.stderr
    assert "shapes bibs, known length: mean S(Y)" in result.stdout
    check(inputs, "bibs", ["known", "unknown"])
    made_by = json.loads(pq.read_schema(inputs / "fills/bibs.parquet").metadata[b"provenance"])
    assert (
        made_by["fill"].keys() == {"torch", "cpu_capability", "threads", "device"}
        and made_by["fill"]["device"] == "cpu"
    )
    assert made_by["forward"] is None  # these captioners were saved without a trainer's provenance


def test_bibs_unknown_fills_only_with_the_length_unknown(inputs, monkeypatch):
    fill_here(inputs, "bibs_unknown", monkeypatch)
    check(inputs, "bibs_unknown", ["unknown"])


def test_a_model_of_another_vocabulary_is_one_line(inputs, monkeypatch):
    Vocab.build([["other", "words"]], min_count=1).save(inputs / "vocab.json")
    with pytest.raises(UserError, match="^models/forward.pt: trained on another vocabulary"):
        fill_here(inputs, "forward", monkeypatch)
    assert not (inputs / "fills").exists()


def test_a_blank_without_image_features_is_one_line(inputs, monkeypatch):
    with h5py.File(inputs / "features.h5", "w") as file:
        file["image_ids"] = np.array([3, 5], dtype=np.int64)
        file["features"] = np.zeros((2, 5), dtype=np.float32)
    with pytest.raises(
        UserError, match=r"^features.h5: no features for 1 of the \d+ images asked for \(image 8 first\)$"
    ):
        fill_here(inputs, "forward", monkeypatch)


def test_a_misspelt_fill_param_stops_before_any_work(inputs, params_file, monkeypatch):
    params_file({"beam: 7": "beem: 7"})
    with pytest.raises(UserError, match=r"^params.yaml: unknown key 'fill.beem' \(did you mean 'beam'\?\)$"):
        fill_here(inputs, "bibs", monkeypatch)
    assert not (inputs / "fills").exists()


def test_fill_device_auto_is_the_gpu_when_there_is_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert decode.device("auto") == decode.device("cpu") == torch.device("cpu")
    with pytest.raises(UserError, match="^fill.device is cuda, but PyTorch sees no CUDA GPU here"):
        decode.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "1")  # the second process of torchrun on this machine
    assert decode.device("auto") == decode.device("cuda") == torch.device("cuda", 1)
    assert decode.device("cpu") == torch.device("cpu")


@pytest.mark.slow  # fresh Python processes: about 15 s
def test_two_gloo_processes_under_torchrun_write_the_fills_of_one_process(inputs, params_file):
    # Batches of two blanks, so that both processes get some in either setting.
    params_file(
        {
            "ratios: [0.25, 0.5, 0.75]": "ratios: [0.3, 0.6]",
            "beam: 7": "beam: 3",
            "max_length: 10": "max_length: 4",
            "batch: 64": "batch: 2",
        }
    )
    one = fill(inputs, "bibs")
    assert one.returncode == 0, one.stderr
    (inputs / "fills/bibs.parquet").rename(inputs / "one.parquet")
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "stages.fill"]
    two = subprocess.run(
        [sys.executable, *torchrun, "shapes", "bibs", *FILES, "--out", "fills/bibs.parquet"],
        cwd=inputs,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
    )
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("shapes bibs, known length: mean S(Y)") == 1  # the first process reports and writes
    single, double = (pq.read_table(inputs / name) for name in ("one.parquet", "fills/bibs.parquet"))
    assert single.drop_columns(["seconds"]).equals(double.drop_columns(["seconds"]))
    assert single.schema.metadata == double.schema.metadata


def test_an_output_folder_that_cannot_be_written_stops_the_stage_before_it_decodes(inputs):
    (inputs / "fills").write_text("a file where the folder of fills should be")
    result = fill(inputs, "bibs")
    assert (result.returncode, result.stderr) == (
        2,
        "error: fills: not a folder, so fills/bibs.parquet cannot be written\n",
    )


def test_a_write_the_system_refuses_is_one_line_naming_the_path(inputs, monkeypatch, capsys):
    """A read-only folder, a full disk: the stage's OSError, as errors.run prints it."""

    def refused(table, where, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(where))

    monkeypatch.setattr(fill_stage.pq, "write_table", refused)
    with pytest.raises(SystemExit) as stop:
        run(lambda: fill_here(inputs, "forward", monkeypatch))
    last = capsys.readouterr().err.splitlines()[-1]  # after the progress bars
    assert stop.value.code == 2 and "Traceback" not in last
    assert last.startswith("error: fills/.forward.parquet.tmp-") and last.endswith(": Read-only file system")
    assert list((inputs / "fills").iterdir()) == []  # nothing half-written
