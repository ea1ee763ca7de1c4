"""The real datasets' `fetch`: from local folders in their published shapes, and from the
network as served by a loopback HTTP server on 127.0.0.1 (no other host is reached)."""

import functools
import hashlib
import io
import json
import socket
import tarfile
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from fillblank.data import karpathy
from fillblank.data.download import Remote
from fillblank.data.sources import coco, flickr8k, flickr30k, splits
from fillblank.errors import UserError
from stages.source import manifest


def jpeg(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (seed * 40 % 256, 90, 200)).save(buffer, "JPEG")
    return buffer.getvalue()


def split_json(dataset: str, filenames: list[str]) -> dict:
    return {
        "dataset": dataset,
        "images": [
            {"filename": name, "imgid": i, "split": "train", "sentences": [{"raw": f"photo {i}", "sentid": i}]}
            for i, name in enumerate(filenames)
        ],
    }


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def caption_datasets(path: Path) -> Path:
    """A small stand-in for Karpathy's caption_datasets.zip."""
    return write_zip(
        path,
        {
            f"dataset_{name}.json": json.dumps(split_json(name, ["a.jpg", "b.jpg"])).encode()
            for name in ("flickr8k", "flickr30k", "coco")
        },
    )


def names_in(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        return sorted(archive.namelist())


def test_flickr8k_from_a_folder_laid_out_like_the_official_download(tmp_path):
    source = tmp_path / "flickr8k-copy"
    source.mkdir()
    (source / "dataset_flickr8k.json").write_text(json.dumps(split_json("flickr8k", ["a.jpg"])))
    write_zip(source / "Flickr8k_Dataset.zip", {"Flicker8k_Dataset/a.jpg": jpeg(1)})
    dest = tmp_path / "raw"
    flickr8k.fetch(dest, str(source))
    assert (dest / "dataset_flickr8k.json").read_bytes() == (source / "dataset_flickr8k.json").read_bytes()
    assert (dest / "images/Flickr8k_Dataset.zip").read_bytes() == (source / "Flickr8k_Dataset.zip").read_bytes()
    assert karpathy.read(dest / "dataset_flickr8k.json")[0]["filename"].to_pylist() == ["a.jpg"]


def test_an_unpacked_image_folder_and_the_split_zip_are_accepted(tmp_path):
    source = tmp_path / "copy"
    caption_datasets(source / "caption_datasets.zip")
    for i, name in enumerate(("b.jpg", "a.jpg")):
        (source / "Flicker8k_Dataset").mkdir(parents=True, exist_ok=True)
        (source / "Flicker8k_Dataset" / name).write_bytes(jpeg(i))
    dest = tmp_path / "raw"
    flickr8k.fetch(dest, str(source))
    assert json.loads((dest / "dataset_flickr8k.json").read_text())["dataset"] == "flickr8k"
    packed = dest / "images/Flicker8k_Dataset.zip"
    assert names_in(packed) == ["Flicker8k_Dataset/a.jpg", "Flicker8k_Dataset/b.jpg"]
    with zipfile.ZipFile(packed) as archive:
        assert archive.read("Flicker8k_Dataset/a.jpg") == (source / "Flicker8k_Dataset/a.jpg").read_bytes()


def test_a_zip_unpacked_beside_itself_is_refused(tmp_path):
    source = tmp_path / "copy"
    (source / "dataset_flickr8k.json").parent.mkdir()
    (source / "dataset_flickr8k.json").write_text(json.dumps(split_json("flickr8k", ["a.jpg"])))
    write_zip(source / "Flickr8k_Dataset.zip", {"Flicker8k_Dataset/a.jpg": jpeg(1)})
    for folder in ("Flicker8k_Dataset", "__MACOSX/Flicker8k_Dataset"):  # what `unzip` leaves
        (source / folder).mkdir(parents=True)
        (source / folder / "a.jpg").write_bytes(jpeg(2))  # say, a photo fixed by hand: which one is meant?
    with pytest.raises(
        UserError, match=r"holds the same images twice \(Flickr8k_Dataset.zip and Flicker8k_Dataset\); keep one"
    ):
        flickr8k.fetch(tmp_path / "raw", str(source))


def test_images_in_a_symlinked_folder_are_packed_and_listed_as_dependencies(tmp_path):
    elsewhere = tmp_path / "disk2"
    elsewhere.mkdir()
    (elsewhere / "b.jpg").write_bytes(jpeg(2))
    source = tmp_path / "copy"
    (source / "Flicker8k_Dataset").mkdir(parents=True)
    (source / "Flicker8k_Dataset" / "a.jpg").write_bytes(jpeg(1))
    (source / "Flicker8k_Dataset" / "more").symlink_to(elsewhere)
    (source / "Flicker8k_Dataset" / "loop").symlink_to(source / "Flicker8k_Dataset")  # a cycle: walked once
    (source / "dataset_flickr8k.json").write_text(json.dumps(split_json("flickr8k", ["a.jpg", "b.jpg"])))
    flickr8k.fetch(tmp_path / "raw", str(source))
    assert names_in(tmp_path / "raw/images/Flicker8k_Dataset.zip") == [
        "Flicker8k_Dataset/a.jpg",
        "Flicker8k_Dataset/more/b.jpg",
    ]
    listed = [name for name, size, mtime in manifest("flickr8k", str(source))["files"]]
    assert "Flicker8k_Dataset/more/b.jpg" in listed  # so editing it re-runs download


def test_a_corrupt_split_zip_is_one_line_and_leaves_no_partial_file(tmp_path):
    source = tmp_path / "copy"
    with zipfile.ZipFile(write_zip(source / "caption_datasets.zip", {}), "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("dataset_flickr8k.json", json.dumps(split_json("flickr8k", [f"{i}.jpg" for i in range(500)])))
    data = bytearray((source / "caption_datasets.zip").read_bytes())
    data[200:260] = bytes(60)  # a damaged download or disk
    (source / "caption_datasets.zip").write_bytes(data)
    with pytest.raises(
        UserError, match=r"caption_datasets.zip: dataset_flickr8k.json inside cannot be read \(error: Error -3"
    ):
        splits.split_file("flickr8k", tmp_path / "raw", source)
    assert list((tmp_path / "raw").iterdir()) == []


def test_a_local_folder_without_images_or_captions_says_what_is_missing(tmp_path):
    (tmp_path / "dataset_flickr8k.json").write_text("{}")
    with pytest.raises(UserError, match=r"sources.flickr8k: .* holds no Flickr8k_Dataset.zip"):
        flickr8k.fetch(tmp_path / "raw", str(tmp_path))
    (tmp_path / "dataset_flickr8k.json").rename(tmp_path / "Flickr8k_Dataset.zip")  # images, but no captions
    with pytest.raises(
        UserError, match=r"sources.flickr8k: .* holds no dataset_flickr8k.json \(nor caption_datasets.zip\)$"
    ):
        flickr8k.fetch(tmp_path / "raw", str(tmp_path))
    with pytest.raises(UserError, match="sources.flickr8k: .*nowhere is not a folder"):
        flickr8k.fetch(tmp_path / "raw", str(tmp_path / "nowhere"))


@pytest.fixture
def web(tmp_path):
    """A loopback HTTP server for the files in tmp_path/web; `url(name)` of each."""
    root = tmp_path / "web"
    root.mkdir()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, lambda name: f"http://127.0.0.1:{server.server_address[1]}/{name}"
    server.shutdown()
    server.server_close()


def registered(path: Path, url: str) -> Remote:
    return Remote(url, "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest())


def test_flickr8k_from_the_network_keeps_its_split_file_and_the_image_zip(web, tmp_path, monkeypatch):
    root, url = web
    splits_zip = caption_datasets(root / "caption_datasets.zip")
    images_zip = write_zip(root / "Flickr8k_Dataset.zip", {"Flicker8k_Dataset/a.jpg": jpeg(1)})
    monkeypatch.setattr(splits, "CAPTION_DATASETS", registered(splits_zip, url("caption_datasets.zip")))
    monkeypatch.setattr(flickr8k, "IMAGES", registered(images_zip, url("Flickr8k_Dataset.zip")))
    dest = tmp_path / "raw"
    flickr8k.fetch(dest, None)
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert files == ["dataset_flickr8k.json", "images/Flickr8k_Dataset.zip"]
    assert json.loads((dest / "dataset_flickr8k.json").read_text())["dataset"] == "flickr8k"


def test_no_network_and_no_source_says_how_to_set_sources(tmp_path, monkeypatch):
    def offline(host, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", offline)
    for module, dataset in ((flickr8k, "flickr8k"), (coco, "coco")):
        with pytest.raises(UserError, match=f"not found.*set sources.{dataset} in params.yaml to a folder"):
            module.fetch(tmp_path / dataset, None)


def test_flickr30k_without_a_source_says_where_to_request_the_images(tmp_path):
    with pytest.raises(UserError) as error:
        flickr30k.fetch(tmp_path / "raw", None)
    assert flickr30k.REQUEST_FORM in str(error.value) and "sources.flickr30k" in str(error.value)


def test_flickr30k_images_as_handed_out_become_a_zip(tmp_path):
    source = tmp_path / "f30k"
    source.mkdir()
    (source / "dataset_flickr30k.json").write_text(json.dumps(split_json("flickr30k", ["a.jpg"])))
    with tarfile.open(source / "flickr30k-images.tar.gz", "w:gz") as tar:
        for name in ("a.jpg", "b.jpg"):
            data = jpeg(len(name))
            info = tarfile.TarInfo(f"flickr30k-images/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    dest = tmp_path / "raw"
    flickr30k.fetch(dest, str(source))
    assert names_in(dest / "images/flickr30k-images.zip") == ["flickr30k-images/a.jpg", "flickr30k-images/b.jpg"]
    assert (dest / "dataset_flickr30k.json").exists()


def test_coco_with_karpathys_split_and_the_2014_zips(tmp_path):
    source = tmp_path / "coco"
    caption_datasets(source / "caption_datasets.zip")
    write_zip(source / "train2014.zip", {"train2014/COCO_train2014_000000000001.jpg": jpeg(1)})
    write_zip(source / "val2014.zip", {"val2014/COCO_val2014_000000000002.jpg": jpeg(2)})
    dest = tmp_path / "raw"
    coco.fetch(dest, str(source))
    assert sorted(p.name for p in (dest / "images").iterdir()) == ["train2014.zip", "val2014.zip"]
    assert json.loads((dest / "dataset_coco.json").read_text())["dataset"] == "coco"


def official(split: str, year: str, ids: list[int]) -> dict:
    return {
        "images": [{"id": i, "file_name": f"{i:012d}.jpg"} for i in ids],
        "annotations": [
            {"id": 10 * i + k, "image_id": i, "caption": f"A photo number {i}, take {k}. "}
            for i in ids
            for k in range(2)
        ],
    }


def test_coco_from_the_official_2017_annotations_in_karpathys_layout(tmp_path):
    source = tmp_path / "coco"
    (source / "annotations").mkdir(parents=True)
    (source / "annotations/captions_train2017.json").write_text(json.dumps(official("train", "2017", [5, 3])))
    (source / "annotations/captions_val2017.json").write_text(json.dumps(official("val", "2017", [9, 7, 8])))
    (source / "train2017").mkdir()
    for i in (3, 5):
        (source / "train2017" / f"{i:012d}.jpg").write_bytes(jpeg(i))
    write_zip(source / "val2017.zip", {f"val2017/{i:012d}.jpg": jpeg(i) for i in (7, 8, 9)})
    dest = tmp_path / "raw"
    coco.fetch(dest, str(source))

    table, _ = karpathy.read(dest / "dataset_coco.json")
    by_image = dict(zip(table["filename"].to_pylist(), table["split"].to_pylist(), strict=True))
    # train images are train; val images in id order: one to val, one to test, the rest train (restval)
    assert by_image == {
        "000000000003.jpg": "train",
        "000000000005.jpg": "train",
        "000000000007.jpg": "val",
        "000000000008.jpg": "test",
        "000000000009.jpg": "train",
    }
    assert table["raw"].to_pylist()[:2] == ["A photo number 3, take 0.", "A photo number 3, take 1."]
    assert len(set(table["sentence_id"].to_pylist())) == 10
    assert sorted(p.name for p in (dest / "images").iterdir()) == ["train2017.zip", "val2017.zip"]
    assert names_in(dest / "images/train2017.zip") == ["train2017/000000000003.jpg", "train2017/000000000005.jpg"]


def test_coco_from_a_folder_with_neither_form_says_what_it_needs(tmp_path):
    write_zip(tmp_path / "train2014.zip", {"train2014/x.jpg": jpeg(1)})
    with pytest.raises(UserError, match="sources.coco: .* holds neither Karpathy's caption_datasets.zip"):
        coco.fetch(tmp_path / "raw", str(tmp_path))
