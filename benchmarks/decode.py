"""Decoding speed on a captioner of Flickr8k size, with random weights.

Prints, for each method and batch of blanks, blanks per second (batching should make it
grow with the batch), the FLOP rate of the captioner's steps against a plain `torch.mm` of
the decoder's shape on this machine, and, from the same run, the time of BiBS over that of
forward beam search (target: at most 4).

The captioner is `fillblank.model.Captioner` (hidden 512, embed 512, vocabulary 2,500,
features 1,280 as efficientnet_lite0 gives), the captions have 12 words and the blanks are
cut at ratio 0.5 (6 words), beam 7; the other settings are the `fill` section of
params.yaml. A random captioner is a hard case for BiBS: its beams rarely settle, so it runs
all `fill.sweeps` sweeps, where a trained one often stops after one or two.

    python benchmarks/decode.py [--batches 1 8 32] [--methods forward bibs] [--threads 2] [--sweeps 2] [--m-best 3]
"""

import argparse
import time

import torch

from fillblank import params
from fillblank.blanks import cut
from fillblank.data.text import SPECIALS
from fillblank.decode import METHODS
from fillblank.decode.step import Blanks, Models
from fillblank.model import Captioner

VOCAB, HIDDEN, EMBED, FEATURES, WORDS, RATIO, BEAM = 2500, 512, 512, 1280, 12, 0.5, 7


class Counted:
    """A captioner's step interface that counts the rows it computes."""

    def __init__(self, model: Captioner):
        self.model, self.rows = model, 0

    def init(self, features):
        return self.model.init(features)

    def step(self, tokens, state):
        self.rows += tokens.shape[0]
        return self.model.step(tokens, state)


def step_flops() -> int:
    """Multiply-adds x 2 of one step of one row: the LSTM's gates and the output layer."""
    return 2 * (4 * HIDDEN * (EMBED + HIDDEN) + HIDDEN * VOCAB)


def mm_gflops(rows: int, seconds: float = 2.0) -> float:
    """GFLOP/s of torch.mm at the decoder's shape: (rows, hidden) x (hidden, vocabulary)."""
    a, b = torch.randn(rows, HIDDEN), torch.randn(HIDDEN, VOCAB)
    torch.mm(a, b)
    count, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        torch.mm(a, b)
        count += 1
    return 2 * rows * HIDDEN * VOCAB * count / (time.perf_counter() - began) / 1e9


def blanks(count: int, generator: torch.Generator) -> tuple[Blanks, int]:
    captions = torch.randint(len(SPECIALS), VOCAB, (count, WORDS), generator=generator).tolist()
    sides = [cut(caption, RATIO) for caption in captions]
    features = torch.randn(count, FEATURES, generator=generator)
    return Blanks(features, [left for left, _, _ in sides], [right for _, _, right in sides]), len(sides[0][1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--methods", nargs="+", choices=[m for m in METHODS if m != "exact"], default=["forward", "backward", "fb_max", "fb_rerank", "bibs"])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--sweeps", type=int, default=None, help="BiBS sweeps; default: fill.sweeps of params.yaml")
    parser.add_argument("--m-best", type=int, default=None, help="fills BiBS scores per sweep; default: fill.m_best of params.yaml")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = Models(*(Counted(Captioner(VOCAB, FEATURES, EMBED, HIDDEN, dropout=0.0).eval()) for _ in range(2)))
    p = params.load().fill
    chosen = {"sweeps": args.sweeps, "m_best": args.m_best}
    p = p.model_copy(update={"beam": BEAM} | {key: value for key, value in chosen.items() if value is not None})
    generator = torch.Generator().manual_seed(0)
    print(f"captioner: vocabulary {VOCAB}, hidden {HIDDEN}, embed {EMBED}; {WORDS}-word captions, ratio {RATIO}, beam {BEAM}, "
          f"sweeps {p.sweeps}, m_best {p.m_best}; {args.threads} threads; exact left out (infeasible at this vocabulary)")
    reference = mm_gflops(max(args.batches) * BEAM)
    print(f"torch.mm ({max(args.batches) * BEAM} x {HIDDEN}) x ({HIDDEN} x {VOCAB}): {reference:.1f} GFLOP/s")
    print(f"{'method':<14}{'batch':>6}{'blanks/s':>10}{'GFLOP/s':>9}{'of mm':>7}")
    seconds = {}
    with torch.inference_mode():
        METHODS["forward"](models, *blanks(1, generator), p)  # warm up
        for method in args.methods:
            for batch in args.batches:
                data, length = blanks(batch, generator)
                models.forward.rows = models.backward.rows = 0
                began = time.perf_counter()
                METHODS[method](models, data, length, p)
                seconds[method, batch] = elapsed = time.perf_counter() - began
                rate = (models.forward.rows + models.backward.rows) * step_flops() / elapsed / 1e9
                print(f"{method:<14}{batch:>6}{batch / elapsed:>10.2f}{rate:>9.1f}{rate / reference:>7.0%}")
    if {"forward", "bibs"} <= set(args.methods):
        for batch in args.batches:
            print(f"BiBS / forward beam search time, batch {batch}: {seconds['bibs', batch] / seconds['forward', batch]:.2f} (target <= 4)")


if __name__ == "__main__":
    main()
