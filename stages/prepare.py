"""Stage prepare@<dataset>: captions to tokens, and the vocabulary of the train split.

Writes data/prepared/<dataset>/vocab.json (see fillblank/data/text.py),
captions.parquet (see fillblank/data/karpathy.py), images.parquet (the images to extract
features of, `image_id` and `filename` sorted by id: what stage features reads, so that
editing a caption's text leaves the features alone) and dropped.json, the images and
captions left out (`{"captions": N, "dropped": [{"image_id", "filename", "sentence_id",
"reason"}, ...]}`): all four or none. More than `prepare.max_dropped` of the captions
dropped stops the stage, naming the first few; so does an empty split, which a later
stage would find only after hours (train and val train the models, test is blanked).
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

# Every split a later stage needs, and what for.
SPLITS = {
    "train": "the vocabulary and the models are learnt from it",
    "val": "training stops early on it, and the length rule is tuned on it",
    "test": "the blank sets are cut from it",
}


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
    if empty := [split for split in SPLITS if not splits[split]]:
        raise UserError(f"{raw}: no captions in the {' and '.join(empty)} split; {SPLITS[empty[0]]}")
    vocab = Vocab.build(
        captions.filter(pc.equal(captions["split"], "train"))["tokens"].to_pylist(), params.prepare.min_count
    )
    images = captions.group_by(["image_id", "filename"]).aggregate([]).sort_by("image_id")

    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        vocab.save(tmp / "vocab.json")
        pq.write_table(captions, tmp / "captions.parquet")
        pq.write_table(images, tmp / "images.parquet")
        (tmp / "dropped.json").write_text(
            json.dumps({"captions": captions.num_rows, "dropped": dropped}, indent=1) + "\n", encoding="utf-8"
        )
    counts = ", ".join(f"{splits[split]} {split}" for split in SPLITS)
    print(
        f"{args.dataset}: {len(vocab)} words (min_count {params.prepare.min_count}); captions: {counts}; "
        f"dropped: {len(dropped)} (listed in {out / 'dropped.json'})"
    )


if __name__ == "__main__":
    run(main)
