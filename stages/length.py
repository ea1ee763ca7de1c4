"""Stage length@<dataset>: tune the length rule's bonus on the validation split.

Reads the captioners data/models/<dataset>/{forward,backward}.pt, the vocabulary and
captions of data/prepared/<dataset>/, and the image features data/features/<dataset>.h5.
Blanks the captions of the first `fill.tune_images` validation images at every ratio of
`blanks.ratios` (`length.validation_blanks`), fills each blank at every length
1 .. `fill.max_length` as `bibs` does, and writes to data/length/<dataset>.json the bonus
per word with which S(Y) + bonus x length picks the fills of most CIDEr against the
captions of their images (fillblank/decode/length.py), with the CIDEr and the mean length
error of every bonus tried.
"""

import argparse
import json
from pathlib import Path

from tqdm import tqdm

from fillblank import evaluate, tables
from fillblank import features as image_features
from fillblank import params as params_module
from fillblank.atomic import write_text
from fillblank.data import sources
from fillblank.data.text import Vocab
from fillblank.decode import length
from fillblank.decode.step import Blanks
from fillblank.errors import UserError, run
from fillblank.model import load_models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sources.NAMES)
    parser.add_argument(
        "--models", type=Path, default=None, help="folder of forward.pt and backward.pt; default: data/models/<dataset>"
    )
    parser.add_argument(
        "--prepared",
        type=Path,
        default=None,
        help="folder of vocab.json and captions.parquet; default: data/prepared/<dataset>",
    )
    parser.add_argument("--features", type=Path, default=None, help="default: data/features/<dataset>.h5")
    parser.add_argument("--out", type=Path, default=None, help="default: data/length/<dataset>.json")
    args = parser.parse_args()
    settings = params_module.load()
    p = settings.fill
    prepared = args.prepared or Path("data/prepared") / args.dataset
    out = args.out or length.tuned_path(args.dataset)

    if not (prepared / "vocab.json").is_file():
        raise UserError(f"{prepared / 'vocab.json'}: no such file (run the prepare stage first)")
    vocab = Vocab.load(prepared / "vocab.json")
    models = load_models(args.models or Path("data/models") / args.dataset, vocab)
    features_path = args.features or Path("data/features") / f"{args.dataset}.h5"
    val = length.validation_blanks(prepared, features_path, settings.blanks.ratios, p.tune_images)
    if val.num_rows == 0:
        raise UserError(
            f"{prepared / 'captions.parquet'}: no validation captions of images with features to tune the length rule on; "
            "give fill.length_bonus a number instead of tuned"
        )
    features = image_features.read(features_path, val["image_id"].to_numpy())
    left, right = (val[name].to_pylist() for name in ("left", "right"))
    every = Blanks(features, [vocab.ids(words) for words in left], [vocab.ids(words) for words in right])

    seen = []
    for at in tqdm(range(0, len(every), p.batch), desc=f"{args.dataset}: bibs at every length", unit="batch"):
        seen.extend(length.candidates(models, every.take(range(at, min(at + p.batch, len(every)))), p))
    captions = tables.read(prepared / "captions.parquet", ["image_id", "tokens"], made_by="prepare").to_pandas()
    tuned = length.tune(seen, vocab, val, evaluate.references(captions).loc[val["image_id"].to_numpy()].tolist())
    write_text(out, json.dumps(tuned, indent=1) + "\n")
    print(
        f"{args.dataset}: length bonus {tuned['length_bonus']} nats per word, CIDEr {tuned['CIDEr']:.3f} (no bonus: "
        f"{tuned['cider'][0.0]:.3f}), mean length error {tuned['length_error']:.2f} words over {tuned['blanks']} val blanks; "
        f"written to {out}"
    )


if __name__ == "__main__":
    run(main)
