"""The captioner uses the image: on `shapes`, with its params.yaml settings, it reaches a
clearly lower validation perplexity than the same captioner whose image input is zeroed."""

import dataclasses
from pathlib import Path

import pytest
import torch

from fillblank import params
from fillblank.train import Data, fit, load_data

REPO = Path(__file__).resolve().parents[1]


def without_images(data: Data) -> Data:
    def blind(split):
        return dataclasses.replace(split, features=torch.zeros_like(split.features))

    return dataclasses.replace(data, train=blind(data.train), val=blind(data.val))


@pytest.mark.slow
def test_the_image_lowers_validation_perplexity_by_at_least_10_percent(shapes_data, tmp_path):
    settings = params.load(REPO / "params.yaml").train.settings("shapes")
    data = load_data(shapes_data.vocab, shapes_data.captions, shapes_data.features, "forward")
    seeing = fit(settings, data, tmp_path / "seeing.resume.pt").metrics()["best_val_perplexity"]
    blind = fit(settings, without_images(data), tmp_path / "blind.resume.pt").metrics()["best_val_perplexity"]
    assert seeing <= 0.9 * blind, (seeing, blind)
