"""The method registry: one declaration per method, built-in or from the project's methods/ folder."""

import json
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import REPO, run_stage, write_params
from fillblank import params
from fillblank.decode import registry
from fillblank.errors import UserError


def test_every_built_in_method_declares_what_the_pipeline_reads():
    methods = registry.methods()
    assert list(methods)[:7] == ["forward", "backward", "fb_max", "fb_rerank", "bibs", "bibs_unknown", "exact"]
    assert {name: entry.role for name, entry in methods.items() if entry.role != "baseline"} == {
        "bibs": "bidirectional", "bibs_unknown": "bidirectional", "exact": "oracle", "infill": "infiller", "infill_rerank": "infiller"}
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
    listed = subprocess.run([sys.executable, "-c", "from fillblank.cli import main; main(['methods'])"], cwd=tmp_path, capture_output=True, text=True)
    assert listed.stdout.splitlines()[-1].startswith("sample_rerank ") and "(baseline; known and unknown length)" in listed.stdout


def test_params_read_method_names_without_torch_and_ask_the_registry_for_names_they_cannot_read(tmp_path):
    """Every stage reads params; only the ones that decode should pay for importing torch."""
    (tmp_path / "methods").mkdir()
    shutil.copy(REPO / "examples/sample_rerank.py", tmp_path / "methods")
    (tmp_path / "methods/looped.py").write_text(
        "from fillblank.decode.registry import register\n"
        "for name in ['first', 'second']:\n"
        "    register(name, role='baseline', description=name)(lambda models, blanks, length, p: [])\n")
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
        "    return []\n")
    write_params(tmp_path, {"fill": {"methods": ["forward", "bibs"]}})
    result = run_stage("source", "shapes", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (2, "error: method 'bibs' is declared twice: in fillblank.decode.bibs and in methods.mine\n")


def test_an_undeclared_method_in_params_is_one_line_naming_the_methods(tmp_path):
    settings = yaml.safe_load((REPO / "params.yaml").read_text())
    settings["fill"]["methods"] = ["bibs", "bibz"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(settings))
    with pytest.raises(UserError, match=r"'fill.methods': no method 'bibz'; the methods are forward, backward, .* \(user methods go in methods/\*\.py\)$"):
        params.load(tmp_path / "params.yaml")


def test_stage_code_records_each_methods_code_so_a_new_users_method_leaves_the_built_ins_alone(tmp_path):
    """fill@<dataset>-<method> depends on data/code/<method>.json (dvc.yaml): a file added to
    methods/ changes the users' methods' records only; an edit to fillblank/decode, every one."""
    (tmp_path / "methods").mkdir()
    shutil.copy(REPO / "examples/sample_rerank.py", tmp_path / "methods")
    write_params(tmp_path, {"fill": {"methods": ["forward", "bibs", "sample_rerank"]}})

    def records() -> dict[str, bytes]:
        result = run_stage("code", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        return {path.stem: path.read_bytes() for path in (tmp_path / "data/code").glob("*.json")}

    before = records()
    assert set(before) == {"forward", "bibs", "sample_rerank"}
    assert "decode/bibs.py" in json.loads(before["forward"])["files"]
    assert "methods/sample_rerank.py" in json.loads(before["sample_rerank"])["files"]
    assert records() == before  # nothing changed, the same bytes: DVC re-runs no fill

    (tmp_path / "methods/helpers.py").write_text("SAMPLES = 8\n")
    after = records()
    assert after["forward"] == before["forward"] and after["bibs"] == before["bibs"]
    assert after["sample_rerank"] != before["sample_rerank"]
    package = {f"decode/{path.name}" for path in (REPO / "fillblank/decode").glob("*.py")}
    assert all(package <= json.loads(record)["files"].keys() for record in after.values())  # an edit there: every one
