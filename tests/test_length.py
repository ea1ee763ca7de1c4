"""The length rule: fills of different lengths rank by S(Y) + bonus x words, the bonus tuned on val."""

import json
import sys

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from fillblank.data.text import Vocab
from fillblank.decode import fill, length
from fillblank.decode.step import Blanks
from fillblank.model import save_checkpoint
from stages import length as length_stage
from toy_models import fill_params, one_thread, random_captioner, random_models  # noqa: F401

RULED = ["forward", "backward", "fb_max", "fb_rerank", "bibs", "bibs_unknown"]  # the methods that rank lengths by it


def test_the_tuned_bonus_picks_the_true_lengths_where_none_picks_one_word():
    true = torch.tensor([2, 5, 3, 7])
    t = torch.arange(1, 11)
    scores = -3.0 * t - 0.1 * (t - true[:, None]) ** 2  # each word costs about 3 nats: S(Y) alone prefers one
    tuned = length.tune(scores, true)
    assert tuned["errors"][0.0] == pytest.approx(true.float().mean() - 1)
    assert tuned["length_error"] == 0.0 and tuned["blanks"] == 4
    assert torch.equal((scores + tuned["length_bonus"] * t).argmax(1) + 1, true)


@pytest.mark.parametrize("method", RULED)
def test_the_bonus_steers_every_method_s_length(method):
    models = random_models(vocab=8, seed=5)
    blanks = Blanks(torch.randn(4, 3, generator=torch.Generator().manual_seed(2)), [[4, 5], [], [6], [7, 4]], [[7], [4, 5], [], [6]])
    lengths = {bonus: {len(r.tokens) for r in fill(method, models, blanks, None, fill_params(beam=2, max_length=4, length_bonus=bonus))}
               for bonus in (-100.0, 100.0)}
    assert lengths == {-100.0: {1}, 100.0: {4}}


def test_the_stage_tunes_on_val_captions_of_images_with_features_only(tmp_path, params_file, monkeypatch):
    params_file({"beam: 7": "beam: 2", "max_length: 10": "max_length: 4"})
    captions = [["a", "red", "circle", "above", "a", "blue", "square"], ["two", "green", "stars"], ["a", "small", "yellow", "diamond"],
                ["a", "red", "star"]]
    vocab = Vocab.build(captions, min_count=1)
    (tmp_path / "prepared").mkdir()
    vocab.save(tmp_path / "prepared" / "vocab.json")
    table = {"image_id": [1, 2, 3, 4], "split": ["val", "val", "test", "val"], "sentence_id": [0, 1, 2, 3], "tokens": captions}
    pq.write_table(pa.table(table), tmp_path / "prepared" / "captions.parquet")
    for seed, direction in enumerate(("forward", "backward")):
        save_checkpoint(tmp_path / "models" / f"{direction}.pt", random_captioner(len(vocab), seed, feature_dim=5), {"direction": direction}, vocab)
    with h5py.File(tmp_path / "features.h5", "w") as file:
        file["image_ids"] = np.array([1, 2], dtype=np.int64)  # the test image is not read; val image 4 was skipped, unreadable
        file["features"] = np.random.default_rng(0).normal(size=(2, 5)).astype(np.float32)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["length", "shapes", "--models", "models", "--prepared", "prepared", "--features", "features.h5", "--out", "length.json"])
    length_stage.main()

    tuned = json.loads((tmp_path / "length.json").read_text())
    assert tuned["blanks"] == 2 * 3  # the two val captions with features, at three ratios
    assert tuned["length_bonus"] in length.GRID and tuned["length_error"] == min(tuned["errors"].values())
    p = length.resolved(fill_params(length_bonus="tuned"), tmp_path / "length.json")
    assert p.length_bonus == tuned["length_bonus"]
