"""Stage fill@<dataset>-<method>: fill every blank of the blank set with one method.

Reads the two captioners data/models/<dataset>/{forward,backward}.pt and, for a method
that reads it (an `infiller`, fillblank/decode/registry.py), the infiller infiller.pt beside
them, the vocabulary data/prepared/<dataset>/vocab.json, the image features
data/features/<dataset>.h5, the blank set data/blanks/<dataset>.parquet, and the length
rule's tuned bonuses data/length/<dataset>.json when `fill.length_bonus` is `tuned` for the
method's scale. Writes data/fills/<dataset>/<method>.parquet (layout:
fillblank/decode/__init__.py): each blank filled with its length given, then with its
length unknown (`bibs_unknown`: unknown only).

The models decode on `fill.device`. Under `torchrun --nproc_per_node N -m stages.fill
<dataset> <method>` each process fills a share of the batches (on its own GPU, if any),
and the first writes the same table one process would.
"""

import argparse
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from fillblank import decode, distributed, tables
from fillblank import params as params_module
from fillblank.atomic import atomic_path, check_writable
from fillblank.data import sources
from fillblank.data.text import Vocab
from fillblank.decode import length, registry
from fillblank.decode.models import load_models
from fillblank.errors import run
from fillblank.features import read_features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sources.NAMES)
    parser.add_argument("method")
    parser.add_argument(
        "--models",
        type=Path,
        default=None,
        help="folder of forward.pt, backward.pt and infiller.pt; default: data/models/<dataset>",
    )
    parser.add_argument("--vocab", type=Path, default=None, help="default: data/prepared/<dataset>/vocab.json")
    parser.add_argument("--features", type=Path, default=None, help="default: data/features/<dataset>.h5")
    parser.add_argument("--blanks", type=Path, default=None, help="default: data/blanks/<dataset>.parquet")
    parser.add_argument(
        "--length", type=Path, default=None, help="the tuned length rule; default: data/length/<dataset>.json"
    )
    parser.add_argument("--out", type=Path, default=None, help="default: data/fills/<dataset>/<method>.parquet")
    args = parser.parse_args()
    entry = registry.entry(args.method)
    p = length.for_method(params_module.load().fill, entry, args.length or length.tuned_path(args.dataset))
    out = args.out or Path("data/fills") / args.dataset / f"{args.method}.parquet"
    vocab = Vocab.load(args.vocab or Path("data/prepared") / args.dataset / "vocab.json")
    check_writable(out)  # before the decoding, not after

    with distributed.group():
        device = decode.device(p.device)
        models = load_models(args.models or Path("data/models") / args.dataset, vocab, device, entry.reads_infiller)
        table = tables.read(
            args.blanks or Path("data/blanks") / f"{args.dataset}.parquet",
            ["blank_id", "image_id", "left", "blank", "right"],
            made_by="blanks",
        )
        features = read_features(
            args.features or Path("data/features") / f"{args.dataset}.h5", table["image_id"].to_numpy()
        )
        trained_on = {name: model.config.get("provenance") for name, model in vars(models).items() if model is not None}
        filled = decode.fill_table(args.method, models, vocab, table, features.to(device), p, trained_on)
        if distributed.rank_world()[0] != 0:
            return

    removed = pc.mean(pc.list_value_length(table["blank"])).as_py()
    for setting in entry.settings:
        rows = filled.filter(pc.equal(filled["setting"], setting))
        lengths = f", length {pc.mean(rows['length']).as_py():.2f} (removed: {removed:.2f})"
        print(
            f"{args.dataset} {args.method}, {setting} length: mean S(Y) {pc.mean(rows['score']).as_py():.4f}"
            f"{lengths if setting == 'unknown' else ''} over {rows.num_rows} blanks"
        )
    with atomic_path(out) as tmp:
        pq.write_table(filled, tmp)


if __name__ == "__main__":
    run(main)
