"""The DVC pipeline itself: what `dvc repro` runs and refuses in a fresh copy of the repository,
and, on the built `shapes` pipeline, a method of one's own and an experiment."""

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from conftest import PARAMS, REPO, clone, copy_of, merged_params, regression, sh
from PIL import Image

# A small `shapes`, for the tests of what DVC runs and refuses: they build no models.
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


@pytest.mark.slow  # on the built pipeline: one method's fill and the tables
def test_a_method_of_ones_own_is_one_file_and_the_regression_names_its_metrics_new(built_shapes, tmp_path):
    project = copy_of(built_shapes, tmp_path / "project")
    commit(project, "the pipeline as built")

    # README, "Add your own method": the example goes into methods/ and into fill.methods.
    (project / "methods/sample_rerank.py").write_text((project / "examples/sample_rerank.py").read_text())
    merged_params(project, {"fill": {"methods": [*PARAMS.fill.methods, "sample_rerank"]}})
    out = sh("dvc", "repro", cwd=project)
    always = ["source@shapes", "scales@shapes", "code@shapes"]  # always_changed: they run and write the same bytes
    assert sorted(ran(out)) == sorted([*always, "fill@shapes-sample_rerank", "evaluate@shapes", "report@shapes"]), out
    metrics = json.loads((project / "metrics/shapes.json").read_text())
    assert set(metrics["known"]["sample_rerank"]) == set(metrics["unknown"]["sample_rerank"]) == {"0.25", "0.5", "0.75"}
    assert "| sample_rerank |" in (project / "reports/shapes/table.md").read_text()
    assert ",sample_rerank," in (project / "reports/shapes/plots/unknown.csv").read_text()
    assert "sample_rerank" in (project / "reports/shapes/plots/CIDEr.svg").read_text()
    assert sh("fillblank", "methods", cwd=project).splitlines()[-1].startswith("sample_rerank ")
    diff = sh("dvc", "metrics", "diff", "--md", cwd=project)
    assert "unknown.sample_rerank.0.75.CIDEr" in diff, diff
    plots = json.loads(sh("dvc", "plots", "show", "--json", cwd=project))
    drawn = plots["data"]["shapes CIDEr, known length"][0]["content"]["data"]["values"]
    assert {"forward", "bibs", "exact", "sample_rerank"} <= {row["method"] for row in drawn}

    # `make test`'s regression check: the built-ins as committed, the new method's metrics new.
    check = regression(project, "pipeline", str(REPO / "metrics"), "metrics")
    assert check.returncode == 0, check.stdout + check.stderr
    new = [line.split()[0] for line in check.stdout.splitlines()[2:] if line.split()[-1:] == ["new"]]
    assert new and all(".sample_rerank." in name for name in new), check.stdout
    assert "metrics moved" not in check.stdout


@pytest.mark.slow  # on the built pipeline: the blanks of 20 images, filled by every method
def test_an_experiment_on_the_built_pipeline_reruns_what_its_change_touches_not_training(built_shapes, tmp_path):
    project = copy_of(built_shapes, tmp_path / "project")
    commit(project, "the pipeline as built")

    out = sh("dvc", "exp", "run", "-S", "blanks.test_images=20", cwd=project)
    assert "blanks@shapes" in ran(out) and "fill@shapes-bibs" in ran(out)
    assert not any(name.startswith("train") for name in ran(out))
    diff = sh("dvc", "metrics", "diff", "--md", cwd=project)
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


def test_editing_a_caption_in_a_local_source_folder_reruns_what_reads_captions_not_the_cnn(tmp_path):
    source = tmp_path / "flickr8k"
    source.mkdir()
    images = [
        {"filename": f"{split}.jpg", "imgid": n, "split": split, "sentences": [{"raw": f"a dog {n}", "sentid": n}]}
        for n, split in enumerate(("train", "val", "test"))
    ]
    (source / "dataset_flickr8k.json").write_text(json.dumps({"images": images}))
    with zipfile.ZipFile(source / "Flickr8k_Dataset.zip", "w") as archive:
        for n, image in enumerate(images):
            picture = io.BytesIO()
            Image.new("RGB", (48, 32), (80 * n, 120, 200)).save(picture, "JPEG")
            archive.writestr(f"Flicker8k_Dataset/{image['filename']}", picture.getvalue())
    changes = {"datasets": ["flickr8k"], "sources": {"flickr8k": str(source)}, "prepare": {"min_count": 1}}
    project = clone(tmp_path / "project", changes | {"features": {"workers": 0}})
    assert "Running stage 'features@flickr8k'" in sh("dvc", "repro", "blanks", cwd=project)
    assert ran(sh("dvc", "repro", "blanks", cwd=project)) == ["source@flickr8k"]

    images[2]["sentences"][0]["raw"] = "a dog, fixed by hand"
    (source / "dataset_flickr8k.json").write_text(json.dumps({"images": images}))
    out = sh("dvc", "repro", "blanks", cwd=project)
    assert ran(out) == ["source@flickr8k", "download@flickr8k", "prepare@flickr8k", "blanks@flickr8k"], out
    blanked = pq.read_table(project / "data/blanks/flickr8k.parquet").to_pylist()
    assert [row["left"] + row["blank"] + row["right"] for row in blanked] == [["a", "dog", "fixed", "by", "hand"]] * 3


def test_temporaries_of_killed_runs_are_gone_after_repro_and_never_in_a_hash(built_shapes, tmp_path):
    """A kill -9 leaves `.<name>.tmp-<pid>` beside an output (fillblank/atomic.py); the next
    `dvc repro` removes it, even when every stage is restored from the cache, and the folder
    it lies in (data/fills/shapes, which evaluate reads) keeps its hash."""
    project = copy_of(built_shapes, tmp_path / "project")
    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid: a process that is gone, as a killed stage is
    leftovers = [
        project / f"data/{name}.tmp-{dead.pid}" for name in ("fills/shapes/.bibs.parquet", "features/.shapes.h5")
    ]
    for leftover in leftovers:
        leftover.write_bytes(b"half a file")
    out = sh("dvc", "repro", cwd=project)
    assert sorted(ran(out)) == ["code@shapes", "scales@shapes", "source@shapes"], out  # evaluate: no change
    assert not any(leftover.exists() for leftover in leftovers)
    assert "removed data/fills/shapes/.bibs.parquet.tmp-" in out


def ran(out: str) -> list[str]:
    """The stages `dvc repro` ran, in order."""
    return [line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")]


def test_dvc_exp_run_with_a_misspelt_key_stops_in_one_line(small):
    sh("git", "add", "-A", cwd=small)
    sh("git", "-c", "user.name=test", "-c", "user.email=test@localhost", "commit", "-qm", "baseline", cwd=small)
    refused = dvc("exp", "run", "-S", "fill.beem=3", cwd=small)  # DVC itself refuses a key params.yaml lacks
    assert refused.returncode != 0 and "fill.beem" in refused.stdout + refused.stderr
    added = dvc("exp", "run", "-S", "+fill.beem=3", cwd=small)  # `+` adds it: our check stops the run
    assert added.returncode != 0
    assert "error: params.yaml: unknown key 'fill.beem'\n" in added.stdout + added.stderr
    assert "Running stage 'download@shapes'" not in added.stdout
