"""experiments/run.py: a run beyond the default, in its own copy of the project."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO
from pycocoevalcap.cider.cider import Cider
from synthetic import write_dataset

from experiments.paired import DrawnCider, drawn_cider, draws, exact
from experiments.run import absolute_sources, copy_project, keep_results


def test_a_relative_source_folder_is_read_from_the_project_root_as_in_params_yaml():
    changes = {
        "datasets": ["flickr8k"],
        "sources": {"flickr8k": "../shared/data/flickr8k-dev", "coco": "/data/coco", "flickr30k": None},
    }
    assert absolute_sources(changes)["sources"] == {
        "flickr8k": str(REPO.parent / "shared/data/flickr8k-dev"),
        "coco": "/data/coco",
        "flickr30k": None,
    }
    assert absolute_sources({"fill": {"beam": 3}}) == {"fill": {"beam": 3}}


def test_copying_again_replaces_the_code_and_params_drops_deleted_files_and_keeps_what_the_last_run_made(tmp_path):
    copy = copy_project(tmp_path, {"fill": {"beam": 3}})
    assert (copy / ".git").is_dir() and (copy / "stages/fill.py").is_file() and not (copy / "metrics").exists()
    (copy / "data").mkdir()
    (copy / "data/made.txt").write_text("a stage's output")
    (copy / "dvc.lock").write_text("the copy's own lock")
    (copy / "stages/fill.py").write_text("edited since")
    (copy / "methods/deleted_since.py").write_text("a method the project had at the last copy")
    with (copy / ".copied").open("a") as copied:
        copied.write("methods/deleted_since.py\n")

    copy_project(tmp_path, {"fill": {"beam": 5}})
    assert (copy / "stages/fill.py").read_text() == (REPO / "stages/fill.py").read_text()
    assert not (copy / "methods/deleted_since.py").exists()
    assert yaml.safe_load((copy / "params.yaml").read_text())["fill"]["beam"] == 5
    assert (copy / "data/made.txt").read_text() == "a stage's output"
    assert (copy / "dvc.lock").read_text() == "the copy's own lock"


def test_a_variant_keeps_the_training_metrics_of_its_own_models_only(tmp_path):
    project, base, variant = tmp_path / "build", tmp_path / "flickr8k-dev", tmp_path / "flickr8k-dev-shared"
    for name, text in {
        "metrics/flickr8k.json": '{"bibs": 1.2}',
        "metrics/train/flickr8k-forward.json": '{"perplexity": 9.1}',
        "metrics/train/flickr8k-infiller.json": '{"perplexity": 4.0}',
        "reports/flickr8k/known.md": "| method |",
    }.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    keep_results(project, base, ["flickr8k"])
    assert (base / "metrics/train/flickr8k-infiller.json").is_file()

    (project / "metrics/train/flickr8k-infiller.json").write_text('{"perplexity": 3.5}')  # the variant's own infiller
    keep_results(project, variant, ["flickr8k"], base)
    assert sorted(path.name for path in (variant / "metrics").rglob("*.json")) == [
        "flickr8k-infiller.json",
        "flickr8k.json",
    ]
    assert (variant / "reports/flickr8k/known.md").is_file()


def test_a_paired_bootstrap_draws_whole_images_and_counts_an_image_drawn_twice_twice():
    fills = pd.DataFrame({"image_id": [1, 1, 2], "hit": [True, False, True]})
    assert exact(fills, np.array([1, 2])) == 2 / 3
    assert exact(fills, np.array([2, 2])) == 1.0
    assert exact(fills, np.array([1, 1])) == 0.5
    whole, *drawn = draws(np.array([1, 2, 3]), samples=5, seed=0)
    assert whole.tolist() == [1, 2, 3] and len(drawn) == 5
    assert all(len(d) == 3 and set(d.tolist()) <= {1, 2, 3} for d in drawn)


def test_cider_of_a_draw_is_pycocoevalcaps_on_the_drawn_set_with_each_copy_a_key_of_its_own():
    gts = {
        "a": ["a red square on the left", "a red box on the left"],
        "b": ["two blue circles", "blue circles above a square", "two circles"],
        "c": ["a green triangle", "one green triangle on top"],
    }
    res = {
        "a": ["a red square"],
        "b": ["two blue squares above a circle"],
        "c": ["a green triangle on top of a red box"],
    }
    scorer = DrawnCider(gts, res)
    for times in ([1, 1, 1], [2, 0, 1], [0, 3, 1], [1, 0, 0]):
        copies = [(copy, key) for key, count in zip(scorer.keys, times, strict=True) for copy in range(count)]
        expected, _ = Cider().compute_score({c: gts[c[1]] for c in copies}, {c: res[c[1]] for c in copies})
        assert scorer(np.array(times, dtype=float)) == pytest.approx(expected, rel=1e-12)


def test_a_drawn_image_brings_all_its_blanks_as_often_as_it_is_drawn():
    gts = {
        10: ["a red square", "a red box"],
        11: ["a red square", "a red box"],
        20: ["two blue circles"],
        30: ["a green triangle"],
    }
    res = {10: ["a red box"], 11: ["a blue square"], 20: ["two circles"], 30: ["a green square"]}
    score = drawn_cider(gts, res, {1: [10, 11], 2: [20], 3: [30]}, np.array([1, 2, 3]))
    copies = [(0, 10), (0, 11), (1, 10), (1, 11), (2, 30)]  # image 1 drawn twice, image 3 once
    expected, _ = Cider().compute_score({c: gts[c[1]] for c in copies}, {c: res[c[1]] for c in copies})
    assert score(np.array([3, 1, 1])) == pytest.approx(expected, rel=1e-12)


def test_against_holds_a_method_against_itself_in_another_run_of_the_same_blanks(tmp_path):
    write_dataset(tmp_path / "run")  # bibs fills every blank right, fb_rerank all but its last word
    write_dataset(tmp_path / "variant")
    shutil.copy(
        tmp_path / "run/data/fills/shapes/fb_rerank.parquet", tmp_path / "variant/data/fills/shapes/bibs.parquet"
    )
    paired = [sys.executable, str(REPO / "experiments/paired.py"), str(tmp_path / "run"), "shapes", "bibs", "bibs"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [*paired, "--against", str(tmp_path / "variant"), "--samples", "20"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "bibs - bibs of" in out and " +0.0000 " not in out.split("\n", 1)[1]  # right against all but one word right
    same = subprocess.run([*paired, "--samples", "20"], env=env, capture_output=True, text=True, check=True).stdout
    assert all(" +0.0000 [+0.0000, +0.0000]" in line for line in same.splitlines()[1:] if line)
