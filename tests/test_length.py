"""The length rule: fills of different lengths rank by score + bonus x words, one bonus per
scoring scale, each tuned on val by the CIDEr of its own candidates."""

import json
import sys

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from toy_models import fill_params, one_thread, random_captioner, random_models  # noqa: F401

from fillblank import tuning
from fillblank.checkpoint import save_checkpoint
from fillblank.data.text import Vocab
from fillblank.decode import fill, length, registry
from fillblank.decode.step import Blanks
from fillblank.errors import UserError
from stages import length as length_stage

RULED = ["forward", "backward", "fb_max", "fb_rerank", "bibs", "bibs_unknown", "infill", "infill_rerank"]

CAPTIONS = [
    ["a", "red", "circle", "above", "a", "blue", "square"],
    ["two", "green", "stars"],
    ["a", "small", "yellow", "diamond"],
    ["one", "big", "purple", "triangle"],
]
VOCAB = Vocab.build(CAPTIONS, min_count=1)
# Each caption blanked at its second and third words, at ratio 0.5.
VAL = pa.table(
    {
        "left": [c[:1] for c in CAPTIONS],
        "blank": [c[1:3] for c in CAPTIONS],
        "right": [c[3:] for c in CAPTIONS],
        "ratio": [0.5] * 4,
    }
)


def test_the_tuned_bonus_picks_the_fills_of_most_cider_not_the_nearest_lengths():
    candidates = [[(VOCAB.ids(c[1:3]), -5.0)] for c in CAPTIONS]  # the removed words, 2.5 nats each ...
    candidates[0].append(
        (VOCAB.ids(["circle"]), -1.9)
    )  # ... but in the first blank one word scores higher, by 3.1 nats
    # ... and two of that image's three describers wrote "a circle above a blue square"
    refs = [[" ".join(c)] for c in CAPTIONS]
    refs[0] += ["a circle above a blue square"] * 2
    tuned = tuning.tune({"captioners": [candidates]}, VOCAB, VAL, refs)["captioners"]
    errors = {float(bonus): found["length_error"] for bonus, found in tuned["grid"].items()}
    assert errors == {bonus: 0.25 if bonus <= 3.0 else 0.0 for bonus in tuning.GRID}  # above 3.1: the true lengths
    assert tuned["length_bonus"] == 0.0 and tuned["grid"]["0"]["CIDEr"] > tuned["grid"]["3.25"]["CIDEr"]
    assert tuned["CIDEr"] == {"0.5": tuned["grid"]["0"]["CIDEr"], "mean": tuned["grid"]["0"]["CIDEr"]}
    assert tuned["length_error"] == {"0.5": 0.25, "mean": 0.25}


def test_bonuses_the_blanks_cannot_tell_apart_are_settled_towards_no_bonus():
    # Each blank's one removed word scores -1, both -2: above a bonus of 1, both are chosen.
    candidates = [[(VOCAB.ids(c[1:2]), -1.0), (VOCAB.ids(c[1:3]), -2.0)] for c in CAPTIONS]
    # The first image's describers all wrote both words; two of each other image's three, one.
    refs = [
        [" ".join(c)] * 3 if n == 0 else [" ".join(c[:2] + c[3:])] * 2 + [" ".join(c)] for n, c in enumerate(CAPTIONS)
    ]
    tuned = tuning.tune({"captioners": [candidates]}, VOCAB, VAL, refs)["captioners"]
    grid = tuned["grid"]
    assert tuned["best_bonus"] == 1.25  # the first blank gains more than the others lose ...
    assert grid["1.25"]["CIDEr"] - grid["0"]["CIDEr"] < grid["0"]["standard_error"]  # ... but four blanks cannot tell
    assert tuned["length_bonus"] == 0.0 and tuned["CIDEr"]["mean"] == grid["0"]["CIDEr"]
    every = [[" ".join(c)] * 3 for c in CAPTIONS]  # every describer wrote both words: the best bonus, clearly
    assert tuning.tune({"captioners": [candidates]}, VOCAB, VAL, every)["captioners"]["length_bonus"] == 1.25


def test_the_record_shows_what_one_bonus_gives_up_at_each_ratio_and_in_each_reading():
    # Each blank may be filled with its first removed word (-1) or both (-2); the first two
    # blanks are at ratio 0.25 and their describers wrote one word, the last two at 0.75 and
    # theirs wrote both: no bonus is best at 0.25, a bonus above 1 at 0.75.
    short, long = [CAPTIONS[0][:2] + CAPTIONS[0][3:], CAPTIONS[1][:2]], CAPTIONS[2:]
    refs = [[" ".join(c)] * 3 for c in short + long]
    candidates = [[(VOCAB.ids(c[1:2]), -1.0), (VOCAB.ids(c[1:3]), -2.0)] for c in CAPTIONS]
    val = VAL.set_column(3, "ratio", pa.array([0.25, 0.25, 0.75, 0.75]))
    no_fill = [[(VOCAB.ids(c[1:2]), -1.0)] for c in CAPTIONS]  # a second reading that never fills two words
    grid = tuning.tune({"captioner": [candidates, no_fill]}, VOCAB, val, refs)["captioner"]["grid"]
    first, second = grid["0"]["CIDEr_by_reading"]
    assert first == second  # no bonus: one word in both readings
    first, second = grid["1.25"]["CIDEr_by_reading"]
    assert first["0.75"] > second["0.75"] == grid["0"]["CIDEr_by_ratio"]["0.75"]  # only the first takes both words
    assert first["0.25"] < grid["0"]["CIDEr_by_ratio"]["0.25"]  # ... and loses where the describers wrote one
    both = grid["1.25"]["CIDEr_by_ratio"]
    assert both["0.75"] == pytest.approx((first["0.75"] + second["0.75"]) / 2)
    assert both["mean"] == pytest.approx((both["0.25"] + both["0.75"]) / 2) == grid["1.25"]["CIDEr"]


def toy_scale(word_cost: float):
    """A scale whose score takes `word_cost` nats for the second removed word: the first word
    alone scores -1, both -1 - word_cost. The describers wrote both, so its best bonus is the
    least of the grid above `word_cost`."""

    def candidates(models, blanks, p):
        found = []
        for left in blanks.left:
            caption = next(c for c in CAPTIONS if VOCAB.ids(c[:1]) == left)
            found.append([(VOCAB.ids(caption[1:2]), -1.0), (VOCAB.ids(caption[1:3]), -1.0 - word_cost)])
        return [found]

    return candidates


def test_two_scales_with_different_best_bonuses_give_each_method_its_own(monkeypatch, tmp_path):
    for name, cost in (("cheap", 0.6), ("dear", 3.0)):
        monkeypatch.setitem(registry.SCALES, name, registry.Scale(name, toy_scale(cost), name, False))
        method = f"pick_{name}"

        def pick(models, blanks, length_, p, name=name):
            return length.choose(registry.SCALES[name].candidates(models, blanks, p)[0], p.length_bonus)

        monkeypatch.setitem(
            registry.REGISTRY, method, registry.Entry(method, pick, ("unknown",), method, "baseline", name, None)
        )
    monkeypatch.setattr(length, "scales", lambda: {name: registry.SCALES[name] for name in ("cheap", "dear")})
    blanks = Blanks.of_words(torch.zeros(4, 3), VAL["left"].to_pylist(), VAL["right"].to_pylist(), VOCAB)
    readings = {name: registry.SCALES[name].candidates(None, blanks, fill_params()) for name in ("cheap", "dear")}
    tuned = tuning.tune(readings, VOCAB, VAL, [[" ".join(c)] * 3 for c in CAPTIONS])
    assert {name: found["length_bonus"] for name, found in tuned.items()} == {"cheap": 0.75, "dear": 3.25}
    (tmp_path / "length.json").write_text(json.dumps({"scales": tuned}))

    models = random_models(len(VOCAB), seed=0)  # the toy scales read none; `fill` scores the fills with the captioners
    p = fill_params(length_bonus="tuned")
    for method in ("pick_cheap", "pick_dear"):
        mine = length.for_method(p, registry.REGISTRY[method], tmp_path / "length.json")
        assert {len(filled.tokens) for filled in fill(method, models, blanks, None, mine)} == {
            2
        }  # both words, as described
    shared = fill_params(length_bonus=0.75)  # one bonus for both, the cheap scale's: the dear one fills one word
    assert {len(filled.tokens) for filled in fill("pick_dear", models, blanks, None, shared)} == {1}


def test_a_mapping_fixes_some_scales_and_leaves_the_rest_tuned(tmp_path):
    tuned = {"scales": {name: {"length_bonus": 2.0} for name in registry.scales()}}
    (tmp_path / "length.json").write_text(json.dumps(tuned))
    bonuses = length.bonuses(fill_params(length_bonus={"captioners": 1.5}), tmp_path / "length.json")
    assert bonuses == {"captioner": 2.0, "captioners": 1.5, "infiller": 2.0, "captioners_infiller": 2.0}
    assert set(length.bonuses(fill_params(length_bonus=0.5), tmp_path / "nowhere.json").values()) == {0.5}
    with pytest.raises(UserError, match="nowhere.json: no such file; fill.length_bonus is tuned"):
        length.bonuses(fill_params(length_bonus={"captioners": 1.5}), tmp_path / "nowhere.json")


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


def test_the_stage_tunes_every_scale_on_val_captions_of_images_with_features_only(tmp_path, params_file, monkeypatch):
    params_file({"beam: 7": "beam: 2", "max_length: 10": "max_length: 4"})
    captions = [["a", "red", "circle", "above", "a", "blue", "square"], ["two", "green", "stars"]]
    captions += [["a", "small", "yellow", "diamond"], ["a", "red", "star"]]
    vocab = Vocab.build(captions, min_count=1)
    (tmp_path / "prepared").mkdir()
    vocab.save(tmp_path / "prepared" / "vocab.json")
    table = {"image_id": [1, 2, 3, 4], "split": ["val", "val", "test", "val"], "sentence_id": [0, 1, 2, 3]}
    pq.write_table(pa.table(table | {"tokens": captions}), tmp_path / "prepared" / "captions.parquet")
    models = random_models(len(vocab), seed=3, features=5)
    for name in ("forward", "backward", "infiller"):
        save_checkpoint(tmp_path / "models" / f"{name}.pt", getattr(models, name), {"direction": name}, vocab)
    with h5py.File(tmp_path / "features.h5", "w") as file:
        file["image_ids"] = np.array([1, 2], dtype=np.int64)  # the test image is not read; val image 4 was unreadable
        file["features"] = np.random.default_rng(0).normal(size=(2, 5)).astype(np.float32)
    monkeypatch.chdir(tmp_path)
    options = ["--models", "models", "--prepared", "prepared", "--features", "features.h5", "--out", "length.json"]
    monkeypatch.setattr(sys, "argv", ["length", "shapes", *options])
    length_stage.main()

    tuned = json.loads((tmp_path / "length.json").read_text())
    assert tuned["blanks"] == 2 * 3  # the two val captions with features, at three ratios
    assert set(tuned["models"]) == {"forward", "backward", "infiller"}
    assert list(tuned["scales"]) == list(registry.scales())
    for found in tuned["scales"].values():
        best = max(grid["CIDEr"] for grid in found["grid"].values())
        assert float(found["length_bonus"]) in tuning.GRID and found["CIDEr"]["mean"] == best
        assert set(found["CIDEr"]) == set(found["length_error"]) == {"0.25", "0.5", "0.75", "mean"}
    bonuses = length.bonuses(fill_params(length_bonus="tuned"), tmp_path / "length.json")
    assert bonuses == {name: found["length_bonus"] for name, found in tuned["scales"].items()}
