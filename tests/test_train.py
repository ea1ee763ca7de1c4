"""Training on a tiny dataset whose captions name the colour its image feature encodes."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from fillblank import params, provenance
from fillblank.captioner import Captioner
from fillblank.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from fillblank.data.text import END_ID, PAD_ID, START_ID, Vocab
from fillblank.errors import UserError
from fillblank.params import TrainSettings
from fillblank.train import loop
from fillblank.train.captioners import examples, fit_captioner
from fillblank.train.data import Split, load_data

REPO = Path(__file__).resolve().parents[1]
COLOURS = ("red", "green", "blue", "black")
SETTINGS = TrainSettings(
    seed=0, embed=16, hidden=32, dropout=0.1, lr=0.01, rms_decay=0.99, clip=5.0, batch_size=20, max_epochs=6, patience=6
)


def write_colours(folder: Path, images: int) -> Path:
    """Image i is coloured COLOURS[i % 4] (its feature is that one-hot, plus noise); every
    fifth image is in val. Captions: "a <colour> thing", "the thing is <colour>"."""
    rng = np.random.default_rng(0)
    rows = []
    for image_id in range(images):
        colour = COLOURS[image_id % 4]
        for k, words in enumerate((["a", colour, "thing"], ["the", "thing", "is", colour])):
            split = "val" if image_id % 5 == 0 else "train"
            rows.append(
                dict(
                    image_id=image_id,
                    filename=f"{image_id}.png",
                    split=split,
                    sentence_id=2 * image_id + k,
                    raw=" ".join(words),
                    tokens=words,
                )
            )
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(folder / "captions.parquet")
    Vocab.build([row["tokens"] for row in rows if row["split"] == "train"], min_count=1).save(folder / "vocab.json")
    features = np.eye(4)[np.arange(images) % 4] + 0.1 * rng.standard_normal((images, 4))
    with h5py.File(folder / "features.h5", "w") as file:
        file["features"] = features.astype(np.float32)
        file["image_ids"] = np.arange(images, dtype=np.int64)
    return folder


@pytest.fixture(autouse=True)
def one_thread():
    """These captioners are tiny: a second thread only waits, and on a busy machine the
    waiting costs more than the work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def colours(tmp_path_factory) -> Path:
    return write_colours(tmp_path_factory.mktemp("colours"), images=100)


def load(folder: Path, direction: str = "forward"):
    return load_data(folder / "vocab.json", folder / "captions.parquet", folder / "features.h5", direction)


def test_a_dataset_overrides_only_the_settings_it_names(tmp_path):
    loaded = yaml.safe_load((REPO / "params.yaml").read_text())
    loaded["train"]["overrides"]["coco"] = {"hidden": 64}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(loaded))
    train = params.load(tmp_path / "params.yaml").train
    assert train.settings("coco").hidden == 64
    assert train.settings("coco").model_copy(update={"hidden": train.hidden}) == train.settings("flickr30k")
    loaded["train"]["overrides"]["coco"] = {"hiden": 64}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(loaded))
    with pytest.raises(UserError, match="unknown key 'train.overrides.coco.hiden'"):
        params.load(tmp_path / "params.yaml")


def test_backward_data_reads_each_caption_reversed(colours):
    forward, backward = load(colours), load(colours, "backward")
    vocab = forward.vocab
    first = forward.train.rows.tolist().index(0)  # a caption of image 1 (image 0 is in val)
    assert forward.train.words(first) == vocab.ids(["a", "green", "thing"])
    assert backward.train.words(first) == vocab.ids(["thing", "green", "a"])
    assert forward.train.lengths[first] == 4  # three words and <end>
    assert forward.train.image_ids[0] == 1 and forward.val.image_ids[:2].tolist() == [0, 5]
    with h5py.File(colours / "features.h5") as file:
        assert torch.equal(forward.val.features[1], torch.from_numpy(file["features"][5]))


def test_a_batch_pads_its_captions_and_a_long_caption_costs_only_its_own_length():
    captions = [[4, 5, 6]] * 1000 + [[7] * 2000]
    split = Split.of(torch.arange(2), torch.zeros(2, 8), torch.zeros(1001, dtype=torch.long), captions)
    assert split.tokens.numel() == 1000 * 5 + 2002  # <start>, the words, <end>: no padding stored
    features, inputs, targets = split.batch(torch.tensor([3, 1000]), epoch=0)
    assert inputs.shape == targets.shape == (2, 2001)  # the longest's words and <end>
    assert inputs[0, :5].tolist() == [START_ID, 4, 5, 6, END_ID] and set(inputs[0, 5:].tolist()) == {PAD_ID}
    assert targets[0, :4].tolist() == [4, 5, 6, END_ID] and targets[1, -1] == END_ID
    _, inputs, _ = split.batch(torch.tensor([0, 999]), epoch=0)
    assert inputs.shape == (2, 4) and split.words(1000) == [7] * 2000


def test_captions_of_images_without_features_are_left_out(colours, tmp_path):
    # The features stage leaves out the images it cannot read: first image 99 (train), then all of val.
    with h5py.File(colours / "features.h5") as source, h5py.File(tmp_path / "features.h5", "w") as file:
        file["features"] = source["features"][:-1]
        file["image_ids"] = source["image_ids"][:-1]
    data = load_data(colours / "vocab.json", colours / "captions.parquet", tmp_path / "features.h5", "forward")
    assert 99 not in data.train.image_ids.tolist() and len(data.train.rows) == len(load(colours).train.rows) - 2
    with h5py.File(tmp_path / "features.h5", "w") as file:
        file["features"] = np.zeros((80, 4), dtype=np.float32)
        file["image_ids"] = np.array([i for i in range(100) if i % 5], dtype=np.int64)
    with pytest.raises(UserError, match="captions.parquet: no captions in the val split with features in"):
        load_data(colours / "vocab.json", colours / "captions.parquet", tmp_path / "features.h5", "forward")


def test_training_learns_the_colours_and_keeps_the_best_epoch(colours, tmp_path):
    data = load(colours, "backward")
    result = fit_captioner(SETTINGS, data, tmp_path / "resume.pt")
    perplexities = [row["val_perplexity"] for row in result.history]
    # Knowing the colour leaves only the choice of template: perplexity about 1.17 against 1.59 without.
    assert perplexities[-1] < min(perplexities[0], 1.4)
    assert result.metrics()["best_val_perplexity"] == min(perplexities)
    assert result.metrics()["epochs"] == len(result.history) <= SETTINGS.max_epochs
    assert result.metrics()["tokens_per_second"] > 0
    lines = examples(result.model, data, count=2)  # val images 0 (red) and 5 (green)
    assert (
        lines[0].startswith("image 0: ")
        and "red" in lines[0]
        and lines[1].startswith("image 5: ")
        and "green" in lines[1]
    )
    assert lines[0].split(": ")[1] in ("a red thing", "the thing is red")  # back in reading order


def test_early_stopping_waits_patience_epochs_after_the_best(colours, tmp_path):
    settings = SETTINGS.model_copy(update={"lr": 0.5, "max_epochs": 20, "patience": 2})  # far too fast: it gets worse
    result = fit_captioner(settings, load(colours), tmp_path / "resume.pt")
    assert len(result.history) == result.best_epoch + 2 < 20


def test_two_runs_give_identical_checkpoints(colours, tmp_path):
    data = load(colours)
    for run in ("one", "two"):
        result = fit_captioner(SETTINGS, data, tmp_path / f"{run}.resume.pt")
        save_checkpoint(tmp_path / f"{run}.pt", result.model, result.config, data.vocab)
    assert (tmp_path / "one.pt").read_bytes() == (tmp_path / "two.pt").read_bytes()


def test_a_resume_file_of_other_settings_is_not_used(colours, tmp_path, capsys):
    data = load(colours)
    fit_captioner(SETTINGS.model_copy(update={"lr": 0.02}), data, tmp_path / "resume.pt")
    resumed = fit_captioner(SETTINGS, data, tmp_path / "resume.pt")
    fresh = fit_captioner(SETTINGS, data, tmp_path / "fresh.pt")
    assert "resuming" not in capsys.readouterr().out
    assert resumed.history == fresh.history


def test_a_resume_file_of_other_training_code_is_not_used(colours, tmp_path, capsys, monkeypatch):
    data = load(colours)
    with monkeypatch.context() as patched:
        patched.setattr(loop, "code_sha256", lambda: "the code before a fix")
        fit_captioner(SETTINGS, data, tmp_path / "resume.pt")
    resumed = fit_captioner(SETTINGS, data, tmp_path / "resume.pt")
    assert "resuming" not in capsys.readouterr().out and len(resumed.history) > 0


def project(tmp_path: Path, data: Path, **shapes: object) -> Path:
    """A working folder for `stages.train shapes`: params.yaml with `shapes` overrides, data beside it."""
    loaded = yaml.safe_load((REPO / "params.yaml").read_text())
    loaded["train"]["overrides"]["shapes"] = shapes
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(loaded))
    (tmp_path / "data" / "prepared").mkdir(parents=True)
    (tmp_path / "data" / "features").mkdir()
    (tmp_path / "data" / "prepared" / "shapes").symlink_to(data)
    (tmp_path / "data" / "features" / "shapes.h5").symlink_to(data / "features.h5")
    return tmp_path


def stage(cwd: Path, *args: str, launcher: tuple[str, ...] = ("-m", "stages.train", "shapes")) -> subprocess.Popen:
    """Start `stages.train shapes <args>` in `cwd`, its output going to cwd/log (a pipe nobody reads could fill)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}  # as `one_thread`
    with (cwd / "log").open("w") as log:
        return subprocess.Popen([sys.executable, *launcher, *args], cwd=cwd, env=env, stdout=log, stderr=log)


def finish(process: subprocess.Popen, cwd: Path) -> str:
    process.wait(timeout=600)
    log = (cwd / "log").read_text()
    assert process.returncode == 0, log
    return log


TINY = dict(embed=16, hidden=32, dropout=0.1, lr=0.01, rms_decay=0.99, batch_size=20, max_epochs=6, patience=6)


@pytest.mark.slow
def test_a_model_trained_elsewhere_keeps_its_metrics_beside_it_not_over_the_pipeline_s(colours, tmp_path):
    cwd = project(tmp_path, colours, **(TINY | {"max_epochs": 1, "patience": 1}))
    finish(stage(cwd, "forward", "--model", "variant/forward.pt"), cwd)
    assert (cwd / "variant/forward.metrics.json").is_file() and (cwd / "variant/forward.metrics.csv").is_file()
    assert not (cwd / "metrics").exists()


@pytest.mark.slow  # fresh Python processes: about 10 s
def test_stage_writes_model_curves_and_metrics_and_removes_its_resume_file(colours, tmp_path):
    cwd = project(tmp_path, colours, **TINY)
    out = finish(stage(cwd, "backward"), cwd)
    model = cwd / "data" / "models" / "shapes" / "backward.pt"
    config = read_checkpoint(model)["config"]
    assert config["dataset"] == "shapes" and config["direction"] == "backward" and config["settings"]["hidden"] == 32
    assert config["provenance"] == provenance.machine("cpu")  # where it was trained: torch, CPU capability, threads
    load_checkpoint(model, Vocab.load(colours / "vocab.json"), Captioner)
    metrics = json.loads((cwd / "metrics" / "train" / "shapes-backward.json").read_text())
    curves = pd.read_csv(cwd / "metrics" / "train" / "shapes-backward.csv")
    assert list(curves.columns) == ["epoch", "train_loss", "val_loss", "val_perplexity"]
    assert metrics["epochs"] == len(curves) and metrics["best_val_perplexity"] == pytest.approx(
        curves["val_perplexity"].min()
    )
    assert "image 0: " in out
    assert not (cwd / "data" / "models" / "shapes" / "backward.resume.pt").exists()

    greedy = subprocess.run(
        [
            sys.executable,
            "-m",
            "fillblank.train.captioners",
            model,
            "--prepared",
            colours,
            "--features",
            colours / "features.h5",
            "-n",
            "2",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
    )
    assert greedy.stdout.splitlines()[0] in out.splitlines()  # the stage printed the same captions
    assert [line.split(":")[0] for line in greedy.stdout.splitlines()] == ["image 0", "image 5"]


# Runs stages.train with RMSprop's step patched to kill -9 its own process at the given
# update: an interruption at a known point, with no timing to race against.
KILL_AT_STEP = """
import os, runpy, signal, sys, torch
step, updates, kill_at = torch.optim.RMSprop.step, [0], int(sys.argv[1])
def killing_step(self, *args, **kwargs):
    updates[0] += 1
    if updates[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return step(self, *args, **kwargs)
torch.optim.RMSprop.step = killing_step
sys.argv = ["stages.train", "shapes", "forward"]
runpy.run_module("stages.train", run_name="__main__")
"""


@pytest.mark.slow  # fresh Python processes: about 10 s
def test_kill_9_then_rerun_resumes_and_gives_the_same_model(colours, tmp_path):
    settings = {**TINY, "max_epochs": 4, "patience": 4}  # 8 updates per epoch
    whole, broken = project(tmp_path / "whole", colours, **settings), project(tmp_path / "broken", colours, **settings)
    finish(stage(whole, "forward"), whole)

    killed = stage(broken, "12", launcher=("-c", KILL_AT_STEP))  # in the middle of epoch 2
    assert killed.wait(timeout=600) == -signal.SIGKILL
    assert not (broken / "data/models/shapes/forward.pt").exists()
    out = finish(stage(broken, "forward"), broken)

    assert "after epoch 1\n" in out and "\nepoch 2: " in out and "\nepoch 1: " not in out
    for path in ("data/models/shapes/forward.pt", "metrics/train/shapes-forward.csv"):
        assert (broken / path).read_bytes() == (whole / path).read_bytes(), path


@pytest.mark.slow  # fresh Python processes: about 10 s
def test_two_gloo_processes_under_torchrun_match_one_process(colours, tmp_path):
    settings = {**TINY, "dropout": 0.0, "max_epochs": 3, "patience": 3}  # dropout differs between processes
    one, two = project(tmp_path / "one", colours, **settings), project(tmp_path / "two", colours, **settings)
    finish(stage(one, "forward"), one)
    finish(
        stage(
            two,
            "forward",
            launcher=(
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nproc_per_node",
                "2",
                "-m",
                "stages.train",
                "shapes",
            ),
        ),
        two,
    )
    model = Path("data/models/shapes/forward.pt")
    single, double = (torch.load(cwd / model, weights_only=True)["state_dict"] for cwd in (one, two))
    for name, weights in single.items():
        assert torch.allclose(double[name], weights, atol=1e-4), name
    curves = [pd.read_csv(cwd / "metrics/train/shapes-forward.csv") for cwd in (one, two)]
    assert np.allclose(curves[0].to_numpy(), curves[1].to_numpy(), rtol=1e-4)
