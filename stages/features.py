"""Stage features@<dataset>: CNN features of the dataset's images (see fillblank/features.py).

Reads the images listed in data/prepared/<dataset>/captions.parquet from the zips in
data/raw/<dataset>/images/; writes data/features/<dataset>.h5 and, beside it, the list of
images that could not be read, <dataset>.skipped.json.
"""

import argparse
from pathlib import Path

from fillblank import features, tables
from fillblank import params as params_module
from fillblank.data import sources
from fillblank.errors import UserError, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sources.NAMES)
    parser.add_argument("--raw", type=Path, default=None, help="default: data/raw/<dataset>")
    parser.add_argument("--prepared", type=Path, default=None, help="default: data/prepared/<dataset>")
    parser.add_argument("--out", type=Path, default=Path("data/features"))
    args = parser.parse_args()
    settings = params_module.load().features
    raw = args.raw or Path("data/raw") / args.dataset
    captions = (args.prepared or Path("data/prepared") / args.dataset) / "captions.parquet"

    table = tables.read(captions, ["image_id", "filename"], made_by="prepare")
    images = set(zip(table["image_id"].to_pylist(), table["filename"].to_pylist()))
    archives = sorted((raw / "images").glob("*.zip"))
    if not archives:
        raise UserError(f"{raw / 'images'}: no image zips (run `dvc repro download@{args.dataset}` first)")

    net = features.backbone(settings.backbone, settings.weights)
    written, skipped = features.extract(
        sorted(images),
        archives,
        args.out / f"{args.dataset}.h5",
        args.out / f"{args.dataset}.skipped.json",
        net,
        settings.batch_size,
        settings.workers,
        settings.max_skipped,
    )
    print(f"{args.dataset}: {written} images x {net.dim} features ({net.name}, {net.weights}); {skipped} skipped")


if __name__ == "__main__":
    run(main)
