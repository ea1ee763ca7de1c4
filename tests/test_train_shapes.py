"""The captioner uses the image: on `shapes` it reaches a clearly lower validation
perplexity than the same captioner whose image input is zeroed."""

import dataclasses
import json

import pytest
import torch
from conftest import PARAMS

from fillblank.train.captioners import fit_captioner
from fillblank.train.data import Data, load_data


def without_images(data: Data) -> Data:
    def blind(split):
        return dataclasses.replace(split, features=torch.zeros_like(split.features))

    return dataclasses.replace(data, train=blind(data.train), val=blind(data.val))


@pytest.mark.slow
def test_the_image_lowers_validation_perplexity_by_at_least_10_percent(built_shapes, tmp_path):
    prepared = built_shapes / "data/prepared/shapes"
    data = load_data(
        prepared / "vocab.json", prepared / "captions.parquet", built_shapes / "data/features/shapes.h5", "forward"
    )
    seeing = json.loads((built_shapes / "metrics/train/shapes-forward.json").read_text())["best_val_perplexity"]
    settings = PARAMS.train.settings("shapes")  # as the pipeline trained the seeing captioner
    blind = fit_captioner(settings, without_images(data), tmp_path / "blind.resume.pt").metrics()["best_val_perplexity"]
    assert seeing <= 0.9 * blind, (seeing, blind)
