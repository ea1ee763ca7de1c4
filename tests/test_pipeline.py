"""The DVC pipeline itself, on a small `shapes`, in a fresh copy of the repository."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from conftest import clone, sh

# A small `shapes`: the whole pipeline in a few minutes. Captioners trained on 100 images
# are unsure enough to send `exact` down thousands of prefixes per blank; 400 keeps it to about
# a quarter of its time (it then reports the fills it could not prove best), and these tests
# look at what DVC runs, not at the oracle, nor at the infiller: 4 epochs, not up to 40.
SMALL = {
    "sources": {"shapes": {"train": 100, "val": 20, "test": 20}},
    "fill": {"exact_max_rows": 400},
    "infill": {"overrides": {"shapes": {"max_epochs": 4}}},
}


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
    assert "didn't change, skipping" in again
    assert [line for line in again.splitlines() if line.startswith("Running stage")] == [
        "Running stage 'source@shapes':"
    ]


def test_changing_a_param_reruns_only_the_stages_that_use_it(small):
    sh("dvc", "repro", "prepare", cwd=small)
    params = (small / "params.yaml").read_text().replace("min_count: 5", "min_count: 3")
    (small / "params.yaml").write_text(params)
    out = sh("dvc", "repro", "prepare", cwd=small)
    assert "Running stage 'prepare@shapes'" in out
    assert "Running stage 'download@shapes'" not in out


@pytest.mark.slow  # every stage, then one method's fill, then every fill again: a few minutes
def test_the_whole_pipeline_then_a_method_of_ones_own_then_a_beam_change_show_in_dvc_metrics_diff(small):
    out = sh("dvc", "repro", cwd=small)
    assert "tables in reports/shapes/table.md" in out.splitlines()[-3]  # the last stage's line, before DVC's own
    table = (small / "reports/shapes/table.md").read_text()
    for method in ("forward", "backward", "fb_max", "fb_rerank", "bibs", "bibs_unknown", "infill", "exact"):
        assert f"| {method} |" in table
    commit(small, "baseline")

    # README "Add your own method": the example goes into methods/ and into fill.methods.
    (small / "methods/sample_rerank.py").write_text((small / "examples/sample_rerank.py").read_text())
    params = yaml.safe_load((small / "params.yaml").read_text())
    params["fill"]["methods"].append("sample_rerank")
    (small / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = sh("dvc", "repro", cwd=small)
    assert "Running stage 'fill@shapes-sample_rerank'" in out and "Running stage 'train@" not in out
    assert "Stage 'fill@shapes-bibs' didn't change, skipping" in out  # stage `code`: the built-ins' code is as it was
    metrics = json.loads((small / "metrics/shapes.json").read_text())
    assert set(metrics["known"]["sample_rerank"]) == set(metrics["unknown"]["sample_rerank"]) == {"0.25", "0.5", "0.75"}
    assert "| sample_rerank |" in (small / "reports/shapes/table.md").read_text()
    assert ",sample_rerank," in (small / "reports/shapes/plots/unknown.csv").read_text()
    assert "sample_rerank" in (small / "reports/shapes/plots/CIDEr.svg").read_text()
    listed = sh("fillblank", "methods", cwd=small)
    assert listed.splitlines()[-1].startswith("sample_rerank ")
    diff = sh("dvc", "metrics", "diff", "--md", cwd=small)
    assert "unknown.sample_rerank.0.75.CIDEr" in diff, diff
    plots = json.loads(sh("dvc", "plots", "show", "--json", cwd=small))
    drawn = plots["data"]["shapes CIDEr, known length"][0]["content"]["data"]["values"]
    assert {"forward", "bibs", "exact", "sample_rerank"} <= {row["method"] for row in drawn}
    commit(small, "sample_rerank")

    out = sh("dvc", "exp", "run", "-S", "fill.beam=2", cwd=small)
    assert "Running stage 'fill@shapes-bibs'" in out and "Running stage 'train@" not in out
    diff = sh("dvc", "metrics", "diff", "--md", cwd=small)
    assert "metrics/shapes.json" in diff and ".CIDEr" in diff, diff  # it lists only what changed


def commit(repo: Path, message: str) -> None:
    sh("git", "add", "-A", cwd=repo)
    sh("git", "-c", "user.name=test", "-c", "user.email=test@localhost", "commit", "-qm", message, cwd=repo)


def dvc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """A dvc command that may fail: its exit status and both outputs."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["dvc", *args], cwd=cwd, env=env, capture_output=True, text=True)


@pytest.mark.parametrize("typo", [{"fill": {"beem": 3}}, {"train": {"hiden": 256}}, {"datasets": ["flickr9k"]}])
def test_a_misspelt_param_stops_repro_in_one_line_even_when_every_stage_is_cached(small, typo):
    sh("dvc", "repro", "prepare", cwd=small)
    params = yaml.safe_load((small / "params.yaml").read_text())
    for section, change in typo.items():
        params[section] = change if isinstance(change, list) else params[section] | change
    (small / "params.yaml").write_text(json.dumps(params))  # JSON is YAML
    result = dvc("repro", "prepare", cwd=small)
    assert result.returncode != 0
    ours = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("error: params.yaml")]
    assert len(ours) == 1 and ("beem" in ours[0] or "hiden" in ours[0] or "flickr9k" in ours[0]), (
        result.stdout + result.stderr
    )
    assert "Traceback" not in result.stdout + result.stderr


def test_editing_a_file_in_a_local_source_folder_reruns_download(tmp_path):
    source = tmp_path / "flickr8k"
    source.mkdir()
    images = [{"filename": "a.jpg", "imgid": 0, "split": "train", "sentences": [{"raw": "a dog", "sentid": 0}]}]
    (source / "dataset_flickr8k.json").write_text(json.dumps({"images": images}))
    with zipfile.ZipFile(source / "Flickr8k_Dataset.zip", "w") as archive:
        archive.writestr("Flicker8k_Dataset/a.jpg", b"not decoded by download")
    project = clone(tmp_path / "project", {"datasets": ["flickr8k"], "sources": {"flickr8k": str(source)}})
    assert "Running stage 'download@flickr8k'" in sh("dvc", "repro", "download", cwd=project)
    assert "Running stage 'download@flickr8k'" not in sh("dvc", "repro", "download", cwd=project)

    images[0]["sentences"][0]["raw"] = "a dog, fixed by hand"
    (source / "dataset_flickr8k.json").write_text(json.dumps({"images": images}))
    assert "Running stage 'download@flickr8k'" in sh("dvc", "repro", "download", cwd=project)
    assert "fixed by hand" in (project / "data/raw/flickr8k/dataset_flickr8k.json").read_text()


def test_dvc_exp_run_with_a_misspelt_key_stops_in_one_line(small):
    sh("git", "add", "-A", cwd=small)
    sh("git", "-c", "user.name=test", "-c", "user.email=test@localhost", "commit", "-qm", "baseline", cwd=small)
    refused = dvc("exp", "run", "-S", "fill.beem=3", cwd=small)  # DVC itself refuses a key params.yaml lacks
    assert refused.returncode != 0 and "fill.beem" in refused.stdout + refused.stderr
    added = dvc("exp", "run", "-S", "+fill.beem=3", cwd=small)  # `+` adds it: our check stops the run
    assert added.returncode != 0
    assert "error: params.yaml: unknown key 'fill.beem'\n" in added.stdout + added.stderr
    assert "Running stage 'download@shapes'" not in added.stdout
