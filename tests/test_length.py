"""The length rule: fills of different lengths rank by S(Y) + bonus x words, the bonus tuned on val."""

import json
import sys

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from toy_models import fill_params, one_thread, random_captioner, random_models  # noqa: F401

from fillblank.data.text import Vocab
from fillblank.decode import fill, length
from fillblank.decode.step import Blanks
from fillblank.model import save_checkpoint
from stages import length as length_stage

RULED = [
    "forward",
    "backward",
    "fb_max",
    "fb_rerank",
    "bibs",
    "bibs_unknown",
    "infill",
    "infill_rerank",
]  # the methods that rank lengths by it


def test_the_tuned_bonus_picks_the_fills_of_most_cider_not_the_nearest_lengths():
    captions = [
        ["a", "red", "circle", "above", "a", "blue", "square"],
        ["two", "green", "stars"],
        ["a", "small", "yellow", "diamond"],
        ["one", "big", "purple", "triangle"],
    ]
    vocab = Vocab.build(captions, min_count=1)
    val = pa.table(
        {
            "left": [c[:1] for c in captions],
            "blank": [c[1:3] for c in captions],
            "right": [c[3:] for c in captions],
            "ratio": [0.5] * 4,
        }
    )
    seen = [{tuple(vocab.ids(c[1:3])): -5.0} for c in captions]  # the removed words, 2.5 nats each ...
    seen[0][tuple(vocab.ids(["circle"]))] = -1.9  # ... but in the first blank one word scores higher, by 3.1 nats
    # ... and two of that image's three describers wrote "a circle above a blue square"
    refs = [[" ".join(c)] for c in captions]
    refs[0] += ["a circle above a blue square"] * 2
    tuned = length.tune(seen, vocab, val, refs)
    assert tuned["errors"] == {
        bonus: 0.25 if bonus <= 3.0 else 0.0 for bonus in length.GRID
    }  # above 3.1: the true lengths
    assert (
        tuned["length_bonus"] == 0.0 and tuned["cider"][0.0] > tuned["cider"][3.25]
    )  # but one word matches more describers
    assert tuned["blanks"] == 4 and tuned["CIDEr"] == tuned["cider"][0.0]


@pytest.mark.parametrize("method", RULED)
def test_the_bonus_steers_every_method_s_length(method):
    models = random_models(vocab=8, seed=5)
    blanks = Blanks(
        torch.randn(4, 3, generator=torch.Generator().manual_seed(2)), [[4, 5], [], [6], [7, 4]], [[7], [4, 5], [], [6]]
    )
    lengths = {
        bonus: {
            len(r.tokens)
            for r in fill(method, models, blanks, None, fill_params(beam=2, max_length=4, length_bonus=bonus))
        }
        for bonus in (-100.0, 100.0)
    }
    assert lengths == {-100.0: {1}, 100.0: {4}}


def test_the_stage_tunes_on_val_captions_of_images_with_features_only(tmp_path, params_file, monkeypatch):
    params_file({"beam: 7": "beam: 2", "max_length: 10": "max_length: 4"})
    captions = [
        ["a", "red", "circle", "above", "a", "blue", "square"],
        ["two", "green", "stars"],
        ["a", "small", "yellow", "diamond"],
        ["a", "red", "star"],
    ]
    vocab = Vocab.build(captions, min_count=1)
    (tmp_path / "prepared").mkdir()
    vocab.save(tmp_path / "prepared" / "vocab.json")
    table = {
        "image_id": [1, 2, 3, 4],
        "split": ["val", "val", "test", "val"],
        "sentence_id": [0, 1, 2, 3],
        "tokens": captions,
    }
    pq.write_table(pa.table(table), tmp_path / "prepared" / "captions.parquet")
    for seed, direction in enumerate(("forward", "backward")):
        save_checkpoint(
            tmp_path / "models" / f"{direction}.pt",
            random_captioner(len(vocab), seed, feature_dim=5),
            {"direction": direction},
            vocab,
        )
    with h5py.File(tmp_path / "features.h5", "w") as file:
        file["image_ids"] = np.array(
            [1, 2], dtype=np.int64
        )  # the test image is not read; val image 4 was skipped, unreadable
        file["features"] = np.random.default_rng(0).normal(size=(2, 5)).astype(np.float32)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "length",
            "shapes",
            "--models",
            "models",
            "--prepared",
            "prepared",
            "--features",
            "features.h5",
            "--out",
            "length.json",
        ],
    )
    length_stage.main()

    tuned = json.loads((tmp_path / "length.json").read_text())
    assert tuned["blanks"] == 2 * 3  # the two val captions with features, at three ratios
    assert float(tuned["length_bonus"]) in length.GRID and tuned["CIDEr"] == max(tuned["cider"].values())
    p = length.resolved(fill_params(length_bonus="tuned"), tmp_path / "length.json")
    assert p.length_bonus == tuned["length_bonus"]
