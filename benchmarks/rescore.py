"""How fast is S(Y) of whole sentences? Tokens per second of `fillblank.decode.step.log_prob`
(the captioner read step by step, as every rescoring does) against the captioner reading
the same sentences as training does, one padded batch at a time (no gradients), both
measured in this one run.

    python benchmarks/rescore.py [--sentences 2048] [--batch 256] [--threads 2] [--repeats 3]

The training side is `fillblank.train.captioners.CaptionerLoss` over `Split.batch`'s padded
batches, as training reads them: `nn.LSTM` over a whole batch at once, the output layer on
the real tokens only. `log_prob` steps the LSTM cell one token at a time (a decoder must, to
branch) and computes each step for the sentences still going on only (`step.advance`).
Tokens are the words and <end>, padding excluded. The captioner is of Flickr8k size (hidden
512, embed 512, vocabulary 2,500, features 1,280), with random weights; the sentences are
`benchmarks/train.py`'s: random words, in the lengths of ../shared/data/flickr8k-dev when it
is there (mean 10.8 words, up to 36), else 8 to 16 words uniformly.
"""

import argparse
import time

import torch
from train import FEATURES, VOCAB, captions  # benchmarks/train.py, beside this script: captions of Flickr8k's lengths

from fillblank.captioner import Captioner
from fillblank.decode.step import log_prob
from fillblank.train import Loss

HIDDEN, EMBED = 512, 512


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=256, help="sentences scored together")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side, in turns; the fastest counts")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = Captioner(VOCAB, FEATURES, EMBED, HIDDEN, dropout=0.0).eval()
    split = captions(args.sentences, torch.Generator().manual_seed(0))
    words = [split.words(n) for n in range(len(split))]
    batches = list(torch.arange(args.sentences).split(args.batch))
    loss = Loss(model)

    def stepped() -> None:
        for index in batches:
            log_prob(model, split.features[split.rows[index]], [words[i] for i in index.tolist()])

    def padded() -> None:
        for index in batches:
            loss(*split.batch(index, 0))

    seconds = {"log_prob (stepped, S(Y)'s reader)": float("inf"), "padded batch (training's reader)": float("inf")}
    with torch.inference_mode():
        stepped(), padded()  # warm-up: the kernels of each shape
        for _ in range(args.repeats):
            for name, run in zip(seconds, (stepped, padded), strict=True):
                began = time.perf_counter()
                run()
                seconds[name] = min(seconds[name], time.perf_counter() - began)
    tokens = int(split.lengths.sum())  # the words and <end>
    lengths = split.lengths.float() - 1
    print(
        f"{args.sentences} sentences of {lengths.mean():.1f} words on average (up to {lengths.max():.0f}), batches of "
        f"{args.batch}, vocabulary {VOCAB}, hidden {HIDDEN}, {args.threads} thread(s), best of {args.repeats}"
    )
    for name, value in seconds.items():
        print(f"{name:44}{tokens / value:10.0f} tokens/s")
    first, second = seconds.values()
    print(f"stepped over padded batch: {second / first:.2f}")


if __name__ == "__main__":
    main()
