"""Stages train@<dataset>-<direction> and train_infiller@<dataset>: fit one model and record how its training went.

The model is the forward or the backward captioner (fillblank/captioner.py, settings `train`),
or, for direction `infiller`, the context encoder for captions (fillblank/infiller.py,
settings `infiller`); both go through the one loop of fillblank/train/loop.py.

Reads data/prepared/<dataset>/{vocab.json,captions.parquet} and data/features/<dataset>.h5.
Writes data/models/<dataset>/<direction>.pt (layout: fillblank/checkpoint.py) and
metrics/train/<dataset>-<direction>.{json,csv} (metrics and curves: fillblank/train/loop.py).

While it runs, data/models/<dataset>/<direction>.resume.pt holds the last finished epoch:
stop it any way at all (kill -9 included) and run it again (`dvc repro`) to go on from
there. That file is deliberately no DVC output. DVC deletes outputs before re-running a
stage; `persist: true` would keep it, but DVC would then also cache, push and check out
every half-trained state with the commits, and demand the file exist after a finished
run. Instead the file names the settings and input hashes it belongs to, is used only
when they match, and is removed once the model is written.

Several processes: `torchrun --nproc_per_node N -m stages.train <dataset> <direction>`.
"""

import argparse
import json
from pathlib import Path

from fillblank import distributed
from fillblank import params as params_module
from fillblank.atomic import check_writable, write_text
from fillblank.checkpoint import save_checkpoint
from fillblank.data import sources
from fillblank.errors import run
from fillblank.train.captioners import DIRECTIONS, examples, fit_captioner
from fillblank.train.data import load_data
from fillblank.train.infiller import fit_infiller
from fillblank.train.loop import curves_csv

EXAMPLES = 5  # greedy captions printed as a sanity check of the finished model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sources.NAMES)
    parser.add_argument("direction", choices=[*DIRECTIONS, "infiller"])
    parser.add_argument("--prepared", type=Path, default=None, help="default: data/prepared/<dataset>")
    parser.add_argument("--features", type=Path, default=None, help="default: data/features/<dataset>.h5")
    parser.add_argument("--model", type=Path, default=None, help="default: data/models/<dataset>/<direction>.pt")
    parser.add_argument(
        "--metrics",
        type=Path,
        default=None,
        help="default: metrics/train/<dataset>-<direction>.json, or <model>.metrics.json beside --model when given",
    )
    args = parser.parse_args()
    params = params_module.load()
    infilling = args.direction == "infiller"
    settings = (params.infiller if infilling else params.train).settings(args.dataset)
    prepared = args.prepared or Path("data/prepared") / args.dataset
    features = args.features or Path("data/features") / f"{args.dataset}.h5"
    model_path = args.model or Path("data/models") / args.dataset / f"{args.direction}.pt"
    # A model trained elsewhere keeps its metrics beside it, not over the pipeline's.
    metrics = args.metrics or (
        model_path.with_suffix(".metrics.json")
        if args.model
        else Path("metrics/train") / f"{args.dataset}-{args.direction}.json"
    )
    resume = model_path.with_suffix(".resume.pt")
    check_writable(model_path, metrics)  # before hours of training, not after

    with distributed.group():
        data = load_data(prepared / "vocab.json", prepared / "captions.parquet", features, args.direction)
        result = (fit_infiller if infilling else fit_captioner)(settings, data, resume)
        if distributed.rank_world()[0] != 0:
            return
    save_checkpoint(model_path, result.model, {"dataset": args.dataset, **result.config}, data.vocab)
    write_text(metrics.with_suffix(".csv"), curves_csv(result.history))
    summary = result.metrics()
    write_text(metrics, json.dumps(summary, indent=1) + "\n")
    resume.unlink(missing_ok=True)
    print(
        f"{args.dataset} {args.direction}: val perplexity {summary['best_val_perplexity']:.3f} at epoch "
        f"{summary['best_epoch']} of {summary['epochs']}, {summary['tokens_per_second']:.0f} tokens/s"
    )
    if not infilling:
        print("greedy captions:\n" + "\n".join(examples(result.model, data, EXAMPLES)))


if __name__ == "__main__":
    run(main)
