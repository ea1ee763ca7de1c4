"""Is training as fast as its LSTM? Training tokens per second against those of a bare
`nn.LSTM` forward and backward pass over the same batches, both measured in this one run,
once with PyTorch's kernels as it picks them for this CPU (the default) and once pinned to
AVX2 (`PINNED`, what an older release forced on every machine), each in a fresh process,
since the kernels are chosen at a process's first computation. Both sides run on the CPU,
with any GPU hidden from them (`benchmarks/gpu_check.py` is the GPU's check).

    python benchmarks/train.py [--captions 3000] [--threads 2] [--epochs 1] [--rounds 3]

The training side is `fillblank.train.captioners.fit_captioner` (embedding, image projection,
LSTM, output layer, masked loss, backward, gradient clipping, RMSprop step), timed by the
training loop itself over its training passes only. The bare side runs `nn.LSTM(embed,
hidden)` on random inputs of each batch's padded shape and back-propagates their sum, down
to the inputs (a captioner must: its word embeddings learn). A shared machine's speed
drifts by tens of percent within minutes, so the two sides alternate: `--rounds` training
runs, each between two bare passes, and each ratio is a training run's over the mean of the
bare passes around it; the printed figures are the medians.
Tokens are the predicted words and <end>, padding excluded, on both sides. Target: ratio
>= 0.8 (so no Python loop over time steps, and little beside the LSTM).

A third line adds to the bare LSTM the output layer and the loss on the unpadded positions:
the work no captioner of this vocabulary can skip. On a CPU the output layer alone costs
about 60% of the LSTM's multiply-adds at these sizes (2,500 x 512 against 4 x 512 x 1,024
per token), so the ratio to it tells the loop's own overhead apart from the model's.
Target: that ratio >= 0.85 with the default kernels.

Settings are Flickr8k's in params.yaml (the seed's: embed and hidden 512, batches of 100),
on a captioner of Flickr8k size (vocabulary 2,500, features 1,280 as efficientnet_lite0
gives), with random weights and words. Caption lengths are those of ../shared/data/
flickr8k-dev when it is there (mean 10.8 words, up to 36), else 8 to 16 words uniformly.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import torch
import torch.nn.functional as F
from torch import nn

from fillblank import params
from fillblank.data.text import PAD_ID, SPECIALS, Vocab, normalise
from fillblank.train.captioners import fit_captioner
from fillblank.train.data import Data, Split

VOCAB, FEATURES, IMAGES = 2500, 1280, 500
PINNED = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
FLICKR8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "flickr8k-dev" / "dataset_flickr8k.json"


def word_counts(count: int, generator: torch.Generator) -> torch.Tensor:
    """`count` caption lengths in words, drawn from Flickr8k's when they are at hand."""
    if not FLICKR8K.is_file():
        return torch.randint(8, 17, (count,), generator=generator)
    images = json.loads(FLICKR8K.read_text(encoding="utf-8"))["images"]
    real = torch.tensor([len(normalise(s["raw"])) for image in images for s in image["sentences"]])
    return real[torch.randint(0, len(real), (count,), generator=generator)].clamp(min=1)


def captions(count: int, generator: torch.Generator) -> Split:
    lengths = word_counts(count, generator)
    words = [
        torch.randint(len(SPECIALS), VOCAB, (length,), generator=generator).tolist() for length in lengths.tolist()
    ]
    return Split.of(
        image_ids=torch.arange(IMAGES),
        features=torch.rand(IMAGES, FEATURES, generator=generator),
        rows=torch.randint(0, IMAGES, (count,), generator=generator),
        captions=words,
    )


def bare_tokens_per_second(split: Split, embed: int, hidden: int, batch_size: int, vocab: int | None = None) -> float:
    """A bare LSTM's forward and backward over `split`'s batches; with `vocab`, also an
    output layer of that size and the loss, on the unpadded positions only."""
    lstm, out = nn.LSTM(embed, hidden, batch_first=True), nn.Linear(hidden, vocab or 1)
    tokens, seconds = 0, 0.0
    for index in torch.arange(len(split.rows)).split(batch_size):
        _, inputs, targets = split.batch(index, 0)
        real = targets != PAD_ID
        start = time.perf_counter()
        words = torch.randn(*inputs.shape, embed, requires_grad=True)  # as the embedding's output, which learns too
        outputs, _ = lstm(words)  # shape: (B, T, hidden)
        if vocab:
            F.cross_entropy(out(outputs[real]), targets[real], reduction="sum").backward()
        else:
            outputs.sum().backward()
        seconds += time.perf_counter() - start
        tokens += int(real.sum())
    return tokens / seconds


def measure(args: argparse.Namespace) -> dict:
    """Tokens per second of training and of the two bare baselines, alternating, in this process."""
    torch.set_num_threads(args.threads)
    flickr8k = params.load().train.settings("flickr8k")
    settings = flickr8k.model_copy(update={"max_epochs": args.epochs, "patience": args.epochs})
    generator = torch.Generator().manual_seed(0)
    words = SPECIALS + tuple(f"w{i}" for i in range(VOCAB - len(SPECIALS)))
    data = Data(
        Vocab(words, (0,) * VOCAB, 1),
        captions(args.captions, generator),
        captions(200, generator),
        {"direction": "forward"},
    )
    lengths = data.train.lengths.float() - 1
    sizes = (data.train, settings.embed, settings.hidden, settings.batch_size)

    def bare_passes() -> tuple[float, float]:
        return bare_tokens_per_second(*sizes), bare_tokens_per_second(*sizes, vocab=VOCAB)

    bare_passes()  # a warm-up: the first pass of each batch shape also builds oneDNN's kernels for it
    bare = [bare_passes()]
    training = []
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as folder:
            training.append(fit_captioner(settings, data, Path(folder) / "resume.pt").tokens_per_second)
        bare.append(bare_passes())

    def ratio(side: int) -> float:  # each training run over the mean of the bare passes around it
        around = zip(training, bare[:-1], bare[1:], strict=True)
        return median(run / ((before[side] + after[side]) / 2) for run, before, after in around)

    return {
        "setup": f"{args.captions} captions of {lengths.mean():.1f} words on average (up to {lengths.max():.0f}), "
        f"vocabulary {VOCAB}, embed {settings.embed}, hidden {settings.hidden}, batch {settings.batch_size}, "
        f"{args.threads} thread(s), {args.rounds} round(s), medians",
        "kernels": torch.backends.cpu.get_cpu_capability(),
        "training": median(training),
        "bare": median(lstm for lstm, _ in bare),
        "floor": median(floor for _, floor in bare),
        "ratio_bare": ratio(0),
        "ratio_floor": ratio(1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captions", type=int, default=3000, help="training captions per epoch")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--epochs", type=int, default=1, help="epochs per training run")
    parser.add_argument("--rounds", type=int, default=3, help="training runs, each between two bare passes")
    parser.add_argument(
        "--here", action="store_true", help="measure in this process only and print JSON (what each run calls)"
    )
    args = parser.parse_args()
    if args.here:
        print(json.dumps(measure(args)))
        return

    runs = {}
    for name, env in (("default", {}), ("pinned to AVX2", PINNED)):
        unset = {key: value for key, value in os.environ.items() if key not in PINNED}
        command = [
            sys.executable,
            __file__,
            "--here",
            "--captions",
            str(args.captions),
            "--threads",
            str(args.threads),
            "--epochs",
            str(args.epochs),
            "--rounds",
            str(args.rounds),
        ]
        cpu_only = unset | env | {"CUDA_VISIBLE_DEVICES": ""}  # training would take a GPU, the bare side not
        out = subprocess.run(command, env=cpu_only, capture_output=True, text=True, check=True).stdout
        runs[name] = json.loads(out.splitlines()[-1])  # after the progress lines training prints
    print(runs["default"]["setup"])
    print(f"{'kernels':34}" + "".join(f"{name + ' (' + run['kernels'] + ')':>26}" for name, run in runs.items()))
    for key, label in (("training", "training"), ("bare", "bare LSTM"), ("floor", "bare LSTM + output + loss")):
        print(f"{label + ' tokens/s':34}" + "".join(f"{run[key]:26.0f}" for run in runs.values()))
    print(f"{'ratio to the bare LSTM':34}" + "".join(f"{run['ratio_bare']:26.2f}" for run in runs.values()))
    print(
        f"{'ratio to LSTM + output + loss':34}"
        + "".join(f"{run['ratio_floor']:26.2f}" for run in runs.values())
        + "   (target >= 0.85, default)"
    )
    speedup = runs["default"]["training"] / runs["pinned to AVX2"]["training"]
    print(f"default over pinned, training tokens/s: {speedup:.2f}")


if __name__ == "__main__":
    main()
