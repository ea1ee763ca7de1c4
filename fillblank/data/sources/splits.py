"""Karpathy's split file, shared by flickr8k, flickr30k and coco.

`caption_datasets.zip` (Karpathy & Fei-Fei, CVPR 2015) holds `dataset_flickr8k.json`,
`dataset_flickr30k.json` and `dataset_coco.json`: the captions with the train/val/test
splits that captioning papers report on. A dataset's raw folder keeps only its own file.
"""

import shutil
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from fillblank.data.download import Remote, copy, download, find
from fillblank.errors import UserError

CAPTION_DATASETS = Remote(
    "https://cs.stanford.edu/people/karpathy/deepimagesent/caption_datasets.zip",
    "sha256:4cfd70132527b80933105e5829dc9034eaab9573482e2e680abbab6130244817",
)


def find_split_file(folder: Path, dataset: str) -> Path | None:
    """A local `dataset_<dataset>.json`, or else `caption_datasets.zip`, in `folder`."""
    return find(folder, f"dataset_{dataset}.json", CAPTION_DATASETS.name)


def split_file(dataset: str, dest: Path, folder: Path | None) -> Path:
    """Write `dest/dataset_<dataset>.json`, from `folder` when it holds the file (or the
    zip), or else downloaded."""
    found = find_split_file(folder, dataset) if folder is not None else None
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / f"dataset_{dataset}.json"
    if found is not None and found.suffix == ".json":
        return copy(found, target)
    archive = found or download(CAPTION_DATASETS, dest, dataset)
    try:
        with zipfile.ZipFile(archive) as zipped:
            member = next(n for n in zipped.namelist() if PurePosixPath(n).name == target.name)
            with zipped.open(member) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst)
    except (zipfile.BadZipFile, StopIteration):
        raise UserError(f"{archive}: not Karpathy's {CAPTION_DATASETS.name} (no {target.name} inside)") from None
    except (
        zlib.error,
        NotImplementedError,
        RuntimeError,
        EOFError,
    ) as error:  # corrupt, Deflate64, encrypted, cut short
        target.unlink(missing_ok=True)
        raise UserError(f"{archive}: {target.name} inside cannot be read ({type(error).__name__}: {error})") from None
    finally:
        if found is None:
            archive.unlink()  # the download: the raw folder keeps only this dataset's file
    return target
