"""Where each dataset comes from: one module per dataset, each with a `fetch` function.

`fetch(dest, source)` fills the empty folder `dest` with the dataset in one raw layout,
the same for every dataset, so that every later stage has one code path:

    dest/dataset_<name>.json   captions in Karpathy's split format:
                               {"images": [{"filename", "imgid", "split", "sentences":
                               [{"raw", "sentid", ...}], ...}], "dataset": "<name>"}
    dest/images/*.zip          the image archives, as published (or as generated); an
                               image is found by the base name of its `filename`

`source` is that dataset's entry under `sources` in params.yaml: for `shapes` the
generator's settings, for the real datasets `None` (official download) or a local folder
holding the same files. The `download` stage calls `fetch` on a temporary folder, records
every file's SHA-256 in `dest/SHA256SUMS`, and only then renames it into `data/raw/<name>`.
"""

from importlib import import_module
from types import ModuleType

from fillblank.params import DATASETS as NAMES  # declared once, as the fields of `params.Sources`


def module(name: str) -> ModuleType:
    """The source module of dataset `name` (`fillblank.data.sources.<name>`)."""
    if name not in NAMES:
        raise ValueError(f"unknown dataset {name!r}")
    return import_module(f"{__name__}.{name}")
