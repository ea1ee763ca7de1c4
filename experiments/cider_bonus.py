"""Would a length bonus tuned on CIDEr, not on the length error, lose less to the known length?

    python experiments/cider_bonus.py build/experiments/flickr8k-dev flickr8k

Stage length@<dataset> tunes the length rule's bonus (fillblank/decode/length.py) so that
the lengths it chooses come nearest the true ones on the validation blanks, and
experiments/count_rule.py found that a nearer length need not give more CIDEr. This script
tunes the bonus on CIDEr instead, on the same validation blanks (the captions of the first
`fill.tune_images` validation images, cut at every ratio): `bibs` searches each blank once
at every length 1 .. `fill.max_length`, and each bonus from 0 to 5 nats per word picks among the
fills it scored as `bibs` does with the length unknown. It prints, per bonus, the mean
length error and the CIDEr at each ratio, and `bibs`'s CIDEr there with the length known.
The bonus of highest mean CIDEr over the ratios then fills the test blanks of the project
at `project` with `bibs` and `bibs_unknown`, length unknown; their CIDEr is printed beside
the project's own fills, each as a share of `bibs`'s with the length known.
"""

import argparse
import os
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from fillblank import decode, tables
from fillblank import features as image_features
from fillblank import params as params_module
from fillblank.data.text import Vocab
from fillblank.decode import bibs, length
from fillblank.decode.step import Blanks
from fillblank.evaluate import evaluate, read_results, references, score
from fillblank.model import load_models

METHODS = ("bibs", "bibs_unknown")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("project", type=Path, help="a project folder after `dvc repro` (build/experiments/<name>)")
    parser.add_argument("dataset")
    args = parser.parse_args()
    os.chdir(args.project)
    settings = params_module.load()
    p = length.resolved(settings.fill, length.tuned_path(args.dataset))
    vocab = Vocab.load(Path("data/prepared") / args.dataset / "vocab.json")
    models = load_models(Path("data/models") / args.dataset, vocab)

    features_path = Path("data/features") / f"{args.dataset}.h5"
    val = length.validation_blanks(Path("data/prepared") / args.dataset, features_path, settings.blanks.ratios, p.tune_images)
    left, blank, right = (val[name].to_pylist() for name in ("left", "blank", "right"))
    features = image_features.read(features_path, val["image_id"].to_numpy())
    every = Blanks(features, [vocab.ids(words) for words in left], [vocab.ids(words) for words in right])
    seen = [s for at in tqdm(range(0, len(every), p.batch), desc="bibs at every length", unit="batch")
            for s in length.candidates(models, every.take(range(at, min(at + p.batch, len(every)))), p)]
    known = [vocab.decode(f.tokens) for f in decode.fill("bibs", models, every, [len(b) for b in blank], p)]

    captions = tables.read(Path("data/prepared") / args.dataset / "captions.parquet", ["image_id", "tokens"], made_by="prepare").to_pandas()
    refs = dict(enumerate(references(captions).loc[val["image_id"].to_numpy()]))
    ratios = sorted(set(val["ratio"].to_pylist()))
    at_ratio = {r: [i for i, x in enumerate(val["ratio"].to_pylist()) if x == r] for r in ratios}

    def runs(fills: list[list[str]], name) -> dict:
        return {(name, r): {i: " ".join(left[i] + fills[i] + right[i]) for i in index} for r, index in at_ratio.items()}

    chosen = {bonus: [vocab.decode(bibs.ranked(s, 1, bonus)[0][0]) for s in seen] for bonus in length.GRID}
    cider = {key: value["CIDEr"] for key, value in score(refs, runs(known, "known") | {
        key: run for bonus, fills in chosen.items() for key, run in runs(fills, bonus).items()}).items()}
    print(f"{len(val)} validation blanks; bibs, length known: CIDEr " + " / ".join(f"{cider['known', r]:.3f}" for r in ratios))
    print(f"{'bonus':>6s}  length error {' / '.join(map(str, ratios))}  CIDEr (share of known)")
    for bonus, fills in chosen.items():
        errors = [sum(abs(len(fills[i]) - len(blank[i])) for i in index) / len(index) for index in at_ratio.values()]
        print(f"{bonus:6.2f}  " + " / ".join(f"{e:.2f}" for e in errors) + "   " +
              " / ".join(f"{cider[bonus, r]:.3f} ({cider[bonus, r] / cider['known', r]:.1%})" for r in ratios))
    best = max(length.GRID, key=lambda bonus: (sum(cider[bonus, r] for r in ratios), -bonus))
    print(f"highest mean CIDEr: bonus {best} (stage length's, by the length error: {p.length_bonus})")

    committed, blank_set, test_captions = read_results(Path("."), args.dataset, METHODS)
    test = tables.read(Path("data/blanks") / f"{args.dataset}.parquet", ["blank_id", "image_id", "left", "blank", "right"], made_by="blanks")
    test_features = image_features.read(features_path, test["image_id"].to_numpy())
    tuned = p.model_copy(update={"length_bonus": best})
    new = pd.concat([decode.fill_table(method, models, vocab, test, test_features, tuned, {}).to_pandas().assign(method=method)
                     for method in METHODS], ignore_index=True)
    new["fill"] = new["fill"].map(list)  # as `read_fills` gives it
    by_cider = evaluate(pd.concat([committed[committed["setting"] == "known"], new[new["setting"] == "unknown"]], ignore_index=True),
                        blank_set, test_captions)
    own = evaluate(committed, blank_set, test_captions)
    bibs_known = own["known"]["bibs"]
    print(f"test blanks, length unknown, bonus {best} against the project's {p.length_bonus}:")
    for method in METHODS:
        for ratio, now in by_cider["unknown"][method].items():
            old = own["unknown"][method][ratio]
            print(f"  {method:12s} {ratio:>4s}: length error {now['length_error']:.2f} (own: {old['length_error']:.2f}), "
                  f"CIDEr {now['CIDEr']:.3f} (own: {old['CIDEr']:.3f}), {now['CIDEr'] / bibs_known[ratio]['CIDEr']:.1%} "
                  f"of bibs known (own: {old['CIDEr'] / bibs_known[ratio]['CIDEr']:.1%})")


if __name__ == "__main__":
    main()
