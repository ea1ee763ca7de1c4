"""Shared helpers and fixtures: the repository root, a runner for stage modules as DVC runs
them, fresh copies of the repository with params merged in, and the `shapes` pipeline built
once per test run."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

# clone(dest, params): the project's files as a fresh clone has them, with params merged in;
# write_params(dest, params): only its params.yaml
from experiments.run import copy_project as clone
from experiments.run import merge, write_params  # noqa: F401 (write_params: for the tests that import it from here)
from fillblank import params

REPO = Path(__file__).resolve().parents[1]
SHARED_FLICKR8K = REPO.parent / "shared" / "data" / "flickr8k-dev"
PARAMS = params.load(REPO / "params.yaml")  # the project's own: the method list and every setting tests read


def sh(*args: str, cwd: Path) -> str:
    """Run a command with this environment's programs (dvc) first on PATH; its stdout, or a
    failure showing both outputs."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def run_stage(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run `python -m stages.<args>` in `cwd` (which holds the params.yaml it reads)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "stages." + args[0], *args[1:]], cwd=cwd, env=env, capture_output=True, text=True
    )


def regression(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m fillblank.regression ARGS` in folder `cwd`, as `make regression` runs it."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "fillblank.regression", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


@pytest.fixture
def params_file(tmp_path: Path):
    """Write the repository's params.yaml into tmp_path with some keys replaced."""

    def write(replacements: dict[str, str] | None = None) -> Path:
        text = (REPO / "params.yaml").read_text()
        for old, new in (replacements or {}).items():
            assert old in text, old
            text = text.replace(old, new)
        path = tmp_path / "params.yaml"
        path.write_text(text)
        return path

    return write


def built_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where this test run builds the `shapes` pipeline: in the temporary folder every
    process of the run shares (pytest-xdist gives each worker its own below it)."""
    base = tmp_path_factory.getbasetemp()
    return (base.parent if "PYTEST_XDIST_WORKER" in os.environ else base) / "built"


def needs_build(item: pytest.Item) -> bool:
    return "built_shapes" in getattr(item, "fixturenames", ())


@pytest.fixture(scope="session", autouse=True)
def start_building_shapes(request, tmp_path_factory) -> None:
    """When a test of this run needs the built pipeline, start `dvc repro` on a fresh clone in
    the background at the run's first test, once for all its processes: the other tests run
    meanwhile, and those that need it come last (`pytest_collection_modifyitems`).

    The build is the run's longest job: it keeps `make test`'s one thread (two threads
    gained nothing beside the tests, docs/reproducibility.md), and every test process then
    lowers its own priority, so that the tests take what CPU the build leaves."""
    folder = built_folder(tmp_path_factory)
    if not any(needs_build(item) for item in request.session.items):
        return
    try:
        folder.mkdir()  # the first process of the run to get here builds; the others wait for it
    except FileExistsError:
        os.nice(10)
        return
    try:
        project = clone(folder / "project", {})
    except BaseException as error:  # the waiting processes are told, not left waiting
        (folder / "repro.log").write_text(f"cloning the project failed: {error!r}")
        (folder / "status").write_text("1")
        raise
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    # The status file is written last, so that it is there only once the build has ended.
    script = "dvc repro > ../repro.log 2>&1; echo $? > ../status.tmp && mv ../status.tmp ../status"
    subprocess.Popen(["sh", "-c", script], cwd=project, env=env)
    os.nice(10)


@pytest.fixture(scope="session")
def built_shapes(tmp_path_factory) -> Path:
    """The project as a fresh clone's `dvc repro` leaves it: the default `shapes` pipeline,
    built once per test run (about twenty minutes on two cores) and shared by every test that
    needs trained models or the pipeline's outputs, the regression check among them. Tests
    read it; one that changes it works on `copy_of(built_shapes, ...)`."""
    folder = built_folder(tmp_path_factory)
    while not (folder / "status").is_file():
        time.sleep(1)
    log = (folder / "repro.log").read_text()
    assert (folder / "status").read_text().strip() == "0", f"dvc repro of the shapes pipeline failed:\n{log[-5000:]}"
    return folder / "project"


def copy_of(project: Path, dest: Path) -> Path:
    """A copy of a built project, its DVC cache and outputs included: `dvc repro` there runs
    only what a change needs."""
    shutil.copytree(project, dest, symlinks=True)
    return dest


def merged_params(project: Path, changes: dict) -> None:
    """Merge `changes` over `project`'s params.yaml, key by key."""
    path = project / "params.yaml"
    path.write_text(yaml.safe_dump(merge(yaml.safe_load(path.read_text()), changes), sort_keys=False))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow tests first, the tests of the built pipeline last, so that the others run
    while it builds and the quick ones fill the gaps (pytest-xdist's `--dist worksteal`)."""
    items.sort(key=lambda item: (needs_build(item), "slow" not in item.keywords))  # stable: order kept within
