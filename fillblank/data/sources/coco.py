"""MS COCO captions (Lin et al., ECCV 2014; Chen et al., 2015): 123,287 photos with about
five captions each, in Karpathy's splits (113,287 train incl. restval, 5,000 val, 5,000 test).

The official files, as `fetch` downloads them when `sources.coco` is null:

    caption_datasets.zip   Karpathy's splits (see `splits`); dataset_coco.json is kept
    train2014.zip          the photos, under `train2014/`   (13.5 GB)
    val2014.zip            the photos, under `val2014/`     (6.6 GB)

A local source folder holds either the same files (the image zips may be the unpacked
`train2014/` and `val2014/` folders), or the official caption annotations instead of
Karpathy's splits: `captions_train<year>.json` and `captions_val<year>.json` (or
`annotations_trainval<year>.zip`) for 2014 or 2017, with `train<year>` and `val<year>`
images (zips or folders). Those are written in Karpathy's layout as `dataset_coco.json`:
official train images are `train`; official val images, in id order, give the first
min(5000, half) to `val`, as many again to `test`, and the rest to `restval` (as
Karpathy's 2014 split does, whose sizes this reproduces though not its draw).
"""

import json
import zipfile
from collections import defaultdict
from pathlib import Path

from fillblank.atomic import write_text
from fillblank.data.download import Remote, add_images, download, find, find_images, local_folder
from fillblank.data.sources.splits import CAPTION_DATASETS, find_split_file, split_file
from fillblank.errors import UserError

TRAIN2014 = Remote(
    "http://images.cocodataset.org/zips/train2014.zip",
    "sha256:ede4087e640bddba550e090eae701092534b554b42b05ac33f0300b984b31775",
)
VAL2014 = Remote(
    "http://images.cocodataset.org/zips/val2014.zip",
    "sha256:fe9be816052049c34717e077d9e34aa60814a55679f804cd043e3cbee3b9fde0",
)
HELD_OUT = 5000  # images each in val and test, as in Karpathy's split


def fetch(dest: Path, source: str | None) -> None:
    if source is None:
        split_file("coco", dest, None)
        for remote in (TRAIN2014, VAL2014):
            download(remote, dest / "images", "coco")
        return
    folder = local_folder(source, "coco")
    images = [find_images(folder, "train2014"), find_images(folder, "val2014")]
    if find_split_file(folder, "coco") and all(images):
        split_file("coco", dest, folder)
    else:
        images = _from_annotations(folder, dest)
    for found in images:
        add_images(found, dest / "images")


def _from_annotations(folder: Path, dest: Path) -> list[Path]:
    """Write `dest/dataset_coco.json` from the official annotations of 2014 or else 2017;
    return that year's image archives."""
    for year in ("2014", "2017"):
        images = [find_images(folder, f"train{year}"), find_images(folder, f"val{year}")]
        if not all(images):
            continue
        annotations = [_annotations(folder, split, year) for split in ("train", "val")]
        if all(annotations):
            write_text(dest / "dataset_coco.json", json.dumps(karpathy_layout(*annotations, year)))
            return images
    raise UserError(
        f"sources.coco: {folder} holds neither Karpathy's {CAPTION_DATASETS.name} (or dataset_coco.json) with "
        "train2014 and val2014 images, nor captions_train<year>.json and captions_val<year>.json (or "
        "annotations_trainval<year>.zip) with train<year> and val<year> images (zips or folders)"
    )


def _annotations(folder: Path, split: str, year: str) -> dict | None:
    """`captions_<split><year>.json` from `folder`, or from its annotations zip; None if neither."""
    name = f"captions_{split}{year}.json"
    path = find(folder, name) or find(folder, f"annotations_trainval{year}.zip")
    if path is None:
        return None
    try:
        if path.suffix == ".json":
            return json.loads(path.read_bytes())
        with zipfile.ZipFile(path) as zipped:
            return json.loads(zipped.read(f"annotations/{name}"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: cannot read {name} ({error})") from None


def karpathy_layout(train: dict, val: dict, year: str) -> dict:
    """Official caption annotations (`{"images": [{"id", "file_name"}], "annotations":
    [{"id", "image_id", "caption"}]}`) in Karpathy's layout; see the module docstring."""
    val_ids = sorted(image["id"] for image in val["images"])
    held_out = min(HELD_OUT, len(val_ids) // 2)
    split = {image["id"]: "train" for image in train["images"]}
    for position, image_id in enumerate(val_ids):
        split[image_id] = "val" if position < held_out else "test" if position < 2 * held_out else "restval"
    captions = defaultdict(list)
    for annotation in sorted(train["annotations"] + val["annotations"], key=lambda a: a["id"]):
        captions[annotation["image_id"]].append(annotation["caption"].strip())

    images, sentid = [], 0
    for filepath, data in ((f"train{year}", train), (f"val{year}", val)):
        for image in sorted(data["images"], key=lambda i: i["id"]):
            raws = captions[image["id"]]
            sentids = list(range(sentid, sentid + len(raws)))
            sentid += len(raws)
            images.append(
                {
                    "filepath": filepath,
                    "filename": image["file_name"],
                    "imgid": len(images),
                    "cocoid": image["id"],
                    "split": split[image["id"]],
                    "sentids": sentids,
                    "sentences": [
                        {"raw": raw, "sentid": i, "imgid": len(images)} for raw, i in zip(raws, sentids, strict=True)
                    ],
                }
            )
    return {"images": images, "dataset": "coco"}
