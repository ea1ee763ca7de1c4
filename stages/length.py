"""Stage length@<dataset>: tune the length rule's bonus of every scale on the validation split.

Reads the models data/models/<dataset>/{forward,backward,infiller}.pt, the vocabulary and
captions of data/prepared/<dataset>/, and the image features data/features/<dataset>.h5.
Blanks the captions of the first `fill.tune_images` validation images at every ratio of
`blanks.ratios` (`tuning.validation_blanks`), gathers each scale's candidate fills of
every length 1 .. `fill.max_length` (fillblank/decode/registry.py), and writes to
data/length/<dataset>.json, per scale, the bonus per word with which score + bonus x length
picks the fills of most CIDEr against the captions of their images, with the CIDEr and
length error it gives (layout: fillblank/decode/length.py).
"""

import argparse
import json
from pathlib import Path

from tqdm import tqdm

from fillblank import evaluate, tables, tuning
from fillblank import params as params_module
from fillblank.atomic import check_writable, write_text
from fillblank.data import sources
from fillblank.data.text import Vocab
from fillblank.decode import length, registry
from fillblank.decode.models import load_models
from fillblank.decode.step import Blanks
from fillblank.errors import UserError, run
from fillblank.features import read_features
from fillblank.provenance import file_sha256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sources.NAMES)
    parser.add_argument(
        "--models", type=Path, default=None, help="folder of the models' checkpoints; default: data/models/<dataset>"
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
    folder = args.models or Path("data/models") / args.dataset
    features_path = args.features or Path("data/features") / f"{args.dataset}.h5"
    out = args.out or length.tuned_path(args.dataset)
    check_writable(out)

    vocab = Vocab.load(prepared / "vocab.json")
    models = load_models(folder, vocab)
    scales = registry.scales()
    if models.infiller is None and (reading := [name for name, one in scales.items() if one.reads_infiller]):
        raise UserError(f"{folder / 'infiller.pt'}: no such file, and scales {', '.join(reading)} read it")
    val = tuning.validation_blanks(prepared, features_path, settings.blanks.ratios, p.tune_images)
    if val.num_rows == 0:
        raise UserError(
            f"{prepared / 'captions.parquet'}: no validation captions of images with features to tune the length rule "
            "on; give fill.length_bonus a number instead of tuned"
        )
    features = read_features(features_path, val["image_id"].to_numpy())
    every = Blanks.of_words(features, val["left"].to_pylist(), val["right"].to_pylist(), vocab)

    readings = {}
    for name, scale in scales.items():
        batches = [every.take(range(at, min(at + p.batch, len(every)))) for at in range(0, len(every), p.batch)]
        parts = [
            scale.candidates(models, batch, p) for batch in tqdm(batches, desc=f"{args.dataset}: {name}", unit="batch")
        ]
        readings[name] = [[mine for part in parts for mine in part[r]] for r in range(len(parts[0]))]
    captions = tables.read(prepared / "captions.parquet", ["image_id", "tokens"], made_by="prepare").to_pandas()
    refs = evaluate.references(captions).loc[val["image_id"].to_numpy()].tolist()
    tuned = tuning.tune(readings, vocab, val, refs)
    trained = {name: file_sha256(folder / f"{name}.pt") for name, model in vars(models).items() if model is not None}
    write_text(out, json.dumps({"blanks": val.num_rows, "models": trained, "scales": tuned}, indent=1) + "\n")
    for name, found in tuned.items():
        print(
            f"{args.dataset}, scale {name}: length bonus {found['length_bonus']} nats per word, CIDEr "
            f"{found['CIDEr']['mean']:.3f} (no bonus: {found['grid']['0']['CIDEr']:.3f}), mean length error "
            f"{found['length_error']['mean']:.2f} words"
        )
    print(f"{args.dataset}: tuned on {val.num_rows} val blanks; written to {out}")


if __name__ == "__main__":
    run(main)
