"""Stage features@<dataset>: CNN features of the dataset's images (fillblank/extract.py).

Reads the images listed in data/prepared/<dataset>/images.parquet from the zips in
data/raw/<dataset>/images/; writes data/features/<dataset>.h5 (layout: fillblank/features.py)
and, beside it, the list of images that could not be read, <dataset>.skipped.json.
"""

import argparse
from pathlib import Path

from fillblank import params as params_module
from fillblank import tables
from fillblank.atomic import check_writable
from fillblank.backbones import backbone
from fillblank.data import sources
from fillblank.errors import UserError, run
from fillblank.extract import extract


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sources.NAMES)
    parser.add_argument("--raw", type=Path, default=None, help="default: data/raw/<dataset>")
    parser.add_argument("--prepared", type=Path, default=None, help="default: data/prepared/<dataset>")
    parser.add_argument("--out", type=Path, default=Path("data/features"))
    args = parser.parse_args()
    settings = params_module.load().features
    raw = args.raw or Path("data/raw") / args.dataset
    listed = (args.prepared or Path("data/prepared") / args.dataset) / "images.parquet"
    out, report = args.out / f"{args.dataset}.h5", args.out / f"{args.dataset}.skipped.json"

    table = tables.read(listed, ["image_id", "filename"], made_by="prepare")
    images = list(zip(table["image_id"].to_pylist(), table["filename"].to_pylist(), strict=True))
    archives = sorted((raw / "images").glob("*.zip"))
    if not archives:
        raise UserError(f"{raw / 'images'}: no image zips (run `dvc repro download@{args.dataset}` first)")
    check_writable(out, report)

    net = backbone(settings.backbone, settings.weights)
    written, skipped = extract(
        images, archives, out, report, net, settings.batch_size, settings.workers, settings.max_skipped
    )
    print(f"{args.dataset}: {written} images x {net.dim} features ({net.name}, {net.weights}); {skipped} skipped")


if __name__ == "__main__":
    run(main)
