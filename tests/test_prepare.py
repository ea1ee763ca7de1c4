"""The prepare stage: Karpathy JSON in, vocab.json and captions.parquet out, or one clear line."""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import SHARED_FLICKR8K, run_stage

from fillblank.data import karpathy
from fillblank.data.text import Vocab
from fillblank.errors import UserError


def image(imgid, split, *raws, filename=None):
    return {
        "filename": filename or f"{imgid}.jpg",
        "imgid": imgid,
        "split": split,
        "sentences": [{"raw": raw, "sentid": 10 * imgid + k} for k, raw in enumerate(raws)],
    }


def write_dataset(folder: Path, *images, name="toy") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"dataset_{name}.json"
    path.write_text(json.dumps({"images": list(images), "dataset": name}))
    return path


def prepare(tmp_path: Path, params_file, min_count=1):
    params_file({"min_count: 5": f"min_count: {min_count}"})
    return run_stage("prepare", "shapes", "--raw", "raw", "--out", "out", cwd=tmp_path)


def test_captions_table_has_one_row_per_sentence(tmp_path):
    path = write_dataset(tmp_path, image(0, "train", "A dog runs.", "Dogs run!"), image(1, "restval", "A cat."))
    table, dropped = karpathy.read(path)
    assert dropped == []
    assert table.column_names == ["image_id", "filename", "split", "sentence_id", "raw", "tokens"]
    assert table["tokens"].to_pylist() == [["a", "dog", "runs"], ["dogs", "run"], ["a", "cat"]]
    assert table["split"].to_pylist() == ["train", "train", "train"]  # restval trains, as in Karpathy's code
    assert table["sentence_id"].to_pylist() == [0, 1, 10]


def test_vocabulary_counts_the_train_split_only(tmp_path, params_file):
    write_dataset(
        tmp_path / "raw",
        image(0, "train", "a dog", "a dog"),
        image(1, "val", "a zebra zebra"),
        image(2, "test", "a yak"),
        name="shapes",
    )
    result = prepare(tmp_path, params_file, min_count=2)
    assert result.returncode == 0, result.stderr
    vocab = Vocab.load(tmp_path / "out" / "vocab.json")
    assert vocab.words[4:] == ("a", "dog")
    assert vocab.counts[4:] == (2, 2)
    captions = pq.read_table(tmp_path / "out" / "captions.parquet")
    assert captions.num_rows == 4  # every split is kept; only counting is train-only


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\xff\xfe not text", "not UTF-8"),
        (b'{"images": [', "not JSON"),
        (b"[1, 2]", "expected an object with an 'images' list"),
        (
            json.dumps({"images": [image(4, "tran", "a dog", filename="four.jpg")]}).encode(),
            "1 bad entry: image 4 (four.jpg): unknown split 'tran'",
        ),
        (
            json.dumps(
                {
                    "images": [
                        image(4, "tran", "a dog"),
                        {"imgid": 5},
                        image(6, "val", "ok"),
                        7,
                        image(8, "x"),
                        image(9, "y"),
                    ]
                }
            ).encode(),
            "5 bad entries: image 4 (4.jpg): unknown split 'tran' (expected one of train, restval, val, test); "
            "image 5 (no filename): missing filename, split; entry #3: not an object; and 2 more",
        ),
        (
            json.dumps(
                {"images": [image(7, "train", "a dog", filename="a.jpg"), image(7, "test", "a cat", filename="b.jpg")]}
            ).encode(),
            "1 bad entry: image 7 (b.jpg): imgid 7 is also image 7 (a.jpg)'s",
        ),
        (
            json.dumps({"images": [image(1, "train", "a dog"), image(2, "test", "a dog", filename="1.jpg")]}).encode(),
            "1 bad entry: image 2 (1.jpg): filename '1.jpg' is also image 1 (1.jpg)'s",
        ),
        (
            json.dumps(
                {
                    "images": [
                        image(1, "train", "a") | {"imgid": "1"},
                        image(2, "train", "b") | {"imgid": True},
                        image(3, "train", "c") | {"imgid": 1.5},
                        image(4, "train", "d") | {"imgid": None},
                    ]
                }
            ).encode(),
            "4 bad entries: image 1 (1.jpg): imgid '1' is not an integer; "
            "image True (2.jpg): imgid True is not an integer; "
            "image 1.5 (3.jpg): imgid 1.5 is not an integer; and 1 more",
        ),
        (
            json.dumps(
                {
                    "images": [
                        image(1, 3, "a"),
                        image(2, "train") | {"sentences": ["a dog"]},
                        image(3, "train", filename=5),
                    ]
                }
            ).encode(),
            "3 bad entries: image 1 (1.jpg): unknown split 3 (expected one of train, restval, val, test); "
            "image 2 (2.jpg): sentences is not a list of objects; "
            "image 3 (5): filename 5 is not a file name",
        ),
    ],
    ids=[
        "not-utf8",
        "not-json",
        "not-karpathy",
        "unknown-split",
        "every-problem-at-once",
        "one-imgid-two-images",
        "one-filename-two-ids",
        "imgid-not-an-integer",
        "wrong-types",
    ],
)
def test_bad_caption_files_give_one_line_naming_file_and_entry(tmp_path, content, message):
    path = tmp_path / "dataset_bad.json"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")) as error:
        karpathy.read(path)
    assert str(error.value).startswith(str(path))
    assert "\n" not in str(error.value)


def test_a_byte_order_mark_accents_and_dropped_captions_are_handled(tmp_path, params_file):
    content = json.dumps(
        {
            "images": [
                image(0, "train", "Un café naïve", "?!", "a dog"),
                image(1, "train") | {"sentences": []},
                image(2, "test", "a cat"),
                image(3, "val", "a cow"),
            ]
        },
        ensure_ascii=False,
    )
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "dataset_shapes.json").write_bytes(content.encode("utf-8-sig"))  # as Windows editors save it
    params_file({"max_dropped: 0.01": "max_dropped: 0.5"})
    result = run_stage("prepare", "shapes", "--raw", "raw", "--out", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("dropped: 2 (listed in out/dropped.json)")
    captions = pq.read_table(tmp_path / "out" / "captions.parquet")
    assert captions["tokens"].to_pylist() == [["un", "cafe", "naive"], ["a", "dog"], ["a", "cat"], ["a", "cow"]]
    assert json.loads((tmp_path / "out" / "dropped.json").read_text()) == {
        "captions": 4,
        "dropped": [
            {"image_id": 0, "filename": "0.jpg", "sentence_id": 1, "reason": "empty caption '?!'"},
            {"image_id": 1, "filename": "1.jpg", "sentence_id": None, "reason": "no sentences"},
        ],
    }


def test_more_dropped_than_max_dropped_stops_the_stage_in_one_line(tmp_path, params_file):
    write_dataset(tmp_path / "raw", image(0, "train", "a dog", "!!"), name="shapes")
    result = prepare(tmp_path, params_file)
    assert result.returncode == 2 and not (tmp_path / "out").exists()
    assert result.stderr == (
        "error: raw: 1 captions or images dropped (50.0%, more than prepare.max_dropped 1.0%): "
        "image 0 (0.jpg): empty caption '!!'\n"
    )


def test_a_bad_file_stops_the_stage_and_keeps_the_previous_output(tmp_path, params_file):
    every_split = image(0, "train", "a dog"), image(2, "val", "a cow"), image(3, "test", "a yak")
    write_dataset(tmp_path / "raw", *every_split, name="shapes")
    assert prepare(tmp_path, params_file).returncode == 0
    before = (tmp_path / "out" / "vocab.json").read_bytes()

    write_dataset(tmp_path / "raw", *every_split, image(1, "nope", "a cat"), name="shapes")
    result = prepare(tmp_path, params_file)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "unknown split 'nope'" in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "out" / "vocab.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "params.yaml", "raw"]  # no temporary left


@pytest.mark.parametrize(
    "missing, why",
    [
        ("train", "the vocabulary and the models are learnt from it"),
        ("val", "training stops early on it, and the length rule is tuned on it"),
        ("test", "the blank sets are cut from it"),
    ],
)
def test_an_empty_split_stops_the_stage_before_any_image_is_read(tmp_path, params_file, missing, why):
    images = [image(n, split, "a dog") for n, split in enumerate(("train", "val", "test")) if split != missing]
    write_dataset(tmp_path / "raw", *images, name="shapes")
    result = prepare(tmp_path, params_file)
    assert (result.returncode, result.stderr) == (2, f"error: raw: no captions in the {missing} split; {why}\n")
    assert not (tmp_path / "out").exists()


def test_the_images_to_extract_are_listed_apart_from_the_captions(tmp_path, params_file):
    """Stage features reads images.parquet, which a caption's text does not change."""
    every_split = [image(2, "train", "a dog", "two dogs"), image(1, "val", "a cow"), image(3, "test", "a yak")]
    write_dataset(tmp_path / "raw", *every_split, name="shapes")
    assert prepare(tmp_path, params_file).returncode == 0
    listed = (tmp_path / "out" / "images.parquet").read_bytes()
    assert pq.read_table(tmp_path / "out" / "images.parquet").to_pydict() == {
        "image_id": [1, 2, 3],
        "filename": ["1.jpg", "2.jpg", "3.jpg"],
    }
    every_split[0] = image(2, "train", "a dog, fixed by hand", "two dogs")
    write_dataset(tmp_path / "raw", *every_split, name="shapes")
    assert prepare(tmp_path, params_file).returncode == 0
    assert (tmp_path / "out" / "images.parquet").read_bytes() == listed


@pytest.mark.skipif(not SHARED_FLICKR8K.exists(), reason="needs ../shared/data/flickr8k-dev")
def test_flickr8k_vocabulary_is_the_same_twice_byte_for_byte(tmp_path, params_file):
    params_file()
    first = run_stage("prepare", "flickr8k", "--raw", str(SHARED_FLICKR8K), "--out", "one", cwd=tmp_path)
    second = run_stage("prepare", "flickr8k", "--raw", str(SHARED_FLICKR8K), "--out", "two", cwd=tmp_path)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    one, two = (tmp_path / d / "vocab.json" for d in ("one", "two"))
    assert one.read_bytes() == two.read_bytes()
    vocab = Vocab.load(one)
    assert 1000 < len(vocab) < 5000 and vocab.words[4:7] == ("a", "in", "the")
    assert (tmp_path / "one" / "captions.parquet").read_bytes() == (tmp_path / "two" / "captions.parquet").read_bytes()
