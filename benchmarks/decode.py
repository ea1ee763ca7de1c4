"""Decoding speed on captioners of Flickr8k size, random or trained.

Prints, for each method, setting (length known or unknown) and batch of blanks, blanks per
second (batching should make it grow with the batch) and the FLOP rate of the captioner's
steps against a plain `torch.mm` of the decoder's shape on this machine; then, from the same
run, each method's unknown-length time over its known-length time (target: at most 3), and
the time of BiBS over that of forward beam search (target: at most 4), each beside the ratio
of the work they ask of the captioners (rows through `step`): where the steps are already
near the FLOP rate of `torch.mm`, a work ratio above a target says the target cannot be met
without changing what the method computes. Every method fills the same
blanks; each time is the best of `--repeats` runs, the methods taking turns, as this
machine's speed drifts.

The captioner is `fillblank.captioner.Captioner` (hidden 512, embed 512, vocabulary 2,500,
features 1,280 as efficientnet_lite0 gives) and the infiller `fillblank.infiller.Infiller` at
the `infiller` sizes of params.yaml for flickr8k, the captions have 12 words and the blanks are
cut at ratio 0.5 (6 words), beam 7; the other settings are the `fill` section of
params.yaml, on the device of `--device` (default: `fill.device`). A random captioner is
the worst case for BiBS: its beams never settle, so every blank runs all `fill.sweeps` sweeps.
`--dataset flickr8k` measures instead the pipeline's trained captioners of that dataset
(data/models/flickr8k, after `dvc repro`) on its test blanks at ratio 0.5, those of the most
common length, where BiBS stops each blank once its sweeps find nothing new.

    python benchmarks/decode.py [--dataset flickr8k] [--batches 1 8 32] [--methods forward bibs] [--threads 2]
                                [--device cuda] [--sweeps 2] [--m-best 3] [--length-bonus 2]
"""

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from fillblank import decode, params, tables
from fillblank.blanks import cut
from fillblank.captioner import Captioner
from fillblank.data.text import SPECIALS, Vocab
from fillblank.decode import length as length_rule
from fillblank.decode.models import Models, load_models
from fillblank.decode.registry import Entry, methods
from fillblank.decode.step import Blanks
from fillblank.features import read_features
from fillblank.infiller import Infiller
from fillblank.params import Fill
from fillblank.train.captioners import DIRECTIONS

VOCAB, HIDDEN, EMBED, FEATURES, WORDS, RATIO, BEAM = 2500, 512, 512, 1280, 12, 0.5, 7
RANDOM_BONUS = 2.0  # nats per word for random captioners: flickr8k-dev's tuned bonus


class Counted:
    """A captioner's step interface that counts the rows it computes."""

    def __init__(self, model: Captioner):
        self.model, self.rows = model, 0

    def init(self, images):
        return self.model.init(images)

    def step(self, tokens, state):
        self.rows += tokens.shape[0]
        return self.model.step(tokens, state)


def step_flops(sizes: dict) -> int:
    """Multiply-adds x 2 of one step of one row: the LSTM's gates and the output layer."""
    return 2 * (4 * sizes["hidden"] * (sizes["embed"] + sizes["hidden"]) + sizes["hidden"] * sizes["vocab_size"])


def mm_gflops(rows: int, hidden: int, vocab: int, device: torch.device, seconds: float = 2.0) -> float:
    """GFLOP/s of torch.mm at the decoder's shape: (rows, hidden) x (hidden, vocabulary)."""
    a, b = torch.randn(rows, hidden, device=device), torch.randn(hidden, vocab, device=device)
    torch.mm(a, b)
    synchronize(device)
    count, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        torch.mm(a, b)
        count += 1
    synchronize(device)  # a GPU runs behind the loop that queues its work
    return 2 * rows * hidden * vocab * count / (time.perf_counter() - began) / 1e9


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


Draw = Callable[[int], tuple[Blanks, int]]  # a batch of this many blanks, and their length


def random_captioner(device: torch.device) -> tuple[Models, Draw]:
    """Two random captioners of Flickr8k size, and blanks cut from random 12-word captions."""
    torch.manual_seed(0)
    captioners = (Counted(Captioner(VOCAB, FEATURES, EMBED, HIDDEN, dropout=0.0).eval().to(device)) for _ in DIRECTIONS)
    s = params.load().infiller.settings("flickr8k")
    infiller = Infiller(VOCAB, FEATURES, s.width, s.heads, s.layers, s.feedforward, s.image_tokens, dropout=0.0)
    models = Models(*captioners, infiller.eval().to(device))
    generator = torch.Generator().manual_seed(0)

    def draw(count: int) -> tuple[Blanks, int]:
        captions = torch.randint(len(SPECIALS), VOCAB, (count, WORDS), generator=generator).tolist()
        sides = [cut(caption, RATIO) for caption in captions]
        images = torch.randn(count, FEATURES, generator=generator).to(device)  # shape: (count, FEATURES)
        return Blanks(images, [left for left, _, _ in sides], [right for _, _, right in sides]), len(sides[0][1])

    return models, draw


def trained_captioner(dataset: str, device: torch.device) -> tuple[Models, Draw]:
    """The pipeline's captioners of `dataset`, and its test blanks at `RATIO` of the most common length."""
    vocab = Vocab.load(Path("data/prepared") / dataset / "vocab.json")
    trained = load_models(Path("data/models") / dataset, vocab, device)
    models = Models(Counted(trained.forward), Counted(trained.backward), trained.infiller)
    table = tables.read(
        Path("data/blanks") / f"{dataset}.parquet", ["image_id", "ratio", "left", "blank", "right"], made_by="blanks"
    ).to_pandas()
    rows = table[table["ratio"] == RATIO]
    length = int(rows["blank"].map(len).mode()[0])
    rows = rows[rows["blank"].map(len) == length]
    images = read_features(Path("data/features") / f"{dataset}.h5", rows["image_id"].to_numpy()).to(device)
    every = Blanks(
        images, [vocab.ids(list(words)) for words in rows["left"]], [vocab.ids(list(words)) for words in rows["right"]]
    )

    def draw(count: int) -> tuple[Blanks, int]:
        return every.take([i % len(every) for i in range(count)]), length

    return models, draw


def method_params(p: Fill, entry: Entry, dataset: str | None, bonus: float | None) -> Fill:
    """`p` as method `entry` reads it: `bonus` when given, else its scale's bonus of `dataset`, else for
    random captioners `p.length_bonus` when it is one number, or `RANDOM_BONUS`."""
    if bonus is not None:
        return p.model_copy(update={"length_bonus": bonus})
    if dataset is not None:
        return length_rule.for_method(p, entry, length_rule.tuned_path(dataset))
    number = isinstance(p.length_bonus, int | float)
    return p.model_copy(update={"length_bonus": float(p.length_bonus) if number else RANDOM_BONUS})


@dataclass(frozen=True)
class Measured:
    setup: str  # what ran, one line
    reference: float  # GFLOP/s of torch.mm at the decoder's shape
    reference_shape: str
    flops_per_row: int  # of one captioner step
    seconds: dict[tuple[str, str, int], float]  # (method, setting, batch): the fastest run
    rows: dict[tuple[str, str, int], int]  # (method, setting, batch): captioner rows through `step`

    def blanks_per_second(self, key: tuple[str, str, int]) -> float:
        return key[2] / self.seconds[key]

    def gflops(self, key: tuple[str, str, int]) -> float | None:
        """The captioners' GFLOP/s, or None for a method that does not step them (infill)."""
        return self.rows[key] * self.flops_per_row / self.seconds[key] / 1e9 if self.rows[key] else None


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dataset", default=None, help="the pipeline's trained captioners of this dataset; default: random ones"
    )
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=[m for m, entry in methods().items() if entry.role != "oracle"],
        default=["forward", "backward", "fb_max", "fb_rerank", "bibs", "bibs_unknown", "infill"],
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="runs of each method and batch, in turns; the fastest counts"
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default=None, help="default: fill.device of params.yaml"
    )
    parser.add_argument("--sweeps", type=int, default=None, help="BiBS sweeps; default: fill.sweeps of params.yaml")
    parser.add_argument(
        "--m-best", type=int, default=None, help="fills BiBS scores per sweep; default: fill.m_best of params.yaml"
    )
    parser.add_argument(
        "--length-bonus",
        type=float,
        default=None,
        help="the length rule's nats per word, for every scale; default: fill.length_bonus, where tuned the "
        f"dataset's of each scale, or {RANDOM_BONUS} (flickr8k-dev's) for random captioners",
    )
    return parser


def measure(args: argparse.Namespace) -> Measured:
    """Time every method of `args.methods` in each of its settings at every batch of `args.batches`."""
    torch.set_num_threads(args.threads)
    p = params.load().fill
    device = decode.device(args.device or p.device)
    models, draw = trained_captioner(args.dataset, device) if args.dataset else random_captioner(device)
    sizes = models.forward.model.sizes
    chosen = {"sweeps": args.sweeps, "m_best": args.m_best}
    p = p.model_copy(update={"beam": BEAM} | {key: value for key, value in chosen.items() if value is not None})
    registry = methods()
    fills = {m: method_params(p, registry[m], args.dataset, args.length_bonus) for m in {*args.methods, "forward"}}
    batches = {batch: draw(batch) for batch in args.batches}  # every method fills the same blanks
    example, length = draw(1)
    bonuses = {registry[m].scale: fills[m].length_bonus for m in args.methods}
    setup = (
        f"captioner: {f'trained on {args.dataset}' if args.dataset else 'random'}, vocabulary {sizes['vocab_size']}, "
        f"hidden {sizes['hidden']}, embed {sizes['embed']}; blanks of {length} words (ratio {RATIO}), beam {BEAM}, "
        f"sweeps {p.sweeps}, m_best {p.m_best}; length bonus "
        + ", ".join(f"{bonus} ({scale})" for scale, bonus in bonuses.items())
        + f"; {device}, {args.threads} threads; exact left out (infeasible at this vocabulary)"
    )
    rows = max(args.batches) * BEAM
    reference = mm_gflops(rows, sizes["hidden"], sizes["vocab_size"], device)
    shape = f"({rows} x {sizes['hidden']}) x ({sizes['hidden']} x {sizes['vocab_size']})"
    runs = [(method, setting) for method in args.methods for setting in registry[method].settings]
    seconds, counted = {}, {}
    with torch.inference_mode():
        registry["forward"].fill(models, example, length, fills["forward"])  # warm up
        for _ in range(args.repeats):  # in turns, so that a slow spell of the machine slows every method alike
            for method, setting in runs:
                for batch, (data, length) in batches.items():
                    models.forward.rows = models.backward.rows = 0
                    began = time.perf_counter()
                    # the fills come back as Python lists: the device has finished when this returns
                    registry[method].fill(models, data, length if setting == "known" else None, fills[method])
                    key = method, setting, batch
                    seconds[key] = min(seconds.get(key, math.inf), time.perf_counter() - began)
                    counted[key] = models.forward.rows + models.backward.rows
    return Measured(setup, reference, shape, step_flops(sizes), seconds, counted)


def main() -> None:
    args = parser().parse_args()
    measured = measure(args)
    seconds, rows, registry = measured.seconds, measured.rows, methods()
    print(measured.setup)
    print(f"torch.mm {measured.reference_shape}: {measured.reference:.1f} GFLOP/s")
    print(f"{'method':<14}{'length':>8}{'batch':>6}{'blanks/s':>10}{'GFLOP/s':>9}{'of mm':>7}")
    for key in seconds:
        method, setting, batch = key
        rate = measured.gflops(key)
        # infill: no captioner steps
        flops = f"{rate:>9.1f}{rate / measured.reference:>7.0%}" if rate is not None else f"{'-':>9}{'-':>7}"
        print(f"{method:<14}{setting:>8}{batch:>6}{measured.blanks_per_second(key):>10.2f}{flops}")
    # A method for the unknown length only is compared with BiBS's known-length time, as the
    # paper pairs BiRNN-BSMP with BiRNN-BSCD.
    for method in args.methods:
        known = method if "known" in registry[method].settings else "bibs"
        if "unknown" in registry[method].settings and (known, "known", args.batches[0]) in seconds:
            ratios = ", ".join(
                f"{seconds[method, 'unknown', b] / seconds[known, 'known', b]:.2f} at batch {b}" for b in args.batches
            )
            work = ", ".join(
                f"{rows[method, 'unknown', b] / rows[known, 'known', b]:.2f}" if rows[known, "known", b] else "-"
                for b in args.batches
            )
            print(
                f"{method}, unknown length over {known}'s known: time {ratios} (target <= 3); "
                f"captioner steps x rows {work}"
            )
    if {"forward", "bibs"} <= set(args.methods):
        for batch in args.batches:
            time_ratio = seconds["bibs", "known", batch] / seconds["forward", "known", batch]
            print(
                f"BiBS / forward beam search, batch {batch}: time {time_ratio:.2f} (target <= 4), "
                f"captioner steps x rows {rows['bibs', 'known', batch] / rows['forward', 'known', batch]:.2f}"
            )


if __name__ == "__main__":
    main()
