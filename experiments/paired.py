"""Is one method's lead over another real, or the luck of which test images were drawn?

    python experiments/paired.py . shapes infill bibs
    python experiments/paired.py build/experiments/flickr8k-dev flickr8k infill bibs --metric CIDEr
    python experiments/paired.py build/experiments/flickr8k-dev flickr8k infill infill \
        --against build/experiments/flickr8k-dev-shared --metric CIDEr

With `--against`, method B's fills are those of another run of the same blanks (a variant
in its own folder), so that one method can be held against itself under other params.

A paired bootstrap over test images (Efron and Tibshirani, 1993; Koehn, EMNLP 2004, for
translation metrics): the images of the blank set are drawn with replacement, `--samples`
times, and both methods' fills of the drawn images' blanks are scored on each draw, so that
both see the same captions. Whole images are drawn, not blanks, since an image's five
captions share its references. It prints, per setting and ratio, the difference A - B on
the whole test set and its 95% interval over the draws (2.5th and 97.5th percentiles).
`exact_match` is a share of blanks; `CIDEr` is recomputed on every draw from that draw's
references, as a smaller or other test set would have it (its idf depends on them).

pycocoevalcap's scorer, run anew on each draw, took about a second a draw per method on
2,500 blanks; `DrawnCider` computes the same score from arrays built once, in milliseconds,
so a thousand draws of the whole flickr8k-dev test split take seconds. It is checked
against pycocoevalcap on the whole set of every run before any draw.
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.cider.cider_scorer import precook

from fillblank.evaluate import read_results, references, tokenized


def draws(images: np.ndarray, samples: int, seed: int) -> list[np.ndarray]:
    """The images of each draw: the whole set first, then `samples` draws with replacement."""
    generator = np.random.default_rng(seed)
    return [images, *(generator.choice(images, len(images)) for _ in range(samples))]


def exact(fills: pd.DataFrame, drawn: np.ndarray) -> float:
    """Share of the drawn images' blanks (an image drawn twice counts twice) filled exactly."""
    hits = fills.groupby("image_id")["hit"].agg(["sum", "count"]).loc[drawn]
    return hits["sum"].sum() / hits["count"].sum()


class DrawnCider:
    """pycocoevalcap's CIDEr (CIDEr-D: Vedantam et al., CVPR 2015) of fixed hypotheses on
    any draw of their keys, each key counted as often as it is drawn.

    CIDEr-D weighs each n-gram g of a sentence by its count times w_g = log N - log max(1,
    df_g), N the keys scored and df_g those whose references hold g: only the weights depend
    on the draw. Since w_g >= 0, a term of the score, min(tf_hyp w_g, tf_ref w_g) x tf_ref
    w_g, is min(tf_hyp, tf_ref) tf_ref w_g^2, so every sum in the score is a fixed sparse
    vector times w^2: one `np.bincount` per sum and draw. `gts` and `res` are what
    pycocoevalcap's `Cider.compute_score` reads: tokenized references, one hypothesis, by key.
    """

    ORDERS, SIGMA = 4, 6.0  # pycocoevalcap's defaults, with which fillblank.evaluate scores

    def __init__(self, gts: dict, res: dict):
        self.keys = list(res)
        ids: dict[tuple, int] = {}  # n-gram -> column

        def counts(sentence: str) -> dict[int, tuple[int, int]]:
            """Each n-gram's column: (order - 1, count)."""
            return {ids.setdefault(g, len(ids)): (len(g) - 1, c) for g, c in precook(sentence, self.ORDERS).items()}

        def bigrams(cnts: dict) -> int:  # pycocoevalcap's "length" of a sentence
            return sum(c for n, c in cnts.values() if n == 1)

        hyp, ref, docs, ref_key, ref_weight = [], [], [], [], []
        for k, key in enumerate(self.keys):
            h = counts(res[key][0])
            hyp += [(k * self.ORDERS + n, g, c) for g, (n, c) in h.items()]
            in_refs = set()
            for sentence in gts[key]:
                r, cnts = len(ref_key), counts(sentence)
                ref += [(r * self.ORDERS + n, g, c, min(c, h.get(g, (0, 0))[1]) * c) for g, (n, c) in cnts.items()]
                ref_key.append(k)
                gauss = np.exp(-(float(bigrams(h) - bigrams(cnts)) ** 2) / (2 * self.SIGMA**2))
                ref_weight.append(gauss * 10.0 / (self.ORDERS * len(gts[key])))
                in_refs |= cnts.keys()
            docs += [(k, g) for g in in_refs]
        self.columns = len(ids)
        self.doc_key, self.doc_ngram = np.array(docs).T
        self.hyp_cell, self.hyp_ngram, hyp_tf = np.array(hyp).T
        self.ref_cell, self.ref_ngram, ref_tf, self.shared = np.array(ref).T  # shared: min(tf_hyp, tf_ref) x tf_ref
        self.hyp_tf2, self.ref_tf2 = hyp_tf**2.0, ref_tf**2.0
        self.ref_key, self.ref_weight = np.array(ref_key), np.array(ref_weight)

    def __call__(self, drawn: np.ndarray) -> float:
        """The corpus CIDEr when key i of `keys` is drawn `drawn[i]` times (0: not drawn)."""
        df = np.bincount(self.doc_ngram, weights=drawn[self.doc_key], minlength=self.columns)
        w2 = (np.log(drawn.sum()) - np.log(np.maximum(1.0, df))) ** 2

        def sums(cell, ngram, factor, size):
            return np.bincount(cell, weights=factor * w2[ngram], minlength=size * self.ORDERS).reshape(
                size, self.ORDERS
            )

        hyp_norm = np.sqrt(sums(self.hyp_cell, self.hyp_ngram, self.hyp_tf2, len(self.keys)))
        ref_norm = np.sqrt(sums(self.ref_cell, self.ref_ngram, self.ref_tf2, len(self.ref_key)))
        overlap = sums(self.ref_cell, self.ref_ngram, self.shared, len(self.ref_key))
        norms = hyp_norm[self.ref_key] * ref_norm
        cosine = np.divide(overlap, norms, out=np.zeros_like(overlap), where=norms > 0)
        per_key = np.bincount(self.ref_key, weights=cosine.sum(axis=1) * self.ref_weight, minlength=len(self.keys))
        return float(per_key @ drawn / drawn.sum())


def drawn_cider(gts: dict, res: dict, blanks_of: dict, images: np.ndarray):
    """`score(drawn images)` -> CIDEr of their blanks, as pycocoevalcap would score the drawn
    set with each copy of a twice-drawn image's blanks as keys of their own; checked against
    pycocoevalcap on the whole set first. `images`: the sorted ids drawn from (`np.unique`)."""
    scorer = DrawnCider(gts, res)
    image_of = {blank: image for image in images for blank in blanks_of[image]}
    key_image = np.searchsorted(images, [image_of[key] for key in scorer.keys])  # `images` is sorted

    def score(drawn: np.ndarray) -> float:
        times = np.bincount(np.searchsorted(images, drawn), minlength=len(images))
        return scorer(times[key_image].astype(float))

    whole, expected = score(images), Cider().compute_score(gts, res)[0]
    if not np.isclose(whole, expected, rtol=1e-9, atol=0):
        raise AssertionError(f"DrawnCider gives {whole!r} on the whole set, pycocoevalcap {expected!r}")
    return score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", type=Path, help="a project whose fill stages have run")
    parser.add_argument("dataset")
    parser.add_argument("a", help="method A")
    parser.add_argument("b", help="method B")
    parser.add_argument("--against", type=Path, default=None, help="read method B from this project (default: project)")
    parser.add_argument("--metric", choices=["exact_match", "CIDEr"], default="exact_match")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    fills, blanks, captions = read_results(args.project, args.dataset, [args.a])
    fills_b, blanks_b, _ = read_results(args.against or args.project, args.dataset, [args.b])
    if not blanks_b.equals(blanks):
        raise SystemExit(f"{args.against}: other blanks than {args.project}'s; both must fill the same")
    fills = pd.concat([fills.assign(method="A"), fills_b.assign(method="B")])  # A and B: the same method may be both
    rows = fills.merge(blanks[["blank_id", "image_id", "ratio", "blank"]], on="blank_id")
    rows["hit"] = rows["fill"] == rows["blank"]
    refs = dict(zip(blanks["blank_id"], references(captions).loc[blanks["image_id"]], strict=True))
    interval = f"[95% interval over {args.samples} draws of its images]"
    b = f"{args.b} of {args.against}" if args.against else args.b
    print(f"{args.metric}, {args.a} - {b}, {args.dataset}: whole test set {interval}")
    for (setting, ratio), group in rows.groupby(["setting", "ratio"]):
        if set(group["method"]) != {"A", "B"}:
            continue  # a setting only one of them runs in
        images = np.unique(group["image_id"])
        by_method = {m: group[group["method"] == m] for m in ("A", "B")}
        if args.metric == "CIDEr":
            runs = {m: dict(zip(f["blank_id"], f["sentence"], strict=True)) for m, f in by_method.items()}
            scored = tokenized(refs, runs)
            blanks_of = by_method["A"].groupby("image_id")["blank_id"].agg(list).to_dict()
            score = {m: drawn_cider(*scored[m], blanks_of, images) for m in runs}
        else:
            score = {m: (lambda drawn, f=f: exact(f, drawn)) for m, f in by_method.items()}
        differences = np.array([score["A"](d) - score["B"](d) for d in draws(images, args.samples, args.seed)])
        low, high = np.percentile(differences[1:], [2.5, 97.5])
        counts = f"({len(group) // 2} blanks, {len(images)} images)"
        print(f"{setting:8} {ratio:<5g} {differences[0]:+.4f} [{low:+.4f}, {high:+.4f}]  {counts}")


if __name__ == "__main__":
    main()
