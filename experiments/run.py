"""Run the pipeline with a params file merged over params.yaml, beside the project, and keep
what it measured:

    python experiments/run.py experiments/flickr8k-dev.yaml [experiments/flickr8k-dev-whole-test.yaml ...]

A run on real data is too long for the default `dvc repro` and reads data the project does not
hold, so it runs in its own copy of the project, `build/experiments/<name>/` (the working tree
as a clone has it, with the merged params.yaml), where DVC keeps its cache: running again after
a change re-runs only what the change touches. Several params files are merged in order, each
over the one before, and the run is named after the last: a variant of a run names only what
it changes. Then its metrics and reports are copied into `experiments/<name>/` beside the last
params file, with `run.json`: the commit, the wall time of each stage that ran, and the
machine; a variant's training metrics only where its models differ from the first run's.
`dvc.yaml` declares those metrics, so `dvc metrics diff` shows what a change did to them.

Relative paths under `sources` are read from the project root, as in params.yaml.
"""

import argparse
import filecmp
import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

from fillblank.provenance import machine

ROOT = Path(__file__).resolve().parents[1]
# What a run makes or keeps in its copy, never copied over from the project.
OUTPUTS = ("data/", "metrics/", "reports/", "dvc.lock")
COPIED = ".copied"  # in a copy: the files it took from the project, one per line
RUNNING = re.compile(r"Running stage '([^']+)'")


def merge(base: dict, changes: dict) -> dict:
    """`base` with `changes` written over it, key by key at every depth."""
    merged = dict(base)
    for key, value in changes.items():
        both = isinstance(value, dict) and isinstance(base.get(key), dict)
        merged[key] = merge(base[key], value) if both else value
    return merged


def copy_project(dest: Path, changes: dict) -> Path:
    """The project's files as a fresh clone has them (the working tree's, uncommitted changes
    included, no pipeline outputs) in `dest`, a git repository, with `changes` merged over
    params.yaml. An earlier copy's files are replaced, and removed where the project no longer
    has them (a deleted file in methods/ must not go on running); its outputs are kept."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    names = [name for name in listed if name and (ROOT / name).is_file() and not name.startswith(OUTPUTS)]
    if (dest / COPIED).is_file():
        for gone in set((dest / COPIED).read_text().split("\n")) - set(names) - {""}:
            (dest / gone).unlink(missing_ok=True)
    for name in names:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest / name)
    (dest / COPIED).write_text("\n".join(names) + "\n")
    write_params(dest, changes)
    if not (dest / ".git").exists():
        subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    return dest


def write_params(dest: Path, changes: dict) -> None:
    """The project's params.yaml with `changes` merged over it, written into folder `dest`."""
    merged = merge(yaml.safe_load((ROOT / "params.yaml").read_text()), changes)
    (dest / "params.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))


def absolute_sources(changes: dict) -> dict:
    """`changes` with each relative folder under `sources` made absolute from the project root."""
    # normpath, not resolve: a `../shared` that is a symlink stays the path the user wrote
    sources = {
        name: os.path.normpath(ROOT / path) if isinstance(path, str) and not Path(path).is_absolute() else path
        for name, path in changes.get("sources", {}).items()
    }
    return changes | {"sources": sources} if sources else changes


def repro(project: Path, log: Path) -> dict[str, float]:
    """`dvc repro` in `project`, its output shown and written to `log`; seconds per stage that ran."""
    # Unbuffered, so that each line (DVC's "Running stage", a stage's progress) comes as it is written.
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONUNBUFFERED": "1",
    }
    starts: list[tuple[str, float]] = []
    with (
        subprocess.Popen(
            ["dvc", "repro"], cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        ) as dvc,
        log.open("w") as out,
    ):
        for raw in dvc.stdout:  # bytes, split at "\n" only: a progress bar's "\r" redraws stay in one line
            line = raw.decode(errors="replace")
            sys.stdout.write(line)
            sys.stdout.flush()
            out.write(line)
            if found := RUNNING.search(line):
                starts.append((found.group(1), time.monotonic()))
    if dvc.returncode:
        sys.exit(f"dvc repro failed in {project} (exit {dvc.returncode}); its output is in {log}")
    ends = [start for _, start in starts[1:]] + [time.monotonic()]
    return {stage: round(end - start, 1) for (stage, start), end in zip(starts, ends, strict=True)}


def keep_results(project: Path, results: Path, datasets: list[str], base: Path | None = None) -> None:
    """Copy the run's metrics and reports of `datasets` into `results`, replacing older ones.

    A variant's training metrics that equal those kept in `base`, the results of the run it
    varies, are of the same models and stay there only."""
    shutil.rmtree(results / "metrics", ignore_errors=True)
    shutil.rmtree(results / "reports", ignore_errors=True)
    for dataset in datasets:
        trained = sorted((project / "metrics/train").glob(f"{dataset}-*"))
        if base is not None:
            trained = [path for path in trained if not same_file(path, base / path.relative_to(project))]
        for path in [project / f"metrics/{dataset}.json", *trained]:
            (results / path.relative_to(project)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, results / path.relative_to(project))
        shutil.copytree(project / f"reports/{dataset}", results / f"reports/{dataset}")


def results_of(params_file: Path) -> Path:
    """Where the run named after `params_file` keeps its results: `experiments/<name>/` beside it."""
    return params_file.resolve().parent / params_file.stem


def same_file(path: Path, other: Path) -> bool:
    return other.is_file() and filecmp.cmp(path, other, shallow=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "params", type=Path, nargs="+", help="params files merged in order over params.yaml (experiments/<name>.yaml)"
    )
    args = parser.parse_args()
    last = args.params[-1]
    changes = {}
    for path in args.params:
        changes = merge(changes, absolute_sources(yaml.safe_load(path.read_text())))
    project = copy_project(ROOT / "build/experiments" / last.stem, changes)
    results = results_of(last)
    results.mkdir(exist_ok=True)

    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    # Untracked files count: the copy takes them too.
    dirty = bool(
        subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    )
    started, clock = datetime.now(UTC), time.monotonic()
    stages = repro(project, project / "repro.log")
    wall = time.monotonic() - clock

    datasets = yaml.safe_load((project / "params.yaml").read_text())["datasets"]
    base = results_of(args.params[0]) if len(args.params) > 1 else None
    keep_results(project, results, datasets, base)
    run = {
        "params": [str(path) for path in args.params],
        "commit": commit + ("+uncommitted changes" if dirty else ""),
        "started": started.isoformat(timespec="seconds"),
        "wall_seconds": round(wall, 1),
        "stages_run_seconds": stages,
        "machine": machine() | {"cpus": os.cpu_count()},
    }
    (results / "run.json").write_text(json.dumps(run, indent=2) + "\n")
    print(f"{last.stem}: {wall / 60:.1f} min; results in {results.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
