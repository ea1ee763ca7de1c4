"""Blank sets: a centred run of round(ratio * n) words, a word kept on each side."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_stage

from fillblank import params
from fillblank.blanks import SCHEMA, cut, table
from fillblank.errors import UserError


def test_a_blank_is_a_centred_run_of_words():
    words = ["a", "red", "circle", "is", "left", "of", "a", "blue", "square"]  # 9 words
    assert cut(words, 0.25) == (["a", "red", "circle"], ["is", "left"], ["of", "a", "blue", "square"])
    assert cut(words, 0.5) == (["a", "red"], ["circle", "is", "left", "of", "a"], ["blue", "square"])
    assert cut(words, 0.75) == (["a"], ["red", "circle", "is", "left", "of", "a", "blue"], ["square"])


@pytest.mark.parametrize(
    "caption, ratio, blank",
    [
        ("one two three four", 0.5, "two three"),
        ("one two three four five", 0.5, "two three four"),  # 2.5 rounds up to 3 (Python's round gives 2)
        ("one two three four five", 0.1, "three"),  # the odd word out stays on the right
        ("one two three", 0.75, "two"),  # 2.25 -> 2, but a word stays on each side
        ("one two three", 0.1, "two"),  # 0.3 -> 0, but at least one word goes
        ("one two", 0.75, "one"),  # too short for a word on each side: one on the right
        ("one", 0.5, "one"),
    ],
)
def test_blank_lengths_at_the_edges(caption, ratio, blank):
    words = caption.split()
    left, cut_words, right = cut(words, ratio)
    assert " ".join(cut_words) == blank
    assert left + cut_words + right == words


def test_a_half_rounds_up_when_floats_fall_just_below_it():
    assert len(cut([f"w{i}" for i in range(25)], 0.58)[1]) == 15  # 0.58 * 25 = 14.5; in floats 14.499999999999998
    assert len(cut([f"w{i}" for i in range(50)], 0.29)[1]) == 15  # 14.5, as written


def test_the_blank_set_has_a_row_per_test_caption_and_ratio():
    captions = pa.table(
        {
            "image_id": [7, 7, 3, 9],
            "split": ["test", "test", "train", "test"],
            "sentence_id": [71, 70, 30, 90],
            "tokens": [["a", "big", "red", "ball"], ["a", "ball"], ["not", "used"], ["two", "blue", "squares"]],
        }
    )
    blanks = table(captions, [0.25, 0.75])
    assert blanks.schema == SCHEMA
    rows = blanks.to_pylist()
    assert [(r["blank_id"], r["sentence_id"], r["ratio"]) for r in rows] == [
        (0, 70, 0.25),
        (1, 70, 0.75),
        (2, 71, 0.25),
        (3, 71, 0.75),
        (4, 90, 0.25),
        (5, 90, 0.75),
    ]
    assert rows[3] == {
        "blank_id": 3,
        "image_id": 7,
        "sentence_id": 71,
        "ratio": 0.75,
        "left": ["a"],
        "blank": ["big", "red"],
        "right": ["ball"],
    }
    first_image = table(captions, [0.25, 0.75], images=1).to_pylist()  # a quick run: image 7's captions only
    assert [(r["blank_id"], r["sentence_id"]) for r in first_image] == [(0, 70), (1, 70), (2, 71), (3, 71)]


def test_an_empty_test_caption_is_named():
    captions = pa.table(
        {"image_id": [5], "split": ["test"], "sentence_id": [12], "tokens": pa.array([[]], pa.list_(pa.string()))}
    )
    with pytest.raises(UserError, match="test caption 12 \\(image 5\\) has no words"):
        table(captions, [0.5])


@pytest.mark.parametrize("ratios", ["[0.5, 1.0]", "[0]", "[]", "[0.25, 0.25]", "[0.1234561, 0.1234564]"])
def test_ratios_outside_zero_one_or_named_twice_stop_before_any_work(params_file, ratios):
    with pytest.raises(UserError, match="blanks.ratios"):
        params.load(params_file({"ratios: [0.25, 0.5, 0.75]": f"ratios: {ratios}"}))


def test_a_quick_run_of_one_test_image_is_refused_for_cider(params_file):
    with pytest.raises(UserError, match="blanks.test_images"):
        params.load(params_file({"test_images: null": "test_images: 1"}))


def test_the_stage_writes_the_blank_set_without_the_skipped_images(tmp_path, params_file):
    params_file({"ratios: [0.25, 0.5, 0.75]": "ratios: [0.5]"})
    captions = pa.table(
        {
            "image_id": [1, 2, 3],
            "filename": ["1.png", "2.png", "3.png"],
            "split": ["test", "val", "test"],
            "sentence_id": [10, 20, 30],
            "raw": ["A red ball.", "x", "A broken file."],
            "tokens": [["a", "red", "ball"], ["x"], ["a", "broken", "file"]],
        }
    )
    pq.write_table(captions, tmp_path / "captions.parquet")
    skipped = {"images": 3, "skipped": [{"image_id": 3, "filename": "3.png", "reason": "OSError: truncated"}]}
    (tmp_path / "skipped.json").write_text(json.dumps(skipped))
    files = ["--captions", "captions.parquet", "--skipped", "skipped.json"]
    result = run_stage("blanks", "shapes", *files, "--out", "out/blanks.parquet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("1 test captions of skipped images left out")
    assert pq.read_table(tmp_path / "out/blanks.parquet").to_pylist() == [
        {
            "blank_id": 0,
            "image_id": 1,
            "sentence_id": 10,
            "ratio": 0.5,
            "left": ["a"],
            "blank": ["red"],
            "right": ["ball"],
        }
    ]
    missing = run_stage("blanks", "shapes", "--captions", "nowhere.parquet", "--skipped", "skipped.json", cwd=tmp_path)
    assert (missing.returncode, missing.stderr) == (
        2,
        "error: nowhere.parquet: no such file (run the prepare stage first)\n",
    )
