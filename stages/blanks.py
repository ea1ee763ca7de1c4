"""Stage blanks@<dataset>: cut a blank out of every test caption, once per ratio.

Reads data/prepared/<dataset>/captions.parquet and data/features/<dataset>.skipped.json;
writes data/blanks/<dataset>.parquet (layout and rules: fillblank/blanks.py). Captions of
images the features stage skipped get no blanks: no method could fill them.
"""

import argparse
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fillblank import blanks, tables
from fillblank import params as params_module
from fillblank.atomic import atomic_path
from fillblank.data import sources
from fillblank.errors import UserError, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sources.NAMES)
    parser.add_argument("--captions", type=Path, default=None, help="default: data/prepared/<dataset>/captions.parquet")
    parser.add_argument("--skipped", type=Path, default=None, help="default: data/features/<dataset>.skipped.json")
    parser.add_argument("--out", type=Path, default=None, help="default: data/blanks/<dataset>.parquet")
    args = parser.parse_args()
    settings = params_module.load().blanks
    ratios = settings.ratios
    captions_path = args.captions or Path("data/prepared") / args.dataset / "captions.parquet"
    skipped_path = args.skipped or Path("data/features") / f"{args.dataset}.skipped.json"
    out = args.out or Path("data/blanks") / f"{args.dataset}.parquet"

    captions = tables.read(captions_path, ["image_id", "split", "sentence_id", "tokens"], made_by="prepare")
    if not skipped_path.is_file():
        raise UserError(f"{skipped_path}: no such file (run the features stage first)")
    skipped = [entry["image_id"] for entry in json.loads(skipped_path.read_text(encoding="utf-8"))["skipped"]]
    of_skipped = pc.is_in(captions["image_id"], pa.array(skipped, pa.int64()))
    left_out = captions.filter(pc.and_(of_skipped, pc.equal(captions["split"], "test"))).num_rows
    captions = captions.filter(pc.invert(of_skipped))
    table = blanks.table(captions, ratios, settings.test_images)
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp)
    lengths = pc.list_value_length(table["blank"]).to_pylist()
    print(
        f"{args.dataset}: {table.num_rows} blanks "
        f"({table.num_rows // len(ratios)} test captions x {len(ratios)} ratios), "
        f"{sum(lengths) / len(lengths):.2f} words each on average, at most {max(lengths)}; written to {out}; "
        f"{left_out} test captions of skipped images left out"
    )


if __name__ == "__main__":
    run(main)
