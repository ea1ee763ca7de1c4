"""The CI regression check: what counts as moved, and BiBS against the baselines."""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from fillblank.regression import TOLERANCE, bibs_behind, flatten, moved

METRICS = {
    "known": {
        "forward": {"0.25": {"CIDEr": 1.0, "BLEU-4": 0.3}, "0.5": {"CIDEr": 0.5, "BLEU-4": 0.2}},
        "fb_rerank": {"0.25": {"CIDEr": 1.1, "BLEU-4": 0.3}, "0.5": {"CIDEr": 0.6, "BLEU-4": 0.2}},
        "bibs": {"0.25": {"CIDEr": 1.2, "BLEU-4": 0.4}, "0.5": {"CIDEr": 0.7, "BLEU-4": 0.3}},
        "exact": {"0.25": {"CIDEr": 1.5, "BLEU-4": 0.5}, "0.5": {"CIDEr": 0.9, "BLEU-4": 0.4}},
    },
    "unknown": {
        "forward": {"0.5": {"CIDEr": 0.4, "length_error": 1.5}},
        "bibs_unknown": {"0.5": {"CIDEr": 0.45, "length_error": 0.5}},
    },
    "seconds_per_blank": {"known": {"forward": 0.01, "bibs": 0.03}},
}


def changed(edits: dict[str, float]) -> dict:
    """METRICS with each metric of `edits` ("known/bibs/0.5/CIDEr") set to its value."""
    metrics = copy.deepcopy(METRICS)
    for name, value in edits.items():
        *path, last = name.split("/")
        node = metrics
        for key in path:
            node = node[key]
        node[last] = value
    return metrics


def test_names_are_those_dvc_metrics_diff_shows():
    assert flatten(METRICS)["known.bibs.0.5.CIDEr"] == 0.7


def test_the_same_metrics_pass_and_timings_are_not_compared():
    assert moved(METRICS, copy.deepcopy(METRICS)) == []
    assert moved(METRICS, changed({"seconds_per_blank/known/bibs": 9.0})) == []
    assert bibs_behind(METRICS) == []


def test_a_change_within_the_tolerance_passes_and_beyond_it_fails():
    assert moved(METRICS, changed({"known/forward/0.5/BLEU-4": 0.2 + TOLERANCE / 2})) == []
    rows = moved(METRICS, changed({"known/forward/0.5/BLEU-4": 0.2 + 10 * TOLERANCE}))
    assert [(name, before) for name, before, _, _ in rows] == [("known.forward.0.5.BLEU-4", 0.2)]


def test_new_and_gone_metrics_count_as_moved():
    new = copy.deepcopy(METRICS)
    del new["unknown"]["forward"]["0.5"]["length_error"]
    new["known"]["bibs"]["0.5"]["METEOR"] = 0.2
    assert [(name, why) for name, *_, why in moved(METRICS, new)] == [
        ("known.bibs.0.5.METEOR", "new"),
        ("unknown.forward.0.5.length_error", "gone"),
    ]


def test_bibs_below_any_baseline_on_cider_at_any_ratio_fails():
    assert bibs_behind(changed({"known/bibs/0.5/CIDEr": 0.55})) == [("known.bibs.0.5.CIDEr", 0.6, 0.55, "below fb_rerank")]
    assert bibs_behind(changed({"unknown/bibs_unknown/0.5/CIDEr": 0.3})) == [
        ("unknown.bibs_unknown.0.5.CIDEr", 0.4, 0.3, "below forward")
    ]
    # Below the oracle is expected; below on another metric is not this rule's business.
    assert bibs_behind(changed({"known/bibs/0.5/BLEU-4": 0.1})) == []


def test_bibs_a_few_blanks_behind_on_cider_is_noise():
    assert bibs_behind(changed({"known/bibs/0.5/CIDEr": 0.6 * 0.9995})) == []
    assert bibs_behind(changed({"known/bibs/0.5/CIDEr": 0.6 * 0.998})) == [("known.bibs.0.5.CIDEr", 0.6, 0.6 * 0.998, "below fb_rerank")]


def regression(tmp_path: Path, *files: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "fillblank.regression", *files], cwd=tmp_path, env=env, capture_output=True, text=True)


def check(tmp_path: Path, committed: dict, new: dict) -> subprocess.CompletedProcess:
    (tmp_path / "committed.json").write_text(json.dumps(committed))
    (tmp_path / "new.json").write_text(json.dumps(new))
    return regression(tmp_path, "committed.json", "new.json")


def test_the_command_passes_on_equal_files(tmp_path):
    result = check(tmp_path, METRICS, METRICS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every metric within 1e-06" in result.stdout


def test_the_command_fails_with_a_table_of_what_moved(tmp_path):
    result = check(tmp_path, METRICS, changed({"known/bibs/0.5/CIDEr": 0.55, "known/forward/0.25/BLEU-4": 0.31}))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0] == "2 metrics moved beyond 1e-06 (committed.json -> new.json):"
    assert lines[1].split() == ["metric", "committed", "new"]
    assert lines[2].split() == ["known.bibs.0.5.CIDEr", "0.700000", "0.550000", "moved", "by", "-0.15"]
    assert lines[3].split() == ["known.forward.0.25.BLEU-4", "0.300000", "0.310000", "moved", "by", "+0.01"]
    assert lines[4] == "BiBS below a baseline on CIDEr in new.json:"
    assert lines[6].split() == ["known.bibs.0.5.CIDEr", "0.600000", "0.550000", "below", "fb_rerank"]


def test_a_missing_file_is_one_line(tmp_path):
    (tmp_path / "new.json").write_text("{}")
    result = regression(tmp_path, "nowhere.json", "new.json")
    assert (result.returncode, result.stderr) == (2, "error: nowhere.json: no such file\n")


@pytest.mark.parametrize("text", ["not json", "\xff"])
def test_a_file_that_is_not_metrics_is_one_line(tmp_path, text):
    (tmp_path / "bad.json").write_text(text, encoding="latin-1")
    result = regression(tmp_path, "bad.json", "bad.json")
    assert result.returncode == 2 and result.stderr.startswith("error: bad.json: not a metrics JSON file")
