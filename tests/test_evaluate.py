"""Scoring fills: the pycocoevalcap wrapper on tiny inputs, the tables, and fills that do not fit.

The stage itself is in test_evaluate_stage.py: each file starts Java once.
"""

import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from synthetic import write_dataset

from fillblank.errors import UserError
from fillblank.evaluate import (
    BLANK_COLUMNS,
    CAPTION_COLUMNS,
    FILL_COLUMNS,
    check_fills,
    evaluate,
    read_fills,
    read_results,
    read_table,
    score,
)
from fillblank.evaluate import (
    SETTINGS as BOTH,
)
from fillblank.report import tables

REFS = {1: ["A red circle on the left."], 2: ["a blue square at the top", "one blue square at the top"]}


@pytest.fixture(scope="module")
def tiny_scores() -> dict:
    """One call, so Java starts once: a perfect run and a half-right one, each hypothesis as
    long as its closest reference, so that BLEU's brevity penalty stays out of the way."""
    return score(
        REFS,
        {
            "same": {1: "a red circle on the left", 2: "a blue square at the top"},
            "half": {1: "a red square on the right", 2: "a green triangle at the bottom"},
        },
    )


def test_a_perfect_run_scores_one_on_bleu_and_rouge(tiny_scores):
    same = tiny_scores["same"]
    for name in ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L"):
        assert same[name] == pytest.approx(1.0, abs=1e-6), name
    assert same["METEOR"] > 0.9


def test_a_half_right_run_scores_what_hand_counting_gives(tiny_scores):
    half = tiny_scores["half"]
    # Unigrams: "a red on the" of the first, "a at the" of the second: 7 of 12.
    assert half["BLEU-1"] == pytest.approx(7 / 12, rel=1e-6)
    # Bigrams: "a red", "on the" and "at the": 3 of 10; BLEU-2 is the geometric mean.
    assert half["BLEU-2"] == pytest.approx(math.sqrt(7 / 12 * 3 / 10), rel=1e-6)
    # Longest common subsequences with the best reference: 4 of 6 words, then 3 of 6.
    assert half["ROUGE-L"] == pytest.approx((4 / 6 + 3 / 6) / 2, rel=1e-6)
    for name in ("METEOR", "CIDEr"):
        assert 0 < half[name] < tiny_scores["same"][name], name


def test_without_java_the_user_is_told_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError, match="apt-get install default-jre-headless"):
        score(REFS, {"run": {1: "a red circle"}})


def test_a_hypothesis_without_references_is_a_bug_in_the_caller():
    with pytest.raises(ValueError, match="no references"):
        score(REFS, {"run": {3: "a red circle"}})


def test_the_table_reads_like_the_papers():
    metrics = {
        "known": {
            "forward": {"0.25": {"CIDEr": 0.5}, "0.5": {"CIDEr": 0.25}},
            "fb_rerank": {"0.25": {"CIDEr": 0.8}, "0.5": {"CIDEr": 0.2}},
            "bibs": {"0.25": {"CIDEr": 1.0}, "0.5": {"CIDEr": 0.2}},
            "exact": {"0.25": {"CIDEr": 1.5}, "0.5": {"CIDEr": 0.3}},
        }
    }
    assert tables(metrics, "t").split("### CIDEr\n\n")[1] == (
        "| method | 0.25 | 0.5 |\n"
        "|:--|--:|--:|\n"
        "| forward | 0.500 | **0.250** |\n"
        "| fb_rerank | 0.800 | 0.200 |\n"
        "| bibs | **1.000** | 0.200 |\n"
        "| exact | 1.500 | 0.300 |\n"  # the oracle, never bold
        "| bibs vs best baseline | +25.0% | -20.0% |\n"
    )


def test_lower_is_better_where_it_should_be():
    metrics = {
        "unknown": {
            "forward": {"0.5": {"length_error": 2.0}},
            "fb_max": {"0.5": {"length_error": 1.0}},
            "bibs_unknown": {"0.5": {"length_error": 0.5}},
        }
    }
    text = tables(metrics, "t")
    assert "| fb_max | 1.000 |" in text and "| bibs_unknown | **0.500** |" in text
    assert "| bibs_unknown vs best baseline | +50.0% |" in text


@pytest.fixture
def fitting(tmp_path) -> tuple:
    write_dataset(tmp_path)
    blanks = read_table(tmp_path / "data/blanks/shapes.parquet", BLANK_COLUMNS)
    fills = read_table(tmp_path / "data/fills/shapes/bibs.parquet", FILL_COLUMNS)
    check_fills(fills, blanks, Path("bibs.parquet"), BOTH)  # as written, they fit
    return fills, blanks


def test_a_missing_row_stops_with_one_line(fitting):
    fills, blanks = fitting
    with pytest.raises(
        UserError,
        match=r"^bibs.parquet: the known-length fills cover 11 of 12 blanks \(blank 3 missing\); "
        r"were these fills made from another blank set\?",
    ):
        check_fills(fills.drop(index=3), blanks, Path("bibs.parquet"), BOTH)


def test_fills_of_another_blank_set_stop_with_one_line(fitting):
    fills, blanks = fitting
    fewer = blanks[blanks["ratio"] == 0.25]
    with pytest.raises(
        UserError, match="known-length fills for blanks 1, 3, 5 and 3 more, which are not in the blank set"
    ):
        check_fills(fills, fewer, Path("bibs.parquet"), BOTH)
    other = fills.copy()
    other.loc[0, "sentence"] = "a red circle is right of a blue square"
    with pytest.raises(
        UserError, match=r"blank 0 \(known length\): sentence 'a red circle is right of a blue square' is not"
    ):
        check_fills(other, blanks, Path("bibs.parquet"), BOTH)


def test_a_known_length_fill_of_another_length_stops(fitting):
    fills, blanks = fitting
    fills.at[0, "fill"] = fills.at[0, "fill"] + ["too"]
    fills.at[0, "length"] += 1
    fills.at[0, "sentence"] = " ".join([*blanks.at[0, "left"], *fills.at[0, "fill"], *blanks.at[0, "right"]])
    with pytest.raises(UserError, match="has length 3, the blank 2 words"):
        check_fills(fills, blanks, Path("bibs.parquet"), BOTH)


def test_fills_missing_a_setting_or_with_a_score_not_finite_stop_with_one_line(fitting):
    fills, blanks = fitting
    known = fills[fills["setting"] == "known"]
    with pytest.raises(UserError, match="^bibs.parquet: no fills with the length unknown, which the method runs in"):
        check_fills(known, blanks, Path("bibs.parquet"), BOTH)  # a stale file would drop the method from a table
    with pytest.raises(UserError, match="no fills with the length known or unknown"):
        check_fills(fills.iloc[:0], blanks, Path("bibs.parquet"), BOTH)
    check_fills(known, blanks, Path("exact.parquet"), ("known",))  # a method of one setting
    fills.loc[4, "score"] = float("nan")
    with pytest.raises(UserError, match=r"blank 4 \(known length\) has score nan, not a finite number"):
        check_fills(fills, blanks, Path("bibs.parquet"), BOTH)


def test_a_caption_as_one_string_is_refused_not_read_letter_by_letter(tmp_path):
    path = tmp_path / "captions.parquet"
    pq.write_table(pa.table({"image_id": [1], "filename": ["1.jpg"], "raw": ["A dog."], "tokens": ["a dog"]}), path)
    with pytest.raises(UserError, match="column tokens holds string, not lists of words"):
        read_table(path, CAPTION_COLUMNS)
    pq.write_table(
        pa.table(
            {"image_id": [1, 2], "filename": ["1.jpg", "2.jpg"], "raw": ["A dog.", ""], "tokens": [["a", "dog"], None]}
        ),
        path,
    )
    with pytest.raises(UserError, match="column tokens: row 1 is null, not a list of words"):
        read_table(path, CAPTION_COLUMNS)


def test_a_blank_set_of_one_image_is_refused_before_scoring(tmp_path):
    write_dataset(tmp_path)
    fills, blanks, captions = read_results(tmp_path, "shapes", ["bibs"])
    one = blanks[blanks["image_id"] == blanks["image_id"].iloc[0]]
    with pytest.raises(UserError, match="the blank set holds the captions of one image: CIDEr"):
        evaluate(fills[fills["blank_id"].isin(one["blank_id"])], one, captions)


def test_only_the_methods_named_are_read(tmp_path):
    write_dataset(tmp_path)
    (tmp_path / "data/fills/shapes/stale.parquet").write_bytes(b"left by a method no longer run")
    blanks = read_table(tmp_path / "data/blanks/shapes.parquet", BLANK_COLUMNS)
    fills = read_fills(tmp_path / "data/fills/shapes", ["bibs", "forward"], blanks)
    assert list(dict.fromkeys(fills["method"])) == ["bibs", "forward"]
    with pytest.raises(UserError, match=r"^\S+/data/fills/shapes/beam.parquet: no such file$"):
        read_fills(tmp_path / "data/fills/shapes", ["beam"], blanks)
