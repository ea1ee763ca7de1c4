"""Is one method's lead over another real, or the luck of which test images were drawn?

    python experiments/paired.py . shapes infill bibs
    python experiments/paired.py build/experiments/flickr8k-dev flickr8k infill bibs --metric CIDEr

A paired bootstrap over test images (Efron and Tibshirani, 1993; Koehn, EMNLP 2004, for
translation metrics): the images of the blank set are drawn with replacement, `--samples`
times, and both methods' fills of the drawn images' blanks are scored on each draw, so that
both see the same captions. Whole images are drawn, not blanks, since an image's five
captions share its references. It prints, per setting and ratio, the difference A - B on
the whole test set and its 95% interval over the draws (2.5th and 97.5th percentiles).
`exact_match` is a share of blanks; `CIDEr` is recomputed on every draw from that draw's
references, as a smaller or other test set would have it (its idf depends on them).
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from pycocoevalcap.cider.cider import Cider

from fillblank.evaluate import read_results, references, tokenized


def draws(images: np.ndarray, samples: int, seed: int) -> list[np.ndarray]:
    """The images of each draw: the whole set first, then `samples` draws with replacement."""
    generator = np.random.default_rng(seed)
    return [images, *(generator.choice(images, len(images)) for _ in range(samples))]


def exact(fills: pd.DataFrame, drawn: np.ndarray) -> float:
    """Share of the drawn images' blanks (an image drawn twice counts twice) filled exactly."""
    hits = fills.groupby("image_id")["hit"].agg(["sum", "count"]).loc[drawn]
    return hits["sum"].sum() / hits["count"].sum()


def cider(gts: dict, res: dict, blanks_of: dict, drawn: np.ndarray) -> float:
    """CIDEr of the drawn images' blanks, each copy of a twice-drawn image a key of its own."""
    keys = [(copy, blank) for copy, image in enumerate(drawn) for blank in blanks_of[image]]
    return float(Cider().compute_score({k: gts[k[1]] for k in keys}, {k: res[k[1]] for k in keys})[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", type=Path, help="a project whose fill stages have run")
    parser.add_argument("dataset")
    parser.add_argument("a", help="method A")
    parser.add_argument("b", help="method B")
    parser.add_argument("--metric", choices=["exact_match", "CIDEr"], default="exact_match")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    fills, blanks, captions = read_results(args.project, args.dataset, [args.a, args.b])
    rows = fills.merge(blanks[["blank_id", "image_id", "ratio", "blank"]], on="blank_id")
    rows["hit"] = rows["fill"] == rows["blank"]
    refs = dict(zip(blanks["blank_id"], references(captions).loc[blanks["image_id"]]))
    print(f"{args.metric}, {args.a} - {args.b}, {args.dataset}: whole test set [95% interval over {args.samples} draws of its images]")
    for (setting, ratio), group in rows.groupby(["setting", "ratio"]):
        if set(group["method"]) != {args.a, args.b}:
            continue  # a setting only one of them runs in
        images = np.unique(group["image_id"])
        by_method = {m: group[group["method"] == m] for m in (args.a, args.b)}
        if args.metric == "CIDEr":
            runs = {m: dict(zip(f["blank_id"], f["sentence"])) for m, f in by_method.items()}
            scored = tokenized(refs, runs)
            blanks_of = by_method[args.a].groupby("image_id")["blank_id"].agg(list).to_dict()
            score = {m: (lambda drawn, m=m: cider(*scored[m], blanks_of, drawn)) for m in runs}
        else:
            score = {m: (lambda drawn, f=f: exact(f, drawn)) for m, f in by_method.items()}
        differences = np.array([score[args.a](d) - score[args.b](d) for d in draws(images, args.samples, args.seed)])
        low, high = np.percentile(differences[1:], [2.5, 97.5])
        print(f"{setting:8} {ratio:<5g} {differences[0]:+.4f} [{low:+.4f}, {high:+.4f}]  ({len(group) // 2} blanks, {len(images)} images)")


if __name__ == "__main__":
    main()
