"""How fast is S(Y) of whole sentences? Tokens per second of `fillblank.decode.step.log_prob`
(the captioner read step by step, as every rescoring does) against the captioner reading
the same sentences as training does, one padded batch at a time (no gradients), both
measured in this one run.

    python benchmarks/rescore.py [--sentences 2048] [--batch 256] [--threads 2] [--repeats 3]

The training side runs `nn.LSTM` over a whole padded batch at once and the output layer on
the real tokens only, as `fillblank.train.Loss` does; `log_prob` steps the LSTM cell one
token at a time (a decoder must, to branch) and, since 2026-12-01, computes each step for
the sentences still going on only (`step.advance`). Tokens are the words and <end>, padding excluded. The captioner
is of Flickr8k size (hidden 512, embed 512, vocabulary 2,500, features 1,280), with random
weights; sentence lengths are those of ../shared/data/flickr8k-dev when it is there (mean
10.8 words, up to 36), else 8 to 16 words uniformly.
"""

import argparse
import time

import torch

from fillblank.data.text import END_ID, PAD_ID, SPECIALS, START_ID
from fillblank.decode.step import log_prob
from fillblank.model import Captioner
from train import word_counts  # benchmarks/train.py, beside this script: Flickr8k's caption lengths

VOCAB, HIDDEN, EMBED, FEATURES = 2500, 512, 512, 1280


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=256, help="sentences scored together")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side, in turns; the fastest counts")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = Captioner(VOCAB, FEATURES, EMBED, HIDDEN, dropout=0.0).eval()
    lengths = word_counts(args.sentences, generator).tolist()
    sentences = [torch.randint(len(SPECIALS), VOCAB, (n,), generator=generator).tolist() for n in lengths]
    features = torch.randn(args.sentences, FEATURES, generator=generator)
    tokens = sum(lengths) + len(lengths)  # the words and <end>
    batches = [(features[i : i + args.batch], sentences[i : i + args.batch]) for i in range(0, args.sentences, args.batch)]

    def stepped() -> None:
        for images, group in batches:
            log_prob(model, images, group)

    def padded() -> None:
        for images, group in batches:
            width = max(len(s) for s in group) + 2
            rows = torch.tensor([[START_ID, *s, END_ID] + [PAD_ID] * (width - len(s) - 2) for s in group])
            real = rows[:, 1:] != PAD_ID  # shape: (B, T): as fillblank.train.Loss, the output layer on real tokens only
            model.out(model.hidden(images, rows[:, :-1])[real]).log_softmax(-1)

    seconds = {"log_prob (stepped, S(Y)'s reader)": float("inf"), "padded batch (training's reader)": float("inf")}
    with torch.inference_mode():
        stepped(), padded()  # warm-up: the kernels of each shape
        for _ in range(args.repeats):
            for name, run in zip(seconds, (stepped, padded)):
                began = time.perf_counter()
                run()
                seconds[name] = min(seconds[name], time.perf_counter() - began)
    print(f"{args.sentences} sentences of {sum(lengths) / len(lengths):.1f} words on average (up to {max(lengths)}), batches of "
          f"{args.batch}, vocabulary {VOCAB}, hidden {HIDDEN}, {args.threads} thread(s), best of {args.repeats}")
    for name, value in seconds.items():
        print(f"{name:44}{tokens / value:10.0f} tokens/s")
    first, second = seconds.values()
    print(f"stepped over padded batch: {second / first:.2f}")


if __name__ == "__main__":
    main()
