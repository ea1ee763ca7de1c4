"""A Flickr8k-shaped source folder with the oddities of real downloads and hand-edited
files, made here and run through the whole pipeline at small sizes: every odd item is
handled (dropped, skipped, converted) and counted, and nothing stops or raises."""

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import clone, sh
from PIL import Image

WORDS = ["a dog runs on the grass", "a red ball on the grass", "two dogs play with a ball", "a cat sits on a mat"]


def encoded(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format, **options)
    return buffer.getvalue()


def awkward_images() -> dict[str, bytes]:
    """Good photos in every awkward format, and three files named .jpg that are no image."""
    rng = np.random.default_rng(0)
    photo = lambda: Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8))  # noqa: E731
    rotated = Image.Exif()
    rotated[0x0112] = 6
    good = {
        "rgb.jpg": encoded(photo(), "JPEG"),
        "grey.jpg": encoded(photo().convert("L"), "JPEG"),
        "cmyk.jpg": encoded(photo().convert("CMYK"), "JPEG"),
        "rgba.png": encoded(photo().convert("RGBA"), "PNG"),
        "deep.png": encoded(Image.fromarray(rng.integers(0, 65536, (40, 60), dtype=np.uint16)), "PNG"),
        "exif.jpg": encoded(photo(), "JPEG", exif=rotated),
        "tiny.png": encoded(Image.new("RGB", (1, 1), "blue"), "PNG"),
        "rgb2.jpg": encoded(photo(), "JPEG"),
        "rgb3.jpg": encoded(photo(), "JPEG"),
    }
    broken = {"truncated.jpg": good["rgb.jpg"][:300], "empty.jpg": b"", "text.jpg": b"no pixels here"}
    return good | broken


def source_folder(folder: Path) -> Path:
    """dataset_flickr8k.json saved with a BOM, with accents, an empty caption and an image
    without sentences; Flickr8k_Dataset.zip with the images above."""
    images = awkward_images()
    splits = {"rgb.jpg": "test", "truncated.jpg": "test", "tiny.png": "test", "rgb2.jpg": "val", "empty.jpg": "val"}
    entries = []
    for imgid, name in enumerate(images):
        sentences = [{"raw": WORDS[(imgid + k) % len(WORDS)], "sentid": 10 * imgid + k} for k in range(3)]
        entries.append({"filename": name, "imgid": imgid, "split": splits.get(name, "train"), "sentences": sentences})
    entries[0]["sentences"].append({"raw": "Un café naïve sur l'herbe", "sentid": 9})
    entries[1]["sentences"].append({"raw": "?!", "sentid": 19})  # nothing left once normalised
    entries.append({"filename": "unlisted.jpg", "imgid": 99, "split": "train", "sentences": []})  # and not in the zip
    folder.mkdir(parents=True)
    (folder / "dataset_flickr8k.json").write_bytes(
        json.dumps({"images": entries}, ensure_ascii=False).encode("utf-8-sig")
    )
    with zipfile.ZipFile(folder / "Flickr8k_Dataset.zip", "w") as archive:
        for name, data in images.items():
            archive.writestr(f"Flicker8k_Dataset/{name}", data)
    return folder


SMALL = {
    "datasets": ["flickr8k"],
    "prepare": {"min_count": 1, "max_dropped": 0.2},
    "features": {"max_skipped": 0.3, "workers": 0},
    "train": {"overrides": {"flickr8k": {"embed": 16, "hidden": 16, "max_epochs": 2, "patience": 1}}},
    "infiller": {
        "overrides": {
            "flickr8k": {"width": 16, "heads": 2, "layers": 1, "feedforward": 32, "max_epochs": 2, "patience": 1}
        }
    },
    "report": {"examples": 2},
    "fill": {"methods": ["forward", "bibs"], "beam": 2, "max_length": 3},
}


@pytest.mark.slow  # the whole pipeline on 13 images: about a minute
def test_every_awkward_input_is_handled_counted_and_never_a_traceback(tmp_path):
    source = source_folder(tmp_path / "flickr8k")
    project = clone(tmp_path / "project", SMALL | {"sources": {"flickr8k": str(source)}})
    out = sh("dvc", "repro", cwd=project)
    assert "Traceback" not in out
    assert "dropped: 2 (listed in data/prepared/flickr8k/dropped.json)" in out  # "?!" and the image without sentences
    assert "; 3 skipped" in out  # truncated, empty, not an image
    assert "3 test captions of skipped images left out" in out  # truncated.jpg is a test image

    dropped = json.loads((project / "data/prepared/flickr8k/dropped.json").read_text())["dropped"]
    assert [(d["filename"], d["reason"]) for d in dropped] == [
        ("grey.jpg", "empty caption '?!'"),
        ("unlisted.jpg", "no sentences"),
    ]
    skipped = json.loads((project / "data/features/flickr8k.skipped.json").read_text())["skipped"]
    assert sorted(s["filename"] for s in skipped) == ["empty.jpg", "text.jpg", "truncated.jpg"]
    tokens = pq.read_table(project / "data/prepared/flickr8k/captions.parquet")["tokens"].to_pylist()
    assert ["un", "cafe", "naive", "sur", "lherbe"] in tokens  # accents folded, not letters lost
    metrics = json.loads((project / "metrics/flickr8k.json").read_text())
    assert set(metrics["known"]) == {"forward", "bibs"}  # every stage ran on what was left
