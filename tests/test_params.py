"""Parameters are typed: a typo or a wrong type stops a stage before any work, naming the key."""

import pytest
from conftest import REPO, run_stage

from fillblank import params
from fillblank.errors import UserError


def test_the_repository_params_file_is_valid():
    loaded = params.load(REPO / "params.yaml")
    assert loaded.datasets == ["shapes"]
    assert loaded.prepare.min_count == 5


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("min_count: 5", "min_cout: 5", "unknown key 'prepare.min_cout' (did you mean 'min_count'?)"),
        ("min_count: 5", "min_count: five", "'prepare.min_count': Input should be a valid integer (got 'five')"),
        ("min_count: 5", "min_count: 0", "'prepare.min_count': Input should be greater than or equal to 1"),
        ("    seed: 0\n", "", "missing key 'sources.shapes.seed'"),
        ("datasets: [shapes]", "datasets: [shapez]", "'datasets.0': Input should be 'shapes'"),
        ("prepare:", "prepare:\n  extra: 1", "unknown key 'prepare.extra'"),
    ],
)
def test_bad_params_name_the_key(params_file, old, new, message):
    with pytest.raises(UserError) as error:
        params.load(params_file({old: new}))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_a_stage_with_a_misspelt_key_stops_before_any_work(tmp_path, params_file):
    params_file({"min_count: 5": "min_cout: 5"})
    result = run_stage("download", "shapes", "--out", "raw", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: params.yaml: unknown key 'prepare.min_cout' (did you mean 'min_count'?)"
    assert not (tmp_path / "raw").exists()


def test_invalid_yaml_is_one_line_naming_the_file_line_and_column(tmp_path):
    (tmp_path / "params.yaml").write_text("datasets: [shapes]\nfill:\n  beam: 3\n   sweeps: 2\n")
    result = run_stage("source", "flickr8k", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (
        2,
        "error: params.yaml: not valid YAML at line 4, column 10: mapping values are not allowed here\n",
    )
    (tmp_path / "params.yaml").write_bytes(b"datasets: [sh\xe4pes]\n")
    with pytest.raises(UserError, match=r"params.yaml: not UTF-8 text \(byte 13\)$"):
        params.load(tmp_path / "params.yaml")
