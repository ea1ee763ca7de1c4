"""How near the true blank length could a length rule come? Measured on the validation blanks
of a run's captioners:

    python experiments/length_rules.py build/experiments/flickr8k-dev flickr8k

With the length unknown, the methods choose among each blank's best fills of 1 ..
`fill.max_length` words by S(Y) + bonus x words (fillblank/decode/length.py). This script
asks how much better any rule could do, on every validation blank of the project at
`project` (its params, captioners, features and captions), cut at every ratio as the test
blanks are. Each rule is fitted on the blanks of half the images (even image ids) and
measured on the other half, then the other way round; the mean absolute length error of
each ratio is printed, averaged over the two halves:

- `none`: the fill of highest S(Y) (no rule);
- `bonus`: the word bonus of fillblank/decode/length.py, tuned here to the least length error
  (`nearest_bonus`; stage length tunes it to the most CIDEr instead);
- `count`: the median length the fitted half removed from blanks that leave the same number
  of words visible, ignoring the fills (what the visible word count alone tells);
- `posterior median`: the median of softmax(t x (S(Y) + bonus x words) + log P(length |
  visible words)), with t and the bonus from a grid: the choice of least absolute error when
  the scores are read as a likelihood over lengths.
"""

import argparse
import os
from pathlib import Path

import torch
from tqdm import tqdm

from fillblank import params as params_module
from fillblank import tuning
from fillblank.data.text import Vocab
from fillblank.decode import rescore
from fillblank.decode.baselines import beam_search
from fillblank.decode.models import Models, load_models
from fillblank.decode.step import Blanks, both_ways
from fillblank.features import read_features
from fillblank.params import Fill

TEMPERATURES = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
BONUSES = [step / 4 for step in range(17)]  # 0 to 4 nats per word


@torch.inference_mode()
def best_by_length(models: Models, blanks: Blanks, p: Fill) -> torch.Tensor:
    """S(Y) of each blank's best fill of each length 1 .. `p.max_length`: (N, max_length).

    The best of two candidates per length: the forward and the backward beam search's best
    hypothesis of that length, the cheapest pair of fills that both sides of a blank shape.
    """
    sides = both_ways(models, blanks)
    scores = [
        rescore.scores(sides, d, rescore.hypotheses(this, beam_search(this, p.max_length, p.beam)[1:], ranks=1))
        for d, this in enumerate(sides)
    ]  # each beam-major: (max_length * N,)
    return torch.stack(scores).view(2, p.max_length, len(blanks)).amax(0).T


def nearest_bonus(scores: torch.Tensor, lengths: torch.Tensor) -> float:
    """The bonus of `tuning.GRID` whose choice of length, argmax over t of scores[:, t-1] +
    bonus x t, is nearest the true `lengths` (N,) on average (the smallest among equals)."""
    words = torch.arange(1, scores.shape[1] + 1, dtype=scores.dtype)  # shape: (T,)
    errors = {
        bonus: float(((scores + bonus * words).argmax(1) + 1 - lengths).abs().double().mean()) for bonus in tuning.GRID
    }
    return min(tuning.GRID, key=lambda bonus: (errors[bonus], bonus))


def validation_scores(dataset: str) -> dict[str, torch.Tensor]:
    """Each validation blank's best S(Y) at every length (N, T), its true and visible word counts, ratio and image."""
    settings = params_module.load()
    vocab = Vocab.load(Path("data/prepared") / dataset / "vocab.json")
    models = load_models(Path("data/models") / dataset, vocab)
    val = tuning.validation_blanks(
        Path("data/prepared") / dataset, Path("data/features") / f"{dataset}.h5", settings.blanks.ratios, None
    )
    features = read_features(Path("data/features") / f"{dataset}.h5", val["image_id"].to_numpy())
    left, blank, right = (val[name].to_pylist() for name in ("left", "blank", "right"))
    every = Blanks.of_words(features, left, right, vocab)
    batch = settings.fill.batch
    scores = [
        best_by_length(models, every.take(range(at, min(at + batch, len(every)))), settings.fill)
        for at in tqdm(range(0, len(every), batch), desc=f"{dataset}: best fill of each length", unit="batch")
    ]
    return {
        "scores": torch.cat(scores).double(),
        "true": torch.tensor([len(words) for words in blank]),
        "visible": torch.tensor([len(a) + len(b) for a, b in zip(left, right, strict=True)]),
        "ratio": torch.tensor(val["ratio"].to_numpy()),
        "image": torch.tensor(val["image_id"].to_numpy()),
    }


def log_prior(visible: torch.Tensor, true: torch.Tensor, rows: int, lengths: int) -> torch.Tensor:
    """log P(length | visible words), (rows, lengths), counted with add-one smoothing; longer
    blanks count as the longest."""
    counts = torch.ones(rows, lengths, dtype=torch.float64)
    counts.index_put_(
        (visible, true.clamp(max=lengths) - 1), torch.ones(len(true), dtype=torch.float64), accumulate=True
    )
    return (counts / counts.sum(1, keepdim=True)).log()


def median(logits: torch.Tensor) -> torch.Tensor:
    """The median length (1-based) of each row's softmax over lengths."""
    return (logits.softmax(1).cumsum(1) < 0.5).sum(1) + 1


def rules(d: dict[str, torch.Tensor], fit: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each rule's chosen length for every blank, fitted on the blanks where `fit` is true."""
    scores, true, visible = d["scores"], d["true"], d["visible"]
    words = torch.arange(1, scores.shape[1] + 1, dtype=scores.dtype)
    prior = log_prior(visible[fit], true[fit], int(visible.max()) + 1, scores.shape[1])

    def error(chosen: torch.Tensor) -> float:
        return float((chosen[fit] - true[fit]).abs().double().mean())

    bonus = nearest_bonus(scores[fit], true[fit])
    candidates = [(t, b) for t in TEMPERATURES for b in BONUSES]
    t, b = min(candidates, key=lambda tb: error(median(tb[0] * (scores + tb[1] * words) + prior[visible])))
    return {
        "none": scores.argmax(1) + 1,
        "bonus": (scores + bonus * words).argmax(1) + 1,
        "count": median(prior[visible]),
        "posterior median": median(t * (scores + b * words) + prior[visible]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "project", type=Path, help="a project folder with trained captioners (build/experiments/<name>)"
    )
    parser.add_argument("dataset")
    args = parser.parse_args()
    os.chdir(args.project)
    d = validation_scores(args.dataset)
    ratios = params_module.load().blanks.ratios  # as the blanks were cut
    halves = d["image"] % 2 == 0
    errors: dict[str, list[list[float]]] = {}
    for fit in (halves, ~halves):
        for name, chosen in rules(d, fit).items():
            errors.setdefault(name, []).append(
                [float((chosen - d["true"])[~fit & (d["ratio"] == r)].abs().double().mean()) for r in ratios]
            )
    shown = ", ".join(map(str, ratios))
    print(f"{len(d['true'])} validation blanks; mean length error on the held-out half, ratios {shown}:")
    for name, both in errors.items():
        by_ratio = torch.tensor(both).mean(0)
        print(f"  {name:17s} " + "  ".join(f"{e:.2f}" for e in by_ratio) + f"   (all: {float(by_ratio.mean()):.2f})")


if __name__ == "__main__":
    main()
