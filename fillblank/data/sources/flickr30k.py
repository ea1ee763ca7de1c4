"""Flickr30k (Young, Lai, Hodosh & Hockenmaier, TACL 2014): 31,783 Flickr photos with
five captions each, in Karpathy's splits (29,000 train, 1,014 val, 1,000 test images).

The captions come from Karpathy's `caption_datasets.zip` (see `splits`), downloaded
unless the source folder holds it or `dataset_flickr30k.json`. The photos are handed out
only on request, so `sources.flickr30k` must name a folder holding them as
`flickr30k-images.tar.gz` (as handed out), `flickr30k-images.zip`, or the unpacked
`flickr30k-images/` folder.
"""

from pathlib import Path

from fillblank.data.download import add_images, find_images, local_folder
from fillblank.data.sources.splits import split_file
from fillblank.errors import UserError

REQUEST_FORM = "https://forms.illinois.edu/sec/229675"
HOMEPAGE = "https://shannon.cs.illinois.edu/DenotationGraph/"
HOW = (
    f"Flickr30k images are handed out on request: ask at {REQUEST_FORM} (see {HOMEPAGE}), then set "
    "sources.flickr30k in params.yaml to a folder holding flickr30k-images.tar.gz (or .zip, or the unpacked "
    "folder) and, for an offline machine, caption_datasets.zip"
)


def fetch(dest: Path, source: str | None) -> None:
    if source is None:
        raise UserError(HOW)
    folder = local_folder(source, "flickr30k")
    images = find_images(folder, "flickr30k-images")
    if images is None:
        raise UserError(f"sources.flickr30k: {folder} holds no flickr30k-images. {HOW}")
    split_file("flickr30k", dest, folder)
    add_images(images, dest / "images")
