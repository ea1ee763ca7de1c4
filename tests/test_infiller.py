"""The context encoder for captions: its model, its training examples, its training and the `infill` method."""

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from test_train import SETTINGS as CAPTIONER
from test_train import finish, load, project, stage, write_colours
from toy_models import fill_params, one_thread, random_models  # noqa: F401  (one_thread: autouse, these models are tiny too)

from fillblank.captioner import Captioner
from fillblank.checkpoint import load_checkpoint, save_checkpoint
from fillblank.data.text import END_ID, PAD_ID, Vocab
from fillblank.decode.models import Models
from fillblank.decode.registry import methods
from fillblank.decode.step import Blanks
from fillblank.errors import UserError
from fillblank.infiller import LENGTHS, Infiller, context_ids, padded
from fillblank.params import Fill, InfillerSettings
from fillblank.train import loop
from fillblank.train.captioners import DIRECTIONS, fit_captioner
from fillblank.train.infiller import Blanked, InfillerLoss, fit_infiller

SETTINGS = InfillerSettings(
    seed=0,
    width=32,
    heads=2,
    layers=1,
    feedforward=64,
    image_tokens=2,
    dropout=0.0,
    lr=0.003,
    clip=1.0,
    batch_size=20,
    max_epochs=12,
    patience=12,
)
P = Fill(
    methods=["infill"],
    beam=3,
    sweeps=2,
    m_best=3,
    max_length=4,
    batch=64,
    exact_max_rows=100,
    device="cpu",
    length_bonus=0.0,
    tune_images=None,
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_colours(tmp_path_factory.mktemp("colours"), images=100)


@pytest.fixture(scope="module")
def colours(folder):
    return load(folder, "infiller")


@pytest.fixture(scope="module")
def trained(colours, tmp_path_factory):
    torch.set_num_threads(1)
    return fit_infiller(SETTINGS, colours, tmp_path_factory.mktemp("infiller") / "resume.pt")


def tiny(vocab_size: int = 9, feature_dim: int = 4) -> Infiller:
    torch.manual_seed(0)
    return Infiller(
        vocab_size, feature_dim, width=16, heads=2, layers=1, feedforward=32, image_tokens=2, dropout=0.0
    ).eval()


def test_one_step_at_a_time_agrees_with_the_whole_prefix_at_once():
    model = tiny()
    features, context = torch.randn(2, 4), padded([[4, 5, model.blank, 6], [7, model.blank, 8]])  # shape: (2, 4)
    memory, pad = model.encode(features, context)
    state, first = model.begin(memory, pad, torch.tensor([2, 0]))
    second, state = model.step(torch.tensor([5, 6]), state)
    whole = model.decode(memory, pad, torch.tensor([[2, 5], [0, 6]]))  # shape: (2, 2, V)
    assert whole.shape == (2, 2, 9) and (whole <= 0).all()
    assert torch.allclose(whole[:, 0], first, atol=1e-5) and torch.allclose(whole[:, 1], second, atol=1e-5)


def test_padding_in_the_context_changes_nothing():
    model = tiny()
    features = torch.randn(1, 4)
    alone = model.begin(*model.encode(features, padded([[4, model.blank, 5]])), torch.tensor([1]))[1]
    beside_longer = model.begin(
        *model.encode(features.repeat(2, 1), padded([[4, model.blank, 5], [4, 5, 6, 7, model.blank, 8]])),
        torch.tensor([1, 1]),
    )[1]
    assert torch.allclose(alone[0], beside_longer[0], atol=1e-5)


def test_training_blanks_keep_a_word_each_side_and_are_drawn_afresh_each_epoch(colours):
    blanked = Blanked(colours.train, seed=0, blank=len(colours.vocab))
    first, length, given = blanked.draw(1)
    n = torch.tensor([len(words) for words in blanked.words])
    assert (first >= 1).all() and (first + length <= n - 1).all() and (length >= 1).all()
    assert 0.3 < given.float().mean() < 0.7
    again, _, _ = blanked.draw(1)
    assert torch.equal(first, again) and not torch.equal(torch.stack(blanked.draw(2)[:2]), torch.stack((first, length)))
    features, context, prefix, targets = blanked.batch(torch.arange(4), epoch=1)
    assert features.shape == (4, 4) and (context == blanked.blank).sum(1).tolist() == [1, 1, 1, 1]
    assert blanked.count(torch.arange(4), 1) == int((targets != PAD_ID).sum())
    assert ((targets == END_ID).sum(1) == 1).all()
    assert set(prefix[:, 0].tolist()) <= {0, *length[:4].tolist()}


def test_the_infiller_learns_to_fill_the_colour_from_the_image(colours, trained):
    history = trained.history
    assert history[-1]["train_loss"] < history[0]["train_loss"] / 2
    vocab = colours.vocab
    features = torch.eye(4)  # red, green, blue, black
    blanks = Blanks(features, [vocab.ids(["a"])] * 4, [vocab.ids(["thing"])] * 4)
    models = Models(None, None, trained.model)
    for length in (1, None):
        fills = methods()["infill"].fill(models, blanks, length, P)
        assert [vocab.decode(fill) for fill in fills] == [["red"], ["green"], ["blue"], ["black"]]


def test_infill_rerank_joins_the_infiller_and_the_captioners(folder, colours, trained, tmp_path):
    captioners = [
        fit_captioner(CAPTIONER, load(folder, direction), tmp_path / f"{direction}.pt").model
        for direction in DIRECTIONS
    ]
    vocab = colours.vocab
    blanks = Blanks(torch.eye(4), [vocab.ids(["a"])] * 4, [vocab.ids(["thing"])] * 4)
    for length in (1, None):
        fills = methods()["infill_rerank"].fill(Models(*captioners, trained.model), blanks, length, P)
        assert [vocab.decode(fill) for fill in fills] == [["red"], ["green"], ["blue"], ["black"]]


def test_known_length_writes_exactly_that_many_words(colours, trained):
    vocab = colours.vocab
    blanks = Blanks(torch.eye(4)[:2], [vocab.ids(["the"])] * 2, [vocab.ids(["red"])] * 2)
    for length in (1, 2, 3):
        assert [
            len(fill) for fill in methods()["infill"].fill(Models(None, None, trained.model), blanks, length, P)
        ] == [length] * 2


def test_a_blank_longer_than_the_length_tokens_is_told_the_longest():
    models = random_models(vocab=12, seed=0)
    blank = Blanks(torch.randn(1, 3), [[4]], [[5]])  # a 33-word blank: a 44-word COCO caption at ratio 0.75
    p = fill_params(beam=2, m_best=1, sweeps=0, max_length=3)
    assert [len(fill) for fill in methods()["infill"].fill(models, blank, LENGTHS + 1, p)] == [LENGTHS + 1]
    assert [len(fill) for fill in methods()["infill_rerank"].fill(models, blank, LENGTHS + 1, p)] == [LENGTHS + 1]


def test_the_same_settings_train_the_same_weights(colours, tmp_path):
    again = fit_infiller(SETTINGS.model_copy(update={"max_epochs": 2}), colours, tmp_path / "a.resume.pt")
    twice = fit_infiller(SETTINGS.model_copy(update={"max_epochs": 2}), colours, tmp_path / "b.resume.pt")
    assert all(
        torch.equal(a, b)
        for a, b in zip(again.model.state_dict().values(), twice.model.state_dict().values(), strict=True)
    )


def test_a_checkpoint_round_trips_and_is_not_taken_for_a_captioner(colours, trained, tmp_path):
    save_checkpoint(tmp_path / "infiller.pt", trained.model, trained.config, colours.vocab)
    loaded = load_checkpoint(tmp_path / "infiller.pt", colours.vocab, Infiller)
    assert all(
        torch.equal(a, b)
        for a, b in zip(loaded.state_dict().values(), trained.model.state_dict().values(), strict=True)
    )
    with pytest.raises(UserError, match="infiller.pt: not a checkpoint of a Captioner"):
        load_checkpoint(tmp_path / "infiller.pt", colours.vocab, Captioner)


def test_infill_without_an_infiller_says_how_to_train_one():
    blanks = Blanks(torch.zeros(1, 4), [[4]], [[5]])
    with pytest.raises(UserError, match="dvc repro train_infiller"):
        methods()["infill"].fill(Models(None, None, None), blanks, 1, P)


def test_context_marks_the_blank_between_the_sides():
    assert context_ids([4, 5], [6], blank=9) == [4, 5, 9, 6]


def test_an_interrupted_training_goes_on_to_the_same_weights(colours, tmp_path, monkeypatch):
    settings = SETTINGS.model_copy(update={"max_epochs": 3})
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # in epoch 2, after epoch 1 was saved
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    real = loop.validation_loss
    monkeypatch.setattr(loop, "validation_loss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fit_infiller(settings, colours, tmp_path / "resume.pt")
    monkeypatch.setattr(loop, "validation_loss", real)
    resumed = fit_infiller(settings, colours, tmp_path / "resume.pt")
    fresh = fit_infiller(settings, colours, tmp_path / "fresh.pt")
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3]
    assert all(
        torch.equal(a, b)
        for a, b in zip(resumed.model.state_dict().values(), fresh.model.state_dict().values(), strict=True)
    )


@pytest.mark.slow  # fresh Python processes: about 15 s
def test_the_stage_under_torchrun_with_two_gloo_processes_matches_one_process(folder, tmp_path):
    settings = SETTINGS.model_dump() | {"max_epochs": 2, "patience": 2}  # no dropout: it differs between processes
    one, two = (project_with_infiller(tmp_path / name, folder, settings) for name in ("one", "two"))
    finish(stage(one, "infiller"), one)
    finish(
        stage(
            two,
            "infiller",
            launcher=(
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nproc_per_node",
                "2",
                "-m",
                "stages.train",
                "shapes",
            ),
        ),
        two,
    )
    # Compared by what they compute: Adam turns the float noise in gradients that are zero in
    # exact arithmetic (the attention's key bias: softmax ignores it) into full-size steps.
    vocab = Vocab.load(folder / "vocab.json")
    single, double = (load_checkpoint(cwd / "data/models/shapes/infiller.pt", vocab, Infiller) for cwd in (one, two))
    examples = Blanked(load(folder, "infiller").val, seed=0, blank=len(vocab)).batch(torch.arange(20), 0)
    outputs = [InfillerLoss(model)(*examples) for model in (single, double)]
    assert torch.allclose(outputs[0], outputs[1], rtol=1e-4)
    curves = [pd.read_csv(cwd / "metrics/train/shapes-infiller.csv") for cwd in (one, two)]
    assert list(curves[0].columns) == ["epoch", "train_loss", "val_loss", "val_perplexity"] and len(curves[0]) == 2
    assert np.allclose(curves[0].to_numpy(), curves[1].to_numpy(), rtol=1e-4)


def project_with_infiller(cwd, folder, settings: dict):
    project(cwd, folder)
    params = yaml.safe_load((cwd / "params.yaml").read_text())
    params["infiller"]["overrides"]["shapes"] = settings
    (cwd / "params.yaml").write_text(yaml.safe_dump(params))
    return cwd
