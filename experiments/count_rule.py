"""Does a length nearer the true one give better fills? The visible-word-count rule, end to end:

    python experiments/count_rule.py build/experiments/flickr8k-dev flickr8k bibs fb_rerank infill

`experiments/length_rules.py` found that the median length removed from validation blanks
that leave the same number of words visible comes nearer the true length than the word
bonus does. This script fills the test blanks of the project at `project` that way: each
blank's length is that median (fitted on the validation blanks of the first
`fill.tune_images` images, as stage length tunes the bonus; a visible count never seen
takes the nearest seen one), and each method named fills it as if that length were known.
It prints, per ratio, the mean length error and the CIDEr of those fills, with both as the
project's own unknown-length fills have them (by the word bonus of each method's scale), and
each CIDEr as a share of `bibs`'s with the length known.
"""

import argparse
import os
from pathlib import Path

import pandas as pd

from fillblank import decode, tables, tuning
from fillblank import params as params_module
from fillblank.data.text import Vocab
from fillblank.decode import length, registry
from fillblank.decode.models import load_models
from fillblank.decode.step import Blanks
from fillblank.evaluate import evaluate, read_results
from fillblank.features import read_features
from fillblank.params import Fill


def count_medians(dataset: str, p: Fill) -> dict[int, int]:
    """The median removed length (at most `p.max_length`) by visible word count, over the tuning blanks."""
    ratios = params_module.load().blanks.ratios
    val = tuning.validation_blanks(
        Path("data/prepared") / dataset, Path("data/features") / f"{dataset}.h5", ratios, p.tune_images
    ).to_pandas()
    visible = val["left"].map(len) + val["right"].map(len)
    removed = val["blank"].map(len).clip(upper=p.max_length)
    return {int(v): int(m) for v, m in removed.groupby(visible).median().items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("project", type=Path, help="a project folder after `dvc repro` (build/experiments/<name>)")
    parser.add_argument("dataset")
    parser.add_argument(
        "methods", nargs="+", help="methods that run with the length known, whose fills the project has"
    )
    args = parser.parse_args()
    os.chdir(args.project)
    p = length.for_method(params_module.load().fill, registry.entry("bibs"), length.tuned_path(args.dataset))
    medians = count_medians(args.dataset, p)
    seen = sorted(medians)

    vocab = Vocab.load(Path("data/prepared") / args.dataset / "vocab.json")
    models = load_models(Path("data/models") / args.dataset, vocab)
    test = tables.read(
        Path("data/blanks") / f"{args.dataset}.parquet",
        ["blank_id", "image_id", "left", "blank", "right"],
        made_by="blanks",
    )
    left, right = test["left"].to_pylist(), test["right"].to_pylist()
    chosen = [medians[min(seen, key=lambda v: (abs(v - len(a) - len(b)), v))] for a, b in zip(left, right, strict=True)]
    features = read_features(Path("data/features") / f"{args.dataset}.h5", test["image_id"].to_numpy())
    every = Blanks.of_words(features, left, right, vocab)

    committed, blank_set, captions = read_results(Path("."), args.dataset, args.methods)
    rows = []
    for method in args.methods:
        for blank_id, a, b, filled in zip(
            test["blank_id"].to_pylist(), left, right, decode.fill(method, models, every, chosen, p), strict=True
        ):
            words = vocab.decode(filled.tokens)
            rows.append(
                {
                    "blank_id": blank_id,
                    "setting": "unknown",
                    "fill": words,
                    "sentence": " ".join(a + words + b),
                    "score": filled.score,
                    "length": len(words),
                    "seconds": filled.seconds,
                    "method": method,
                }
            )
    known = committed[committed["setting"] == "known"]
    by_count = evaluate(pd.concat([known, pd.DataFrame(rows)], ignore_index=True), blank_set, captions)["unknown"]
    own = evaluate(committed, blank_set, captions)
    bibs_known = own["known"].get("bibs")
    fitted = f"fitted on {p.tune_images or 'all'} validation images"
    print(f"{args.dataset}: lengths by visible word count, {fitted}; {medians}")
    for method in args.methods:
        for ratio, new in by_count[method].items():
            old = own["unknown"][method][ratio]
            share = (
                ""
                if bibs_known is None
                else (
                    f", {new['CIDEr'] / bibs_known[ratio]['CIDEr']:.1%} of bibs known "
                    f"(own: {old['CIDEr'] / bibs_known[ratio]['CIDEr']:.1%})"
                )
            )
            print(
                f"  {method:10s} {ratio:>4s}: length error {new['length_error']:.2f} (own: {old['length_error']:.2f}), "
                f"CIDEr {new['CIDEr']:.3f} (own: {old['CIDEr']:.3f}){share}"
            )


if __name__ == "__main__":
    main()
