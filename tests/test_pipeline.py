"""The DVC pipeline itself, on a small `shapes`, in a fresh copy of the repository."""

from pathlib import Path

import pytest

from conftest import clone, sh

# A small `shapes`: the whole pipeline in a few minutes.
SMALL = {"sources": {"shapes": {"train": 100, "val": 20, "test": 20}}}


@pytest.fixture
def small(tmp_path: Path) -> Path:
    return clone(tmp_path, SMALL)


def test_repro_builds_prepared_data_then_is_a_clean_no_op(small):
    sh("dvc", "repro", "prepare", cwd=small)
    assert (small / "data/raw/shapes/images/shapes.zip").exists()
    assert (small / "data/raw/shapes/SHA256SUMS").read_text().count("\n") == 2
    assert (small / "data/prepared/shapes/vocab.json").exists()
    assert (small / "data/prepared/shapes/captions.parquet").exists()

    again = sh("dvc", "repro", "prepare", cwd=small)
    assert "didn't change, skipping" in again and "Running stage" not in again
    assert "up to date" in sh("dvc", "status", "prepare", cwd=small)


def test_changing_a_param_reruns_only_the_stages_that_use_it(small):
    sh("dvc", "repro", "prepare", cwd=small)
    params = (small / "params.yaml").read_text().replace("min_count: 5", "min_count: 3")
    (small / "params.yaml").write_text(params)
    out = sh("dvc", "repro", "prepare", cwd=small)
    assert "Running stage 'prepare@shapes'" in out
    assert "Running stage 'download@shapes'" not in out


@pytest.mark.slow  # every stage, then the fill stages again: a few minutes
def test_the_whole_pipeline_then_a_beam_change_shows_in_dvc_metrics_diff(small):
    out = sh("dvc", "repro", cwd=small)
    assert "tables in reports/shapes/table.md" in out.splitlines()[-3]  # the last stage's line, before DVC's own
    table = (small / "reports/shapes/table.md").read_text()
    for method in ("forward", "backward", "fb_max", "fb_rerank", "bibs", "bibs_unknown", "exact"):
        assert f"| {method} |" in table
    sh("git", "add", "-A", cwd=small)
    sh("git", "-c", "user.name=test", "-c", "user.email=test@localhost", "commit", "-qm", "baseline", cwd=small)

    out = sh("dvc", "exp", "run", "-S", "fill.beam=2", cwd=small)
    assert "Running stage 'fill@shapes-bibs'" in out and "Running stage 'train@" not in out
    diff = sh("dvc", "metrics", "diff", "--md", cwd=small)
    assert "metrics/shapes.json" in diff and ".CIDEr" in diff, diff  # it lists only what changed
