"""The `fillblank` command: fill the blank in a caption of your own image.

    fillblank fill --image photo.jpg --caption "a dog ___ in the snow" [--length 2 | --length auto]
                   [--method bibs] [--top K] [--dataset shapes | --models DIR] [--json]
    fillblank methods

`fill` uses what the pipeline built, found from the current folder (the project root): the
two captioners `data/models/<ds>/{forward,backward}.pt` and the infiller `infiller.pt` (or
`--models DIR`, whose checkpoints say which dataset they were trained on), the vocabulary
`data/prepared/<ds>/vocab.json`, the features file `data/features/<ds>.h5`, read only for
its provenance so that the photo goes through the same backbone, weights and transform as
the training images, the length rule `data/length/<ds>.json` tuned for these models, and
the `fill` section of `params.yaml` (beam width, sweeps, longest fill), as the pipeline's
fill stage uses them. Files of another dataset or of other models are refused.

`--json` prints one object:

    {"dataset": "shapes", "method": "bibs", "caption": "a dog ___ in the snow",
     "left": ["a", "dog"], "right": ["in", "the", "snow"], "length": 2 (null: auto),
     "length_bonus": 1.25 (null with the length given),
     "unknown_words": ["..."],            # read as <unk> by the captioners
     "fills": [{"fill": ["runs"], "sentence": "a dog runs in the snow", "score": -9.1,
                "ranked": -7.85}, ...]}

best first by `ranked`: S(Y) + length_bonus x words (S(Y) with the length given), where
`score` is S(Y) = log P_fwd(Y|I) + log P_bwd(Y|I) of the whole sentence.
"""

import argparse
import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from PIL import Image

from fillblank import decode, images, params
from fillblank.backbones import backbone
from fillblank.checkpoint import read_checkpoint
from fillblank.data import sources
from fillblank.data.text import Vocab, normalise
from fillblank.decode import length as length_rule
from fillblank.decode import registry
from fillblank.decode.models import Models, load_models
from fillblank.decode.step import Blanks, bidirectional, fill_scores
from fillblank.errors import UserError, run
from fillblank.features import opened
from fillblank.provenance import file_sha256

BLANK = re.compile(r"_{3,}")  # "___"; a longer run of underscores is the same blank


@dataclass(frozen=True)
class Caption:
    """A caption split at its blank, in normalised words."""

    left: list[str]
    right: list[str]


def parse_caption(text: str) -> Caption:
    """Split `text` at its one blank; words are normalised as the training captions were."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # bytes that were not UTF-8 reach argv as lone surrogates
        raise UserError("the caption is not UTF-8 text") from None
    parts = BLANK.split(text)
    if len(parts) == 1:
        raise UserError(f"caption {text!r} has no blank: mark the missing words with ___")
    if len(parts) > 2:
        raise UserError(f"caption {text!r} has {len(parts) - 1} blanks: mark one run of missing words with ___")
    return Caption(normalise(parts[0]), normalise(parts[1]))


def unknown_words(caption: Caption, vocab: Vocab) -> list[str]:
    """The caption's words outside `vocab`, each once, in order: the captioners read them as <unk>."""
    return list(dict.fromkeys(w for w in caption.left + caption.right if w not in vocab.index))


def read_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            return images.rgb(image)  # decodes the whole file, so a truncated one fails here
    except FileNotFoundError:
        raise UserError(f"{path}: no such image file") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise UserError(f"{path}: not a readable image ({error})") from None


@dataclass(frozen=True)
class Inputs:
    """Where the pipeline's outputs for one dataset are."""

    dataset: str  # the one the captioners were trained on
    models: Path
    vocab: Path
    features: Path
    length_rule: Path


def locate(args: argparse.Namespace) -> Inputs:
    """The pipeline's files for the dataset of the captioners, each overridable; a missing
    file, or captioners of another dataset than `--dataset`, is one clear line."""
    models = args.models or Path("data/models") / (args.dataset or "shapes")
    missing = [name for name in ("forward.pt", "backward.pt") if not (models / name).is_file()]
    if missing:
        raise UserError(
            f"no trained models in {models} ({' and '.join(missing)} missing): run `dvc repro train` in the project "
            f"root, or point --models at a folder holding forward.pt and backward.pt"
        )
    trained = {
        name: read_checkpoint(models / f"{name}.pt")["config"].get("dataset") for name in ("forward", "backward")
    }
    dataset = trained["forward"]
    if trained["backward"] != dataset or dataset is None:
        raise UserError(f"{models}: the captioners were trained on {trained['forward']} and {trained['backward']}")
    if args.dataset is not None and args.dataset != dataset:
        raise UserError(f"{models}: the captioners were trained on {dataset}, not {args.dataset}; drop --dataset")
    inputs = Inputs(
        dataset,
        models,
        args.vocab or Path("data/prepared") / dataset / "vocab.json",
        args.features or Path("data/features") / f"{dataset}.h5",
        args.length_rule or length_rule.tuned_path(dataset),
    )
    for path, stage in ((inputs.vocab, "prepare"), (inputs.features, "features")):
        if not path.is_file():
            raise UserError(f"{path}: no such file: run `dvc repro {stage}` in the project root, or give its path")
    return inputs


def rule_of(p: params.Fill, entry: registry.Entry, inputs: Inputs) -> params.Fill:
    """`p` with the bonus of the method's scale; a tuned one must have been tuned for these models."""
    chosen = length_rule.for_method(p, entry, inputs.length_rule)
    if length_rule.check(p)[entry.scale] != "tuned":
        return chosen
    tuned_for = json.loads(inputs.length_rule.read_text(encoding="utf-8")).get("models", {})
    for name in ("forward", "backward", *(["infiller"] if entry.reads_infiller else [])):
        if tuned_for.get(name) != file_sha256(inputs.models / f"{name}.pt"):
            raise UserError(
                f"{inputs.length_rule}: tuned for other models than {inputs.models / name}.pt; give --length-rule "
                f"the rule tuned for them (their data/length/<dataset>.json), or a number in fill.length_bonus"
            )
    return chosen


def image_features(image: Image.Image, features_file: Path) -> torch.Tensor:
    """The image's features (1, D) by the backbone, weights and transform recorded in `features_file`."""
    with opened(features_file) as h5:
        recorded = dict(h5.attrs)
    if "backbone" not in recorded or "weights" not in recorded:
        raise UserError(f"{features_file}: records no backbone; re-run `dvc repro features`")
    net = backbone(str(recorded["backbone"]), str(recorded["weights"]))
    for key, here in (("weights_sha256", net.weights_sha256), ("transform", repr(net.transform))):
        if recorded.get(key) != here:
            raise UserError(
                f"{features_file}: records {key} {recorded.get(key)!r}, but {net.name} here gives {here!r}; "
                f"re-run `dvc repro features` so that the images and your photo go through the same network"
            )
    with torch.inference_mode():
        return net.model(net.transform(image)[None])  # shape: (1, D)


def rank(
    entry: registry.Entry, models: Models, blank: Blanks, length: int | None, p: params.Fill, top: int | None
) -> list[tuple[list[int], float]]:
    """Up to `top` fills of the one blank, best first, with their S(Y): those of the method's
    ranker, or its one fill where it has none (`fillblank methods` says which rank). `m_best`
    steers BiBS's search, not only how many fills it returns, so the ranker searches with the
    fill stage's `m_best` (top None: that many fills), and the first fill is the one the fill
    stage writes; only a `top` above it widens the search, whose best may then differ."""
    if entry.ranks is not None:
        return entry.ranks(models, blank, length, p.model_copy(update={"m_best": max(top or 0, p.m_best)}))[0][:top]
    [tokens] = entry.fill(models, blank, length, p)
    [score] = fill_scores(partial(bidirectional, models), blank, [0], [tokens]).tolist()
    return [(tokens, score)]


def fill(args: argparse.Namespace) -> None:
    caption = parse_caption(args.caption)
    p = params.load(args.params).fill
    image = read_image(args.image)
    inputs = locate(args)
    entry = registry.entry(args.method)
    vocab = Vocab.load(inputs.vocab)
    device = decode.device(p.device)
    models = load_models(inputs.models, vocab, device, entry.reads_infiller, inputs.features)
    if args.length is None:  # the method chooses the length, by the rule tuned for these models
        p = rule_of(p, entry, inputs)
    unknown = unknown_words(caption, vocab)
    if unknown:
        print(f"warning: not in the {inputs.dataset} vocabulary, read as <unk>: {', '.join(unknown)}", file=sys.stderr)
    feats = image_features(image, inputs.features).to(device)  # shape: (1, D)
    expected = models.forward.sizes["feature_dim"]
    if feats.shape[1] != expected:
        raise UserError(f"{inputs.features}: gives {feats.shape[1]} features per image, the models read {expected}")
    blank = Blanks.of_words(feats, [caption.left], [caption.right], vocab)

    ranks = args.length is None and entry.ranks is not None  # a list ordered by S(Y) + bonus x words
    per_word = p.length_bonus if ranks else 0.0
    fills = []
    for tokens, score in rank(entry, models, blank, args.length, p, args.top):
        words = vocab.decode(tokens)
        sentence = " ".join(caption.left + words + caption.right)
        fills.append({"fill": words, "sentence": sentence, "score": score, "ranked": score + per_word * len(words)})
    if args.json:
        shown = {"dataset": inputs.dataset, "method": args.method, "caption": args.caption, "left": caption.left}
        shown |= {
            "right": caption.right,
            "length": args.length,
            "length_bonus": None if args.length else p.length_bonus,
        }
        print(json.dumps(shown | {"unknown_words": unknown, "fills": fills}))
        return
    if args.length is not None:
        order = "score: S(Y), higher is better"
    elif ranks:
        order = f"ranked by S(Y) + {p.length_bonus:g} x words, then S(Y); higher is better"
    else:
        order = f"score: S(Y); the length chosen by scale {entry.scale} with {p.length_bonus:g} nats a word"
    length = "length auto" if args.length is None else f"length {args.length}"
    print(f"{' '.join(caption.left + ['___'] + caption.right)}   ({args.method}, {inputs.dataset}, {length}; {order})")
    for i, shown in enumerate(fills, 1):
        marked = " ".join(caption.left + ["[" + " ".join(shown["fill"]) + "]"] + caption.right)
        ranked = f"{shown['ranked']:9.3f}  " if ranks else ""
        print(f"{i:>2}. {ranked}{shown['score']:9.3f}  {marked}")


def methods(args: argparse.Namespace) -> None:
    for name, entry in registry.methods().items():
        settings = " and ".join(entry.settings)
        ranks = "; ranks --top fills" if entry.ranks else ""
        print(f"{name:<13} {entry.description} ({entry.role}; scale {entry.scale}; {settings} length{ranks})")


def length(text: str) -> int | None:
    if text == "auto":
        return None
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a number of words (1, 2, ...) or auto, got {text!r}")
    return int(text)


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return int(text)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="fillblank", description="Fill-in-the-blank image captioning with the captioners the pipeline trained."
    )
    commands = top.add_subparsers(
        dest="command",
        required=True,
        metavar="COMMAND",
        help="fill or methods; `fillblank COMMAND --help` explains each",
    )

    fill_command = commands.add_parser(
        "fill",
        help="fill the blank in a caption of an image",
        description="Fill the blank (___) in a caption of an image and print the best fills with their scores "
        "S(Y) = log P_fwd(Y|I) + log P_bwd(Y|I). Run it in the project root, where `dvc repro` built data/.",
    )
    option = fill_command.add_argument
    option("--image", type=Path, required=True, help="the image (any format Pillow reads)")
    option("--caption", required=True, help='the caption, with ___ where words are missing: "a dog ___ in the snow"')
    option(
        "--length",
        type=length,
        default=None,
        metavar="N|auto",
        help="how many words the blank holds, or auto to let the method choose (default: auto)",
    )
    option(
        "--method",
        choices=list(registry.methods()),
        default="bibs",
        help="how to search for the fill (default: bibs); `fillblank methods` describes each",
    )
    option(
        "--top",
        type=positive,
        default=None,
        metavar="K",
        help="how many fills to print, best first (default: fill.m_best, as the fill stage searches); methods that "
        "rank (see `fillblank methods`) give several, the others one; above fill.m_best it widens BiBS's search",
    )
    option(
        "--dataset",
        choices=sources.NAMES,
        default=None,
        help="whose models to use (default: shapes; with --models, the dataset their checkpoints name)",
    )
    option(
        "--models",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder holding forward.pt and backward.pt (default: data/models/<dataset>)",
    )
    option(
        "--length-rule",
        type=Path,
        default=None,
        metavar="FILE",
        help="the length rule tuned for these models, read with --length auto (default: data/length/<dataset>.json)",
    )
    option(
        "--vocab",
        type=Path,
        default=None,
        metavar="FILE",
        help="the vocabulary the models were trained with (default: data/prepared/<dataset>/vocab.json)",
    )
    option(
        "--features",
        type=Path,
        default=None,
        metavar="FILE",
        help="the dataset's features file, whose recorded backbone, weights and transform the image goes through "
        "(default: data/features/<dataset>.h5)",
    )
    option(
        "--params",
        type=Path,
        default=Path("params.yaml"),
        metavar="FILE",
        help="params whose `fill` section sets the beam width, sweeps and longest fill (default: params.yaml)",
    )
    option("--json", action="store_true", help="print one JSON object instead of lines")
    fill_command.set_defaults(run=fill)

    methods_command = commands.add_parser(
        "methods", help="list the methods that fill blanks", description="List the methods that fill blanks."
    )
    methods_command.set_defaults(run=methods)
    return top


@contextmanager
def one_thread() -> Iterator[None]:
    """One image and one blank make many small operations: waking threads for them costs
    more than it saves (docs/decoding.md has the measurement)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    with one_thread():
        run(lambda: args.run(args))
