"""Stage prepare@<dataset>: captions to tokens, and the vocabulary of the train split.

Writes data/prepared/<dataset>/vocab.json (see fillblank/data/text.py),
captions.parquet (see fillblank/data/karpathy.py) and dropped.json, the images and
captions left out (`{"captions": N, "dropped": [{"image_id", "filename", "sentence_id",
"reason"}, ...]}`): all three or none. More than `prepare.max_dropped` of the captions
dropped stops the stage, naming the first few.
"""

import argparse
import json
from collections import Counter
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from fillblank import params as params_module
from fillblank.atomic import atomic_path
from fillblank.data import karpathy, sources
from fillblank.data.text import Vocab
from fillblank.errors import UserError, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sources.NAMES)
    parser.add_argument("--raw", type=Path, default=None, help="default: data/raw/<dataset>")
    parser.add_argument("--out", type=Path, default=None, help="default: data/prepared/<dataset>")
    args = parser.parse_args()
    params = params_module.load()
    raw = args.raw or Path("data/raw") / args.dataset
    out = args.out or Path("data/prepared") / args.dataset

    captions, dropped = karpathy.read(raw / f"dataset_{args.dataset}.json")
    share = len(dropped) / max(1, captions.num_rows + len(dropped))
    if share > params.prepare.max_dropped:
        first = "; ".join(f"image {d['image_id']} ({d['filename']}): {d['reason']}" for d in dropped[: karpathy.SHOWN])
        raise UserError(
            f"{raw}: {len(dropped)} captions or images dropped ({share:.1%}, more than prepare.max_dropped "
            f"{params.prepare.max_dropped:.1%}): {first}"
        )
    splits = Counter(captions["split"].to_pylist())
    train = captions.filter(pc.equal(captions["split"], "train"))["tokens"].to_pylist()
    if not train:
        raise UserError(f"{raw}: no captions in the train split; the vocabulary needs some")
    vocab = Vocab.build(train, params.prepare.min_count)

    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        vocab.save(tmp / "vocab.json")
        pq.write_table(captions, tmp / "captions.parquet")
        (tmp / "dropped.json").write_text(
            json.dumps({"captions": captions.num_rows, "dropped": dropped}, indent=1) + "\n", encoding="utf-8"
        )
    counts = ", ".join(f"{splits[s]} {s}" for s in ("train", "val", "test"))
    print(
        f"{args.dataset}: {len(vocab)} words (min_count {params.prepare.min_count}); captions: {counts}; "
        f"dropped: {len(dropped)} (listed in {out / 'dropped.json'})"
    )


if __name__ == "__main__":
    run(main)
