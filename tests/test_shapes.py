import json
import random
from collections import Counter
from pathlib import Path

import pytest

from fillblank.data.sources import shapes
from fillblank.data.text import normalise
from fillblank.params import ShapesSource

SMALL = ShapesSource(seed=0, train=60, val=10, test=10, image_size=64)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("shapes")
    shapes.fetch(dest, SMALL)
    return dest


def test_same_seed_gives_byte_identical_files(generated, tmp_path):
    shapes.fetch(tmp_path, SMALL)
    for name in ("dataset_shapes.json", "images/shapes.zip"):
        assert (tmp_path / name).read_bytes() == (generated / name).read_bytes(), name


def test_another_seed_gives_other_scenes(generated, tmp_path):
    shapes.fetch(tmp_path, SMALL.model_copy(update={"seed": 1}))
    assert (tmp_path / "dataset_shapes.json").read_bytes() != (generated / "dataset_shapes.json").read_bytes()


def test_layout_is_karpathy_json_and_an_image_zip(generated):
    import zipfile

    data = json.loads((generated / "dataset_shapes.json").read_text())
    assert Counter(image["split"] for image in data["images"]) == {"train": 60, "val": 10, "test": 10}
    with zipfile.ZipFile(generated / "images" / "shapes.zip") as archive:
        names = set(archive.namelist())
    assert all(f"shapes/{image['filename']}" in names for image in data["images"])
    assert all(len(image["sentences"]) == 5 for image in data["images"])


def test_every_caption_parses_back_to_a_true_claim_about_its_scene(generated):
    data = json.loads((generated / "dataset_shapes.json").read_text())
    for image in data["images"]:
        things = [shapes.Thing(**thing) for thing in image["scene"]]
        for sentence in image["sentences"]:
            words = normalise(sentence["raw"])
            assert 5 <= len(words) <= 16, words
            assert shapes.holds(shapes.parse(words), things), (words, things)


def test_a_false_or_ungrammatical_caption_is_caught():
    red_left_of_blue = [shapes.Thing("circle", "red", "small", 1, 0), shapes.Thing("square", "blue", "large", 1, 2)]
    assert shapes.holds(
        shapes.parse(["a", "red", "circle", "is", "left", "of", "a", "blue", "square"]), red_left_of_blue
    )
    assert shapes.holds(
        shapes.parse(["a", "blue", "square", "is", "right", "of", "a", "red", "circle"]), red_left_of_blue
    )
    assert not shapes.holds(
        shapes.parse(["a", "blue", "square", "is", "left", "of", "a", "red", "circle"]), red_left_of_blue
    )
    assert not shapes.holds(shapes.parse(["there", "are", "two", "red", "circles"]), red_left_of_blue)
    assert not shapes.holds(shapes.parse(["a", "large", "red", "circle", "is", "at", "the", "left"]), red_left_of_blue)
    for wrong in ("there is two red circles", "an red circle is at the left", "a red circles is above a blue square"):
        with pytest.raises(ValueError):
            shapes.parse(wrong.split())


def test_captions_need_both_sides_of_a_blank():
    # The same left context is finished differently depending on the words to the right.
    rng = random.Random(0)
    starts = Counter()
    for _ in range(300):
        things = shapes.scene(rng)
        for words in shapes.captions(things, rng):
            if words[:2] == ["there", "are"] or words[:2] == ["there", "is"]:
                starts[words[1], words[-1].endswith("s")] += 1
    assert starts["are", True] and starts["is", False]  # number agreement across the caption


def test_default_size_has_a_vocabulary_of_at_least_40_words():
    rng = random.Random(0)
    words = Counter(w for _ in range(2000) for caption in shapes.captions(shapes.scene(rng), rng) for w in caption)
    assert len([w for w, c in words.items() if c >= 5]) >= 40
