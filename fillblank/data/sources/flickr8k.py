"""Flickr8k (Hodosh, Young & Hockenmaier, JAIR 2013): 8,091 Flickr photos with five
captions each, in Karpathy's splits (6,000 train, 1,000 val, 1,000 test images).

The official files, as `fetch` downloads them when `sources.flickr8k` is null:

    caption_datasets.zip   Karpathy's splits (see `splits`); dataset_flickr8k.json is kept
    Flickr8k_Dataset.zip   the photos, under `Flicker8k_Dataset/` (sic)

The photos were first handed out through a University of Illinois request form; the copy
every tool downloads now is the one below, checked by the MD5 that the torch dataset
packages publish for it (nobody publishes its SHA-256).

A local source folder holds `dataset_flickr8k.json` or `caption_datasets.zip`, and
`Flickr8k_Dataset.zip` (or the unpacked `Flicker8k_Dataset/` folder).
"""

from pathlib import Path

from fillblank.data.download import Remote, add_images, download, find_images, local_folder
from fillblank.data.sources.splits import CAPTION_DATASETS, find_split_file, split_file
from fillblank.errors import UserError

IMAGES = Remote(
    "https://github.com/jbrownlee/Datasets/releases/download/Flickr8k/Flickr8k_Dataset.zip",
    "md5:f18a1e2920de5bd84dae7cf08ec78978",
)


def fetch(dest: Path, source: str | None) -> None:
    if source is None:
        split_file("flickr8k", dest, None)
        download(IMAGES, dest / "images", "flickr8k")
        return
    folder = local_folder(source, "flickr8k")
    images = find_images(folder, "Flickr8k_Dataset", "Flicker8k_Dataset")
    if images is None:
        raise UserError(f"sources.flickr8k: {folder} holds no {IMAGES.name} (nor the unpacked Flicker8k_Dataset/)")
    if find_split_file(folder, "flickr8k") is None:  # a folder is meant to be offline: no silent download
        raise UserError(f"sources.flickr8k: {folder} holds no dataset_flickr8k.json (nor {CAPTION_DATASETS.name})")
    split_file("flickr8k", dest, folder)
    add_images(images, dest / "images")
