"""The method registry: one declaration per method, built-in or from the project's methods/ folder."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, run_stage, write_params

from fillblank import decode, params
from fillblank.decode import registry
from fillblank.decode.step import Blanks, Models
from fillblank.errors import UserError
from fillblank.model import Captioner


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
    assert methods["bibs_unknown"].settings == ("unknown",)
    assert [name for name, entry in methods.items() if entry.ranks] == ["bibs"]
    assert all(entry.description and entry.name == name for name, entry in methods.items())


def test_a_name_declared_twice_is_refused():
    with pytest.raises(UserError, match="method 'bibs' is declared twice"):
        registry.register("bibs", role="baseline", description="another")(lambda models, blanks, length, p: [])


def test_a_wrong_role_or_setting_is_refused_where_it_is_declared():
    with pytest.raises(ValueError, match="role 'best'"):
        registry.register("mine", role="best", description="x")
    with pytest.raises(ValueError, match="settings"):
        registry.register("mine", role="baseline", description="x", settings=("sometimes",))


def test_a_method_in_the_projects_methods_folder_runs_like_a_built_in(tmp_path):
    """In a fresh process, as the stages see it: params accept it, `fillblank methods` lists it."""
    (tmp_path / "methods").mkdir()
    shutil.copy(REPO / "examples/sample_rerank.py", tmp_path / "methods")
    settings = yaml.safe_load((REPO / "params.yaml").read_text())
    settings["fill"]["methods"].append("sample_rerank")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(settings))
    check = "from fillblank import params; print(params.load().fill.methods[-1])"
    loaded = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, capture_output=True, text=True)
    assert loaded.stdout.strip() == "sample_rerank", loaded.stderr
    listed = subprocess.run(
        [sys.executable, "-c", "from fillblank.cli import main; main(['methods'])"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert (
        listed.stdout.splitlines()[-1].startswith("sample_rerank ")
        and "(baseline; known and unknown length)" in listed.stdout
    )


def test_params_read_method_names_without_torch_and_ask_the_registry_for_names_they_cannot_read(tmp_path):
    """Every stage reads params; only the ones that decode should pay for importing torch."""
    (tmp_path / "methods").mkdir()
    shutil.copy(REPO / "examples/sample_rerank.py", tmp_path / "methods")
    (tmp_path / "methods/looped.py").write_text(
        "from fillblank.decode.registry import register\n"
        "for name in ['first', 'second']:\n"
        "    register(name, role='baseline', description=name)(lambda models, blanks, length, p: [])\n"
    )
    settings = yaml.safe_load((REPO / "params.yaml").read_text())
    check = "import sys; from fillblank import params; print(params.load().fill.methods[-1], 'torch' in sys.modules)"
    for method, torch_loaded in [("sample_rerank", False), ("second", True)]:
        settings["fill"]["methods"] = ["bibs", method]
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(settings))
        loaded = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, capture_output=True, text=True)
        assert loaded.stdout.split() == [method, str(torch_loaded)], loaded.stderr


def test_a_users_method_under_a_built_in_name_is_refused_by_the_first_stage(tmp_path):
    """Read from source alone, `bibs` looks declared; read twice, it goes to the registry,
    so the first stage of `dvc repro` stops on it, not the first one that decodes."""
    (tmp_path / "methods").mkdir()
    (tmp_path / "methods/mine.py").write_text(
        "from fillblank.decode.registry import register\n"
        "@register('bibs', role='baseline', description='my own bibs')\n"
        "def bibs(models, blanks, length, p):\n"
        "    return []\n"
    )
    write_params(tmp_path, {"fill": {"methods": ["forward", "bibs"]}})
    result = run_stage("source", "shapes", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (
        2,
        "error: method 'bibs' is declared twice: in fillblank.decode.bibs and in methods.mine\n",
    )


def test_an_undeclared_method_in_params_is_one_line_naming_the_methods(tmp_path):
    settings = yaml.safe_load((REPO / "params.yaml").read_text())
    settings["fill"]["methods"] = ["bibs", "bibz"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(settings))
    with pytest.raises(
        UserError,
        match=r"'fill.methods': no method 'bibz'; the methods are forward, backward, .* \(user methods go in methods/\*\.py\)$",
    ):
        params.load(tmp_path / "params.yaml")


def test_stage_code_records_each_methods_code_so_a_new_users_method_leaves_the_built_ins_alone(tmp_path):
    """fill@<dataset>-<method> depends on data/code/<dataset>/<method>.json (dvc.yaml): a file
    added to methods/ changes the users' methods' records only; an edit to fillblank/decode,
    every one."""
    (tmp_path / "methods").mkdir()
    shutil.copy(REPO / "examples/sample_rerank.py", tmp_path / "methods")
    write_params(tmp_path, {"fill": {"methods": ["forward", "bibs", "sample_rerank"]}})

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


def test_a_retrained_infiller_fills_again_with_its_methods_only(tmp_path):
    """Only an `infiller` is given the infiller, so only its records hold its hash."""
    write_params(tmp_path, {"fill": {"methods": ["bibs", "infill", "infill_rerank"]}})
    models = tmp_path / "data/models/shapes"
    models.mkdir(parents=True)
    (models / "infill.pt").write_bytes(b"the first infiller")
    before = code_records(tmp_path)
    assert "fillblank/infill.py" in json.loads(before["infill"])["files"]
    assert "fillblank/infill.py" not in json.loads(before["bibs"])["files"]

    (models / "infill.pt").write_bytes(b"the infiller retrained")
    after = code_records(tmp_path)
    assert after["bibs"] == before["bibs"]
    assert after["infill"] != before["infill"] and after["infill_rerank"] != before["infill_rerank"]

    (models / "infill.pt").unlink()
    result = run_stage("code", "shapes", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (
        2,
        f"error: {Path('data/models/shapes/infill.pt')}: no such file, and method infill reads it (run `dvc repro train_infill`)\n",
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
            None,
        ),
    )
    models = Models(
        *[Captioner(vocab_size=8, feature_dim=4, embed=4, hidden=4, dropout=0.0) for _ in range(2)],
        infiller="an infiller",
    )
    decode.fill(
        "peek",
        models,
        Blanks(torch.zeros(2, 4), [[4], [5]], [[6], [7]]),
        [1, 1],
        params.load(REPO / "params.yaml").fill,
    )
    assert seen == [None]


def code_records(project: Path) -> dict[str, bytes]:
    """Run stage code@shapes in `project`: each method's record, as bytes."""
    result = run_stage("code", "shapes", cwd=project)
    assert result.returncode == 0, result.stderr
    return {path.stem: path.read_bytes() for path in (project / "data/code/shapes").glob("*.json")}
