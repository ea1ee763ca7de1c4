"""The `fillblank` command, run as a user runs it, on the `shapes` models of the built pipeline."""

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from conftest import PARAMS, REPO
from PIL import Image
from toy_models import fill_params, random_models

from fillblank import blanks, cli
from fillblank.captioner import Captioner
from fillblank.checkpoint import load_checkpoint, read_checkpoint
from fillblank.data.text import END_ID, START_ID, Vocab
from fillblank.decode import registry
from fillblank.decode.step import Blanks
from fillblank.errors import UserError


@pytest.fixture
def in_project(built_shapes, monkeypatch) -> Path:
    monkeypatch.chdir(built_shapes)
    return built_shapes


FIRST_TEST_IMAGE = PARAMS.sources.shapes.train + PARAMS.sources.shapes.val  # shapes numbers its images train, val, test


def image_file(project: Path, image_id: int, dest: Path) -> Path:
    """A `shapes` image as a user has it: a PNG file of its own."""
    with zipfile.ZipFile(project / "data/raw/shapes/images/shapes.zip") as archive:
        path = dest / f"{image_id:05d}.png"
        path.write_bytes(archive.read(f"shapes/{image_id:05d}.png"))
    return path


def fillblank(capsys, *args: str) -> tuple[int, str, str]:
    """Run `fillblank ARGS` in this process: (exit status, stdout, stderr)."""
    try:
        cli.main(list(args))
        status = 0
    except SystemExit as stop:
        status = stop.code
    out, err = capsys.readouterr()
    return status, out, err


def fill_json(capsys, *args: str) -> dict:
    status, out, err = fillblank(capsys, "fill", "--json", *args)
    assert status == 0, err
    return json.loads(out)


def sentence_score(vocab: Vocab, project: Path, image: torch.Tensor, words: list[str]) -> float:
    """S(Y) of a whole sentence by the captioners' batch `forward`, not the decoders' `step`."""
    total = 0.0
    for direction, ordered in (("forward", words), ("backward", words[::-1])):
        model = load_checkpoint(project / f"data/models/shapes/{direction}.pt", vocab, Captioner)
        tokens = torch.tensor([[START_ID, *vocab.ids(ordered)]])  # shape: (1, T)
        targets = torch.tensor([[*vocab.ids(ordered), END_ID]])  # shape: (1, T)
        with torch.no_grad():
            total += model(image, tokens).gather(2, targets[..., None]).sum().item()
    return total


# ---------------------------------------------------------------------------- the caption


def test_the_caption_is_split_at_its_blank_and_normalised_like_the_training_captions():
    caption = cli.parse_caption("A dog ___ in the SNOW!")
    assert (caption.left, caption.right) == (["a", "dog"], ["in", "the", "snow"])
    assert cli.parse_caption("_____ at the top").left == []  # a longer line is the same blank


@pytest.mark.parametrize(
    "caption, message",
    [
        ("a dog in the snow", "has no blank"),
        ("a ___ in the ___", "has 2 blanks"),
        (b"a d\xf6g ___".decode(errors="surrogateescape"), "not UTF-8"),  # as Python hands over such argv bytes
    ],
    ids=["no-blank", "two-blanks", "not-utf8"],
)
def test_a_caption_must_be_text_with_exactly_one_blank(capsys, tmp_path, caption, message):
    status, out, err = fillblank(capsys, "fill", "--image", str(tmp_path / "any.png"), "--caption", caption)
    assert status == 2 and out == ""
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


# ---------------------------------------------------------------------------- bad input


def png(path: Path) -> Path:
    Image.new("RGB", (64, 64), (220, 40, 40)).save(path)
    return path


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such image file"),
        (b"not an image at all", "not a readable image"),
        ("truncated", "not a readable image"),
    ],
    ids=["missing", "not-an-image", "truncated"],
)
def test_an_unreadable_image_is_one_line(capsys, tmp_path, content, message):
    path = tmp_path / "photo.png"
    if content == "truncated":
        content = png(tmp_path / "whole.png").read_bytes()[:100]
    if content is not None:
        path.write_bytes(content)
    status, _, err = fillblank(capsys, "fill", "--image", str(path), "--caption", "a ___ circle")
    assert status == 2
    assert err.startswith(f"error: {path}: {message}") and err.count("\n") == 1


def test_without_trained_models_it_says_how_to_train_them(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    image = png(tmp_path / "photo.png")
    status, _, err = fillblank(capsys, "fill", "--image", str(image), "--caption", "a ___ circle")
    assert status == 2 and err == "error: params.yaml: no such file (run from the project root)\n"

    shutil.copy(REPO / "params.yaml", tmp_path)  # a project that was never built
    status, _, err = fillblank(capsys, "fill", "--image", str(image), "--caption", "a ___ circle")
    assert status == 2 and err.count("\n") == 1
    assert f"no trained models in {Path('data/models/shapes')}" in err and "dvc repro train" in err

    status, _, err = fillblank(
        capsys, "fill", "--image", str(image), "--caption", "a ___ circle", "--models", str(tmp_path)
    )
    assert status == 2 and f"no trained models in {tmp_path}" in err


def test_a_params_file_that_is_not_yaml_is_one_line_naming_its_line_and_column(capsys, tmp_path):
    (tmp_path / "bad.yaml").write_text("fill:\n  beam: [3\n")
    status, _, err = fillblank(
        capsys, "fill", "--image", "x.png", "--caption", "a ___", "--params", str(tmp_path / "bad.yaml")
    )
    problem = "not valid YAML at line 3, column 1: expected ',' or ']', but got '<stream end>'"
    assert (status, err) == (2, f"error: {tmp_path / 'bad.yaml'}: {problem}\n")


@pytest.mark.parametrize(
    "option, value", [("--length", "0"), ("--length", "two"), ("--top", "0"), ("--method", "greedy")]
)
def test_bad_option_values_are_refused_before_any_work(capsys, option, value):
    status, _, err = fillblank(capsys, "fill", "--image", "x.png", "--caption", "a ___", option, value)
    assert status == 2 and option in err


def test_the_console_script_exits_with_status_2_and_one_line(tmp_path):
    command = Path(sys.executable).parent / "fillblank"
    result = subprocess.run(
        [command, "fill", "--image", "photo.jpg", "--caption", "no blank here"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr == "error: caption 'no blank here' has no blank: mark the missing words with ___\n"


# ---------------------------------------------------------------------------- help and methods


def test_help_explains_every_option():
    top = cli.parser()
    commands = next(action for action in top._actions if action.dest == "command")
    for name, sub in [("fillblank", top), *commands.choices.items()]:
        for action in sub._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"
    fill_help = commands.choices["fill"].format_help()
    for option in ("--image", "--caption", "--length", "--method", "--top", "--dataset", "--models", "--json"):
        assert option in fill_help


def test_methods_lists_every_method_with_its_settings(capsys):
    status, out, _ = fillblank(capsys, "methods")
    assert status == 0
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert list(lines) == list(registry.methods())
    assert lines["bibs_unknown"].endswith("(bidirectional; scale captioners; unknown length)")
    assert lines["bibs"].endswith("(bidirectional; scale captioners; known and unknown length; ranks --top fills)")
    assert lines["exact"].endswith("(oracle; scale captioners; known and unknown length)")
    assert lines["infill"].endswith("(infiller; scale infiller; known and unknown length)")


# ---------------------------------------------------------------------------- filling


def test_the_first_fill_printed_is_the_fill_stage_s_whatever_top_asks_up_to_m_best():
    models = random_models(vocab=30, seed=5)
    generator = torch.Generator().manual_seed(5)
    p = fill_params(beam=4, m_best=3, sweeps=2, max_length=4, length_bonus=1.0)

    def words() -> list[int]:
        return torch.randint(
            4, 30, (int(torch.randint(0, 4, (1,), generator=generator)),), generator=generator
        ).tolist()

    for _ in range(16):  # blanks of 0 to 3 words a side, where a different `m_best` gave another best fill
        one = Blanks(torch.randn(1, 3, generator=generator), [words()], [words()])
        for length in (3, None):
            [stage_fill] = registry.methods()["bibs"].fill(models, one, length, p)
            for top in (None, 1, 2, 3):
                ranked = cli.rank(registry.entry("bibs"), models, one, length, p, top)
                assert ranked[0][0] == stage_fill and len(ranked) <= (top or p.m_best)


@pytest.mark.slow
def test_fill_lists_the_best_fills_in_the_order_of_the_score_it_prints(capsys, in_project, tmp_path):
    """With the length auto, bibs ranks by S(Y) plus the length bonus: that is printed first,
    in order, and S(Y) beside it."""
    image = image_file(in_project, FIRST_TEST_IMAGE, tmp_path)
    status, out, err = fillblank(
        capsys, "fill", "--image", str(image), "--caption", "there ___ in the picture", "--top=3"
    )
    assert status == 0, err
    header, *rows = out.splitlines()
    bonus = json.loads((in_project / "data/length/shapes.json").read_text())["scales"]["captioners"]["length_bonus"]
    assert header.startswith("there ___ in the picture   (bibs, shapes, length auto; ")
    assert f"ranked by S(Y) + {bonus:g} x words, then S(Y)" in header
    assert 1 <= len(rows) <= 3
    ranked, scores = ([float(row.split()[column]) for row in rows] for column in (1, 2))
    assert ranked == sorted(ranked, reverse=True)
    for row, by, score in zip(rows, ranked, scores, strict=True):
        assert row.split(None, 3)[3].startswith("there [") and row.endswith("] in the picture")
        words = row.split("[")[1].split("]")[0].split()
        assert by == pytest.approx(score + bonus * len(words), abs=2e-3)

    result = fill_json(capsys, "--image", str(image), "--caption", "there ___ in the picture", "--top=3")
    assert result["length_bonus"] == bonus and [e["ranked"] for e in result["fills"]] == pytest.approx(ranked, abs=1e-3)


@pytest.mark.slow
def test_json_fills_keep_the_context_and_the_given_length_and_score_the_whole_sentence(capsys, in_project, tmp_path):
    image = image_file(in_project, FIRST_TEST_IMAGE + 1, tmp_path)
    result = fill_json(
        capsys, "--image", str(image), "--caption", "A small ___ is at the top.", "--length=2", "--top=4"
    )
    assert (result["left"], result["right"]) == (["a", "small"], ["is", "at", "the", "top"])
    assert (result["length"], result["unknown_words"]) == (2, [])
    assert len(result["fills"]) == 4
    vocab = Vocab.load(in_project / "data/prepared/shapes/vocab.json")
    feature = cli.image_features(cli.read_image(image), in_project / "data/features/shapes.h5")  # shape: (1, D)
    for entry in result["fills"]:
        assert len(entry["fill"]) == 2
        assert entry["sentence"] == " ".join(["a", "small", *entry["fill"], "is", "at", "the", "top"])
        expected = sentence_score(vocab, in_project, feature, entry["sentence"].split())
        assert entry["score"] == pytest.approx(expected, abs=1e-3)
    assert [e["score"] for e in result["fills"]] == sorted((e["score"] for e in result["fills"]), reverse=True)


@pytest.mark.slow
def test_words_outside_the_vocabulary_are_reported_not_hidden(capsys, in_project, tmp_path):
    image = image_file(in_project, 0, tmp_path)
    status, out, err = fillblank(
        capsys, "fill", "--image", str(image), "--caption", "a zebra ___ left of a gnu", "--length=1"
    )
    assert status == 0
    assert "not in the shapes vocabulary, read as <unk>: zebra, gnu" in err
    assert out.splitlines()[1].split(None, 2)[2].startswith("a zebra [")  # the user's words are printed as given

    result = fill_json(capsys, "--image", str(image), "--caption", "a zebra ___ left of a gnu", "--length", "1")
    assert result["unknown_words"] == ["zebra", "gnu"]


@pytest.mark.slow
def test_one_way_methods_give_one_fill_and_bibs_unknown_needs_auto_length(capsys, in_project, tmp_path):
    image = image_file(in_project, 0, tmp_path)
    result = fill_json(
        capsys, "--image", str(image), "--caption", "there is ___ shape in the image", "--method", "forward"
    )
    assert len(result["fills"]) == 1

    status, _, err = fillblank(
        capsys, "fill", "--image", str(image), "--caption", "a ___ circle", "--method", "bibs_unknown", "--length", "1"
    )
    assert status == 2 and "unknown-length setting only" in err


@pytest.mark.slow
def test_models_elsewhere_are_found_with_models_dir(capsys, in_project, tmp_path):
    elsewhere = tmp_path / "mine"
    shutil.copytree(in_project / "data/models/shapes", elsewhere)
    image = image_file(in_project, 0, tmp_path)
    result = fill_json(
        capsys, "--image", str(image), "--caption", "a ___ circle", "--models", str(elsewhere), "--top", "1"
    )
    assert len(result["fills"]) == 1


def models_of(dataset: str, project: Path, dest: Path) -> Path:
    """The project's captioners, their checkpoints saying they were trained on `dataset`."""
    dest.mkdir()
    for direction in ("forward", "backward"):
        checkpoint = read_checkpoint(project / f"data/models/shapes/{direction}.pt")
        checkpoint["config"]["dataset"] = dataset
        torch.save(checkpoint, dest / f"{direction}.pt")
    return dest


def test_the_dataset_is_the_one_the_checkpoints_name_and_another_is_refused(capsys, in_project, tmp_path):
    image = image_file(in_project, 0, tmp_path)
    ask = ("fill", "--image", str(image), "--caption", "a zebra ___ circle", "--length", "1")
    status, _, err = fillblank(capsys, *ask, "--dataset", "flickr8k")
    assert status == 2 and err.startswith(f"error: no trained models in {Path('data/models/flickr8k')} ")

    status, _, err = fillblank(
        capsys, *ask, "--dataset", "flickr8k", "--models", str(in_project / "data/models/shapes")
    )
    shapes = in_project / "data/models/shapes"
    assert (status, err) == (
        2,
        f"error: {shapes}: the captioners were trained on shapes, not flickr8k; drop --dataset\n",
    )
    flickr = models_of("flickr8k", in_project, tmp_path / "flickr8k-models")
    vocab, features = in_project / "data/prepared/shapes/vocab.json", in_project / "data/features/shapes.h5"
    given = ("--models", str(flickr), "--vocab", str(vocab), "--features", str(features))
    status, _, err = fillblank(capsys, *ask, *given)
    assert status == 0 and "warning: not in the flickr8k vocabulary, read as <unk>: zebra" in err
    result = fill_json(capsys, *ask[1:], *given)
    assert result["dataset"] == "flickr8k"


def test_a_length_rule_tuned_for_other_models_is_refused(capsys, in_project, tmp_path):
    image = image_file(in_project, 0, tmp_path)
    ask = ("fill", "--image", str(image), "--caption", "a ___ circle")
    assert fillblank(capsys, *ask)[0] == 0  # the project's own rule, tuned for its models
    other = tmp_path / "other.json"
    tuned = json.loads((in_project / "data/length/shapes.json").read_text())
    other.write_text(json.dumps(tuned | {"models": tuned["models"] | {"forward": "0" * 64}}))
    status, _, err = fillblank(capsys, *ask, "--length-rule", str(other))
    assert status == 2 and err.startswith(f"error: {other}: tuned for other models than ") and err.count("\n") == 1
    assert fillblank(capsys, *ask, "--length-rule", str(other), "--length", "2")[0] == 0  # a given length needs no rule


def test_a_swapped_pair_or_models_of_other_features_are_refused_not_decoded(capsys, in_project, tmp_path):
    image = image_file(in_project, 0, tmp_path)
    ask = ("fill", "--image", str(image), "--caption", "a ___ circle")
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    shutil.copy(in_project / "data/models/shapes/forward.pt", swapped / "backward.pt")
    shutil.copy(in_project / "data/models/shapes/backward.pt", swapped / "forward.pt")
    status, _, err = fillblank(capsys, *ask, "--models", str(swapped))
    assert status == 2 and "swapped/forward.pt: holds the backward model, not the forward one" in err
    other = tmp_path / "other.h5"  # the same backbone, so the photo's features would be fine, but not the models'
    shutil.copy(in_project / "data/features/shapes.h5", other)
    with h5py.File(other, "a") as file:
        file["features"][0] += 1
    status, _, err = fillblank(capsys, *ask, "--features", str(other))
    assert status == 2 and "the models were not trained on the same features" in err and str(other) in err


def test_a_vocab_file_that_is_not_one_is_one_line(capsys, in_project, tmp_path):
    image = image_file(in_project, 0, tmp_path)
    for content in ("not json", '{"images": []}'):
        (tmp_path / "vocab.json").write_text(content)
        status, _, err = fillblank(
            capsys, "fill", "--image", str(image), "--caption", "a ___ circle", "--vocab", str(tmp_path / "vocab.json")
        )
        assert status == 2 and err.count("\n") == 1 and "not a vocab.json" in err


def test_a_method_without_the_infiller_does_not_read_it(capsys, in_project, tmp_path):
    mine = tmp_path / "mine"
    shutil.copytree(in_project / "data/models/shapes", mine)
    (mine / "infiller.pt").write_bytes(b"broken")
    image = image_file(in_project, 0, tmp_path)
    assert (
        len(
            fill_json(
                capsys, "--image", str(image), "--caption", "a ___ circle", "--models", str(mine), "--method", "bibs"
            )["fills"]
        )
        >= 1
    )


# ---------------------------------------------------------------------------- the image's features


@pytest.mark.slow
def test_the_image_goes_through_the_backbone_and_transform_the_features_file_records(built_shapes, tmp_path):
    h5 = built_shapes / "data/features/shapes.h5"
    with h5py.File(h5) as file:
        recorded = file["features"][[3, 40]]
        image_ids = file["image_ids"][[3, 40]]
    for image_id, row in zip(image_ids, recorded, strict=True):
        computed = cli.image_features(cli.read_image(image_file(built_shapes, int(image_id), tmp_path)), h5)
        np.testing.assert_allclose(computed[0].numpy(), row, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_features_made_with_another_transform_are_refused(built_shapes, tmp_path):
    h5 = tmp_path / "shapes.h5"
    shutil.copy(built_shapes / "data/features/shapes.h5", h5)
    with h5py.File(h5, "a") as file:
        file.attrs["transform"] = "Resize(128)"
    with pytest.raises(UserError, match="records transform 'Resize\\(128\\)', but efficientnet_lite0 here gives"):
        cli.image_features(cli.read_image(image_file(built_shapes, 0, tmp_path)), h5)


# ---------------------------------------------------------------------------- what it must show


@pytest.mark.slow
def test_the_top_fill_is_the_original_words_for_most_test_blanks_at_ratio_a_quarter(capsys, in_project, tmp_path):
    captions = pq.read_table(in_project / "data/prepared/shapes/captions.parquet")
    test = blanks.table(captions, [0.25]).to_pylist()[::5]  # the first caption of each test image
    right = 0
    for row in test:
        image = image_file(in_project, row["image_id"], tmp_path)
        caption = " ".join([*row["left"], "___", *row["right"]])
        result = fill_json(capsys, "--image", str(image), "--caption", caption, "--top", "1")
        right += result["fills"][0]["fill"] == row["blank"]
    assert right > len(test) / 2, f"{right} of {len(test)}"
