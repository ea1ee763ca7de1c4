"""The GPU check in one command: does the project decode and train right on a CUDA machine, and how fast?

    python benchmarks/gpu_check.py [--device cuda|cpu] [--small]

Run from the project root. Five parts, each timed, on the device:

1. fixture: every method of `fill.methods` but the infiller's fills the regression fixture
   (tests/fixtures/shapes: fixed captioners, 900 blanks), and each metric must lie within
   `fillblank.regression.DECODE_TOLERANCE` of the committed ones, made on a CPU. The fills
   are kept in `gpu_check_fills.parquet`: where the Java that pycocoevalcap calls is missing
   (a lent GPU machine), they are scored later, elsewhere, by
   `gpu_check.py --score gpu_check_fills.parquet`.
2. train: a small generated `shapes` dataset (stages source, download, prepare, features in
   a temporary folder), then the two captioners and the infiller, a few epochs each
   (`stages.train`), with their training tokens per second.
3. resume: the forward captioner trained again, killed (SIGKILL) in the middle of its second
   epoch and run again: it must go on from its resume file and give the uninterrupted run's
   weights, bit for bit on the CPU, within `RESUME_TOLERANCE` on CUDA, whose kernels need not
   add in the same order twice (atomic adds in backward passes).
4. decode: benchmarks/decode.py on random captioners of Flickr8k size, batches 1 to 256.
5. features: benchmarks/features.py, the features stage against its bare backbone.

It prints one markdown table and writes it to `$OUT/gpu_check.md` (`./gpu_check.md` when OUT
is not set), the raw numbers beside it in `gpu_check.json`; the exit status is 1 when a
check fails. Without a GPU it stops, unless `--device cpu` is given; `--small` shrinks every
part (one method on the fixture, compared with the length known, a tiny dataset and models,
two batches) for a test on the CPU. How to run it on a lent machine, and its times: docs/gpu.md.
"""

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import decode as decode_benchmark  # noqa: E402
from benchmarks import features as features_benchmark  # noqa: E402
from experiments.run import write_params  # noqa: E402
from fillblank import params, provenance, regression, tables  # noqa: E402
from fillblank.atomic import atomic_path, write_text  # noqa: E402
from fillblank.decode import registry  # noqa: E402
from fillblank.errors import UserError, run  # noqa: E402

FIXTURE = regression.FIXTURE
FILLS = "gpu_check_fills.parquet"  # the fixture's fills, beside the table

# Weights of a resumed CUDA run against an uninterrupted one: the largest absolute difference
# allowed, far below what a training step moves a weight by, far above float32 rounding.
RESUME_TOLERANCE = 1e-4
# What `--small` fills on the fixture, and compares in the known-length setting only: those
# fills read no length bonus, so the check holds whatever the fixture's tuned bonuses are.
SMALL_METHODS = ["forward"]


@dataclass(frozen=True)
class Size:
    """How much each part does."""

    shapes: dict  # sources.shapes: the generated dataset
    captioner: dict  # train.overrides.shapes
    infiller: dict  # infiller.overrides.shapes
    epochs: int
    batches: list[int]  # blanks decoded together, in the decode benchmark
    methods: list[str] | None  # the decode benchmark's; None: its default
    repeats: int  # of each decode benchmark run; the fastest counts
    images: int  # the features benchmark's
    features: dict = field(default_factory=dict)  # the features section, in the training part


FULL = Size(
    shapes={"train": 2000, "val": 200, "test": 200, "image_size": 128},  # params.yaml's
    captioner={},
    infiller={},
    epochs=3,
    batches=[1, 8, 32, 256],
    methods=None,
    repeats=2,
    images=512,
)
SMALL = Size(
    shapes={"train": 20, "val": 5, "test": 5, "image_size": 32},
    captioner={"embed": 16, "hidden": 32, "batch_size": 20},
    infiller={"width": 32, "heads": 2, "layers": 1, "feedforward": 64, "batch_size": 20},
    epochs=2,
    batches=[1, 2],
    methods=["forward"],
    repeats=1,
    images=8,
    features={"workers": 1, "batch_size": 8},
)

# Run as `python -c KILLED_AT_UPDATE <update> <stages.train arguments>`: the training stage,
# killed outright just before its optimizer's update number <update>.
KILLED_AT_UPDATE = """
import os, runpy, signal, sys, torch
step, updates, kill_at = torch.optim.RMSprop.step, [0], int(sys.argv[1])
def killing_step(self, *args, **kwargs):
    updates[0] += 1
    if updates[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return step(self, *args, **kwargs)
torch.optim.RMSprop.step = killing_step
sys.argv = ["stages.train", *sys.argv[2:]]
runpy.run_module("stages.train", run_name="__main__")
"""


@dataclass
class Row:
    part: str
    item: str
    result: str  # pass or fail (a check), done or measured (a benchmark), unscored (fills kept for --score)
    value: str
    seconds: float | None  # None: counted in another row of its part


class Failed(Exception):
    """A part that could not finish: its message is the table's one line."""


def fixture_fills(fill: params.Fill, methods: list[str], device: torch.device) -> pa.Table:
    """Each method's fills of the fixture's blanks on `device` (`regression.fixture_fills`), in one
    table with a `method` column, to keep in a file."""
    parts = [
        table.replace_schema_metadata(None).append_column("method", pa.array([method] * len(table)))
        for method, table in regression.fixture_fills(fill, methods, FIXTURE, str(device)).items()
    ]
    return pa.concat_tables(parts)


def unscorable() -> str | None:
    """Why the fills cannot be scored here (the Java that pycocoevalcap calls missing), or None."""
    return None if shutil.which("java") else "`java` is not on PATH (pycocoevalcap calls it)"


def score_fixture(path: Path) -> tuple[Row, dict]:
    """The fixture's fills in `path` (`fixture_fills`, with what made them in its metadata)
    scored and compared with the committed metrics: the table's row and the raw numbers."""
    began = time.perf_counter()
    fills = pq.read_table(path)
    made = json.loads(fills.schema.metadata[b"gpu_check"])
    fill = params.Fill.model_validate(made["fill"])
    by_method = {m: fills.filter(pc.equal(fills["method"], m)).drop_columns(["method"]) for m in made["methods"]}
    new = regression.fixture_metrics(by_method, fill, FIXTURE)
    committed = json.loads((FIXTURE / "metrics.json").read_text(encoding="utf-8"))
    if made["small"]:  # the cells it filled with the length known, without the oracle's search error
        new = {name: value for name, value in regression.compared(new).items() if name.startswith("known.")}
        committed = {name: value for name, value in regression.compared(committed).items() if name in new}
    failed = regression.failures(regression.moved(committed, new, regression.DECODE_TOLERANCE))
    largest = regression.largest_changes(committed, new)
    worst = max(largest, key=largest.get, default=None)
    value = f"largest change {largest[worst]:.2%} ({worst})" if worst else "no metric in common"
    value = "every metric as committed" if worst and largest[worst] == 0 else value
    value += f", tolerance {regression.DECODE_TOLERANCE:.1%}"
    if failed:
        value = f"{len(failed)} metrics moved beyond the tolerance, first {failed[0][0]} {failed[0][3]}; " + value
    blanks = len(tables.read(FIXTURE / "blanks.parquet", ["blank_id"]))
    item = f"{', '.join(made['methods'])} on {blanks} blanks on {made['device']}"
    item += ", length known only," if made["small"] else ""
    result = "fail" if failed or not largest else "pass"
    row = Row("fixture", item + " vs the committed CPU metrics", result, value, time.perf_counter() - began)
    return row, {"failed": failed, "largest_changes": largest}


def check_fixture(device: torch.device, small: bool, out: Path, raw: dict) -> list[Row]:
    """Fill the fixture on `device` into out/gpu_check_fills.parquet, and score the fills where pycocoevalcap can."""
    began = time.perf_counter()
    fill = params.load().fill
    methods = SMALL_METHODS if small else [m for m in fill.methods if not registry.entry(m).reads_infiller]
    if small:  # any bonus: only the known-length fills are compared
        fill = fill.model_copy(update={"length_bonus": 0.0})
    fills = fixture_fills(fill, methods, device)
    made = {"methods": methods, "small": small, "device": str(device), "fill": fill.model_dump()}
    path = out / FILLS
    with atomic_path(path) as tmp:
        pq.write_table(fills.replace_schema_metadata({"gpu_check": json.dumps(made)}), tmp)
    seconds = time.perf_counter() - began
    raw["fixture"] = {"methods": methods, "fill_seconds": seconds}
    if why := unscorable():
        value = f"{why}: score them where it is, `python benchmarks/gpu_check.py --score {path}`"
        return [Row("fixture", f"{', '.join(methods)} filled on {device} into {path}", "unscored", value, seconds)]
    row, numbers = score_fixture(path)
    raw["fixture"] |= numbers
    row.seconds += seconds
    return [row]


class Project:
    """A temporary folder where the stages run as DVC would run them, on this repository's code."""

    def __init__(self, folder: Path, size: Size):
        self.folder = folder
        shapes = size.shapes | {"seed": 0}
        schedule = {"max_epochs": size.epochs, "patience": size.epochs}
        changes = {
            "datasets": ["shapes"],
            "sources": {"shapes": shapes},
            "features": size.features,
            "train": {"overrides": {"shapes": size.captioner | schedule}},
            "infiller": {"overrides": {"shapes": size.infiller | schedule}},
        }
        write_params(folder, changes)
        self.env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}

    def stage(self, name: str, *args: str) -> tuple[str, float]:
        """Run `python -m stages.<name> <args>` here: its output and wall time, or `Failed` with its last line."""
        began = time.perf_counter()
        command = [sys.executable, "-m", f"stages.{name}", *args]
        done = subprocess.run(command, cwd=self.folder, env=self.env, capture_output=True, text=True)
        seconds = time.perf_counter() - began
        if done.returncode:
            last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
            raise Failed(f"stages.{name} {' '.join(args)} failed (exit {done.returncode}): {last}")
        return done.stdout, seconds

    def killed(self, update: int, *args: str) -> int:
        """Run `stages.train args` killed just before optimizer update `update`; its return code."""
        command = [sys.executable, "-c", KILLED_AT_UPDATE, str(update), *args]
        return subprocess.run(command, cwd=self.folder, env=self.env, capture_output=True).returncode


def check_training(project: Project, size: Size, raw: dict) -> list[Row]:
    """Make the dataset with the pipeline's stages, then train each model on it."""
    began = time.perf_counter()
    for name in ("source", "download", "prepare", "features"):
        _, seconds = project.stage(name, "shapes")
        raw.setdefault("stages", {})[name] = seconds
        print(f"  stage {name}: {seconds:.1f} s", flush=True)
    shapes = size.shapes
    item = f"stages source, download, prepare, features: {shapes['train']}/{shapes['val']}/{shapes['test']} images"
    rows = [Row("train", item, "done", f"train/val/test, {shapes['image_size']} px", time.perf_counter() - began)]
    for model in ("forward", "backward", "infiller"):
        _, seconds = project.stage("train", "shapes", model)
        metrics = json.loads((project.folder / f"metrics/train/shapes-{model}.json").read_text())
        raw.setdefault("train", {})[model] = metrics | {"seconds": seconds}
        what = "infiller" if model == "infiller" else f"{model} captioner"
        value = f"{metrics['tokens_per_second']:,.0f} tokens/s, val perplexity {metrics['best_val_perplexity']:.3f}"
        rows.append(Row("train", f"{what}, {metrics['epochs']} epochs", "measured", value, seconds))
        print(f"  train {model}: {value}, {seconds:.1f} s", flush=True)
    return rows


def check_resume(project: Project, size: Size, device: torch.device, raw: dict) -> list[Row]:
    """Kill the forward captioner's training in its second epoch, run it again, and compare
    its model with the uninterrupted one's (data/models/shapes/forward.pt)."""
    began = time.perf_counter()
    settings = params.load(project.folder / "params.yaml").train.settings("shapes")
    captions = tables.read(project.folder / "data/prepared/shapes/captions.parquet", ["split"]).to_pandas()
    per_epoch = math.ceil((captions["split"] == "train").sum() / settings.batch_size)
    update = per_epoch + per_epoch // 2 + 1  # in the second epoch
    args = ("shapes", "forward", "--model", "resumed/forward.pt")
    item = f"forward captioner killed at update {update} (epoch 2 of {size.epochs}), run again"
    code = project.killed(update, *args)
    if code != -signal.SIGKILL:
        raise Failed(f"resume: the run to be killed ended with {code}, not SIGKILL")
    out, _ = project.stage("train", *args)
    said = "resuming from" in out and "after epoch 1" in out
    whole = torch.load(project.folder / "data/models/shapes/forward.pt", weights_only=True)["state_dict"]
    again = torch.load(project.folder / "resumed/forward.pt", weights_only=True)["state_dict"]
    difference = max((whole[name] - again[name]).abs().max().item() for name in whole)
    same = (
        all(torch.equal(whole[name], again[name]) for name in whole)
        if device.type == "cpu"
        else difference <= RESUME_TOLERANCE
    )
    raw["resume"] = {"killed_at_update": update, "said_resuming": said, "max_difference": difference}
    rule = "equal bit for bit to" if device.type == "cpu" else f"within {RESUME_TOLERANCE:g} of"
    value = f"{'resumed after epoch 1' if said else 'did not say it resumed'}; weights {rule} the uninterrupted "
    value += f"run's (largest difference {difference:.3g})"
    return [Row("resume", item, "pass" if said and same else "fail", value, time.perf_counter() - began)]


def check_decoding(size: Size, device: torch.device, raw: dict) -> list[Row]:
    arguments = ["--device", device.type, "--batches", *map(str, size.batches), "--repeats", str(size.repeats)]
    arguments += ["--methods", *size.methods] if size.methods else []
    began = time.perf_counter()
    measured = decode_benchmark.measure(decode_benchmark.parser().parse_args(arguments))
    seconds = time.perf_counter() - began
    raw["decode"] = {
        "setup": measured.setup,
        "mm_gflops": measured.reference,
        "runs": {
            "/".join(map(str, key)): {
                "blanks_per_second": measured.blanks_per_second(key),
                "gflops": measured.gflops(key),
            }
            for key in measured.seconds
        },
        "seconds": seconds,
    }
    cells = {}
    for key in measured.seconds:
        method, setting, batch = key
        cells.setdefault((method, setting), []).append(f"{batch}: {measured.blanks_per_second(key):,.1f}")
    rows = [Row("decode", measured.setup, "measured", f"torch.mm: {measured.reference:,.1f} GFLOP/s", seconds)]
    rows += [
        Row("decode", f"{method}, {setting} length", "measured", "blanks/s at batch " + ", ".join(values), None)
        for (method, setting), values in cells.items()
    ]
    return rows


def check_features(size: Size, device: torch.device, raw: dict) -> list[Row]:
    arguments = ["--device", device.type, "--images", str(size.images)]
    for option, value in size.features.items():
        arguments += [f"--{option.replace('_', '-')}", str(value)]
    began = time.perf_counter()
    measured = features_benchmark.measure(features_benchmark.parser().parse_args(arguments))
    seconds = time.perf_counter() - began
    raw["features"] = measured | {"seconds": seconds}
    value = (
        f"stage {measured['stage']:,.1f} images/s, backbone alone {measured['backbone']:,.1f}, "
        f"ratio {measured['stage'] / measured['backbone']:.2f}"
    )
    return [Row("features", measured["setup"], "measured", value, seconds)]


def table(rows: list[Row], title: str) -> str:
    lines = [title, "", "| part | what | result | value | seconds |", "|---|---|---|---|---:|"]
    for row in rows:
        seconds = "" if row.seconds is None else f"{row.seconds:.1f}"
        cells = (row.part, row.item, row.result, row.value, seconds)
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def chosen_device(choice: str | None) -> torch.device:
    """The device to check; `cpu` hides any GPU from this process and the stages it starts,
    which take CUDA whenever PyTorch sees it."""
    if choice == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before anything starts CUDA
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError("PyTorch sees no CUDA GPU here; run with --device cpu to check the CPU instead")
    return torch.device("cuda")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default=None, help="default: cuda, which must be there")
    parser.add_argument("--small", action="store_true", help="tiny sizes, for a test on the CPU")
    parser.add_argument(
        "--score", type=Path, default=None, help=f"only score a {FILLS} that a machine without pycocoevalcap made"
    )
    args = parser.parse_args()
    if args.score:
        row, _ = score_fixture(args.score)
        print(table([row], f"The fixture's fills in {args.score}, scored here"))
        sys.exit(1 if row.result == "fail" else 0)
    device = chosen_device(args.device)
    size = SMALL if args.small else FULL
    out = Path(os.environ.get("OUT", "."))
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    machine = provenance.machine(device) | {"name": name, "cpus": os.cpu_count()}
    raw: dict = {"machine": machine, "small": args.small, "seconds": {}}
    rows: list[Row] = []
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as folder:
        project = Project(Path(folder), size)
        for part, check in (
            ("fixture", lambda: check_fixture(device, args.small, out, raw)),
            ("train", lambda: check_training(project, size, raw)),
            ("resume", lambda: check_resume(project, size, device, raw)),
            ("decode", lambda: check_decoding(size, device, raw)),
            ("features", lambda: check_features(size, device, raw)),
        ):
            print(f"{part} ...", flush=True)
            start = time.perf_counter()
            try:
                done = check()
            except Exception as error:  # one part's failure, a bug's too, keeps the others' numbers
                if not isinstance(error, Failed | UserError | OSError):
                    traceback.print_exc()
                done = [Row(part, "could not finish", "fail", f"{type(error).__name__}: {error}", None)]
            raw["seconds"][part] = time.perf_counter() - start
            rows += done
            results = ", ".join(sorted({row.result for row in done}))
            print(f"{part}: {results} ({raw['seconds'][part]:.1f} s)", flush=True)
    passed = all(row.result != "fail" for row in rows)
    total = time.perf_counter() - began
    whole = "pass" if all(row.result != "unscored" for row in rows) else "pass, but the fixture is unscored"
    rows.append(Row("total", "every part", whole if passed else "fail", "", total))
    raw |= {"passed": passed, "total_seconds": total}
    title = (
        f"GPU check on {name} ({device}, torch {machine['torch']}, {machine['cpus']} CPUs, "
        f"{machine['threads']} threads){', --small' if args.small else ''}"
    )
    text = table(rows, title)
    print("\n" + text)
    write_text(out / "gpu_check.md", text)
    write_text(out / "gpu_check.json", json.dumps(raw, indent=1, default=str) + "\n")
    print(f"written: {out / 'gpu_check.md'}, {out / 'gpu_check.json'}")
    if not passed:
        sys.exit(1)


if __name__ == "__main__":
    run(main)
