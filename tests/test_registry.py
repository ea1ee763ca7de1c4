"""The method registry: one declaration per method and per scale, built-in or from the
project's methods/ folder."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import PARAMS, REPO, run_stage, write_params

from fillblank import decode
from fillblank.captioner import Captioner
from fillblank.decode import registry
from fillblank.decode.models import Models
from fillblank.decode.step import Blanks
from fillblank.errors import UserError


def test_every_built_in_method_declares_what_the_pipeline_reads():
    methods = registry.methods()
    assert list(methods)[:7] == ["forward", "backward", "fb_max", "fb_rerank", "bibs", "bibs_unknown", "exact"]
    assert {name: entry.role for name, entry in methods.items() if entry.role != "baseline"} == {
        "bibs": "bidirectional",
        "bibs_unknown": "bidirectional",
        "exact": "oracle",
        "infill": "infiller",
        "infill_rerank": "infiller",
    }
    assert {name: entry.scale for name, entry in methods.items()} == {
        "forward": "captioner",
        "backward": "captioner",
        "fb_max": "captioner",
        "fb_rerank": "captioners",
        "bibs": "captioners",
        "bibs_unknown": "captioners",
        "exact": "captioners",
        "infill": "infiller",
        "infill_rerank": "captioners_infiller",
    }
    assert methods["bibs_unknown"].settings == ("unknown",)
    assert [name for name, entry in methods.items() if entry.ranks] == ["bibs"]
    assert all(entry.description and entry.name == name for name, entry in methods.items())
    assert list(registry.scales()) == ["captioner", "captioners", "infiller", "captioners_infiller"]


def test_a_name_declared_twice_is_refused():
    with pytest.raises(UserError, match="method 'bibs' is declared twice"):
        registry.register("bibs", role="baseline", scale="captioners", description="another")(
            lambda models, blanks, length, p: []
        )
    with pytest.raises(UserError, match="scale 'captioners' is declared twice"):
        registry.scale("captioners", description="another")(lambda models, blanks, p: [])


def test_a_wrong_role_or_setting_is_refused_where_it_is_declared():
    with pytest.raises(ValueError, match="role 'best'"):
        registry.register("mine", role="best", scale="captioners", description="x")
    with pytest.raises(ValueError, match="settings"):
        registry.register("mine", role="baseline", scale="captioners", description="x", settings=("sometimes",))


def test_a_method_in_the_projects_methods_folder_runs_like_a_built_in(tmp_path):
    """In a fresh process, as the stages see it: stage source accepts it, `fillblank methods` lists it."""
    (tmp_path / "methods").mkdir()
    shutil.copy(REPO / "examples/sample_rerank.py", tmp_path / "methods")
    write_params(tmp_path, {"fill": {"methods": [*PARAMS.fill.methods, "sample_rerank"]}})
    assert run_stage("source", "shapes", cwd=tmp_path).returncode == 0
    listed = subprocess.run(
        [sys.executable, "-c", "from fillblank.cli import main; main(['methods'])"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert listed.stdout.splitlines()[-1].startswith("sample_rerank ")
    assert "(baseline; scale captioners; known and unknown length)" in listed.stdout


def test_a_users_method_under_a_built_in_name_is_refused_by_the_first_stage(tmp_path):
    (tmp_path / "methods").mkdir()
    (tmp_path / "methods/mine.py").write_text(
        "from fillblank.decode.registry import register\n"
        "@register('bibs', role='baseline', scale='captioners', description='my own bibs')\n"
        "def bibs(models, blanks, length, p):\n"
        "    return []\n"
    )
    write_params(tmp_path, {"fill": {"methods": ["forward", "bibs"]}})
    result = run_stage("source", "shapes", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (
        2,
        "error: method 'bibs' is declared twice: in fillblank.decode.bibs and in methods.mine\n",
    )


def test_an_undeclared_method_or_scale_in_params_stops_the_first_stage_in_one_line(tmp_path):
    write_params(tmp_path, {"fill": {"methods": ["bibs", "bibz"]}})
    result = run_stage("source", "shapes", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: no method 'bibz'; the methods are forward, backward, ")
    assert result.stderr.endswith(" (user methods go in methods/*.py)\n") and result.stderr.count("\n") == 1

    write_params(tmp_path, {"fill": {"length_bonus": {"captioner": 1.0, "captioners": 2.0, "infiler": "tuned"}}})
    result = run_stage("source", "shapes", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (
        2,
        "error: fill.length_bonus: no scale 'infiler'; the scales are captioner, captioners, infiller, "
        "captioners_infiller\n",
    )


def test_a_method_naming_an_undeclared_scale_is_refused(tmp_path):
    (tmp_path / "methods").mkdir()
    (tmp_path / "methods/mine.py").write_text(
        "from fillblank.decode.registry import register\n"
        "@register('mine', role='baseline', scale='bigrams', description='mine')\n"
        "def mine(models, blanks, length, p):\n"
        "    return []\n"
    )
    write_params(tmp_path, {"fill": {"methods": ["mine"]}})
    result = run_stage("source", "shapes", cwd=tmp_path)
    assert (
        result.returncode == 2
        and "error: method 'mine' ranks by scale 'bigrams', which is not declared" in result.stderr
    )


def test_stage_code_records_each_methods_code_so_a_new_users_method_leaves_the_built_ins_alone(tmp_path):
    """fill@<dataset>-<method> depends on data/code/<dataset>/<method>.json (dvc.yaml): a file
    added to methods/ changes the users' methods' records only; an edit to fillblank/decode,
    every one."""
    (tmp_path / "methods").mkdir()
    shutil.copy(REPO / "examples/sample_rerank.py", tmp_path / "methods")
    write_params(tmp_path, {"fill": {"methods": ["forward", "bibs", "sample_rerank"], "length_bonus": 1.0}})

    before = code_records(tmp_path)
    assert set(before) == {"forward", "bibs", "sample_rerank"}
    assert "decode/bibs.py" in json.loads(before["forward"])["files"]
    assert "methods/sample_rerank.py" in json.loads(before["sample_rerank"])["files"]
    assert code_records(tmp_path) == before  # nothing changed, the same bytes: DVC re-runs no fill

    (tmp_path / "methods/helpers.py").write_text("SAMPLES = 8\n")
    after = code_records(tmp_path)
    assert after["forward"] == before["forward"] and after["bibs"] == before["bibs"]
    assert after["sample_rerank"] != before["sample_rerank"]
    package = {f"decode/{path.name}" for path in (REPO / "fillblank/decode").glob("*.py")}
    assert all(package <= json.loads(record)["files"].keys() for record in after.values())  # an edit there: every one


def test_a_new_bonus_for_one_scale_fills_again_with_that_scale_s_methods_only(tmp_path):
    tuned = {"scales": {name: {"length_bonus": 1.0} for name in registry.scales()}}
    (tmp_path / "data/length").mkdir(parents=True)
    (tmp_path / "data/length/shapes.json").write_text(json.dumps(tuned))
    write_params(tmp_path, {"fill": {"methods": ["forward", "fb_max", "bibs"]}})
    before = code_records(tmp_path)
    assert json.loads(before["forward"])["length_bonus"] == {"captioner": 1.0}

    write_params(tmp_path, {"fill": {"methods": ["forward", "fb_max", "bibs"], "length_bonus": {"captioners": 1.5}}})
    after = code_records(tmp_path)
    assert after["forward"] == before["forward"] and after["fb_max"] == before["fb_max"]
    assert json.loads(after["bibs"])["length_bonus"] == {"captioners": 1.5}


def test_a_retrained_infiller_fills_again_with_its_methods_only(tmp_path):
    """Only an `infiller` is given the infiller, so only its records hold its hash."""
    write_params(tmp_path, {"fill": {"methods": ["bibs", "infill", "infill_rerank"], "length_bonus": 1.0}})
    models = tmp_path / "data/models/shapes"
    models.mkdir(parents=True)
    (models / "infiller.pt").write_bytes(b"the first infiller")
    before = code_records(tmp_path)
    assert "fillblank/infiller.py" in json.loads(before["infill"])["files"]
    assert "fillblank/infiller.py" not in json.loads(before["bibs"])["files"]

    (models / "infiller.pt").write_bytes(b"the infiller retrained")
    after = code_records(tmp_path)
    assert after["bibs"] == before["bibs"]
    assert after["infill"] != before["infill"] and after["infill_rerank"] != before["infill_rerank"]

    (models / "infiller.pt").unlink()
    result = run_stage("code", "shapes", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (
        2,
        f"error: {Path('data/models/shapes/infiller.pt')}: no such file, and method infill reads it "
        "(run `dvc repro train_infiller`)\n",
    )


def test_a_method_that_is_no_infiller_is_given_none(monkeypatch):
    seen = []
    monkeypatch.setitem(
        registry.REGISTRY,
        "peek",
        registry.Entry(
            "peek",
            lambda models, blanks, length, p: seen.append(models.infiller) or [[5]] * len(blanks),
            ("known",),
            "looks at the infiller",
            "baseline",
            "captioners",
            None,
        ),
    )
    models = Models(
        *[Captioner(vocab_size=8, feature_dim=4, embed=4, hidden=4, dropout=0.0) for _ in range(2)],
        infiller="an infiller",
    )
    decode.fill("peek", models, Blanks(torch.zeros(2, 4), [[4], [5]], [[6], [7]]), [1, 1], PARAMS.fill)
    assert seen == [None]


def code_records(project: Path) -> dict[str, bytes]:
    """Run stage code@shapes in `project`: each method's record, as bytes."""
    result = run_stage("code", "shapes", cwd=project)
    assert result.returncode == 0, result.stderr
    return {path.stem: path.read_bytes() for path in (project / "data/code/shapes").glob("*.json")}
