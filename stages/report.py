"""Stage report@<dataset>: a gallery of the blanks where the methods differ most.

Reads data/fills/<dataset>/<method>.parquet of `fill.methods`, data/blanks/<dataset>.parquet, the captions in
data/prepared/<dataset>/captions.parquet and the images in data/raw/<dataset>/images/*.zip;
writes reports/<dataset>/examples.html, one standalone page (images embedded) with the
`report.examples` blanks whose fills differ most in sentence BLEU between methods.
"""

import argparse
from pathlib import Path

from fillblank import params as params_module
from fillblank.atomic import write_text
from fillblank.data import sources
from fillblank.errors import run
from fillblank.evaluate import read_results
from fillblank.report import gallery, pick_examples, thumbnails


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sources.NAMES)
    args = parser.parse_args()
    params = params_module.load()
    name = args.dataset
    out = Path("reports") / name / "examples.html"

    fills, blanks, captions = read_results(Path("."), name, params.fill.methods)
    examples = pick_examples(fills, blanks, captions, params.report.examples)
    images = thumbnails(Path("data/raw") / name / "images", {example["filename"] for example in examples})
    write_text(out, gallery(examples, images, f"{name}: where the methods differ most"))
    print(f"{name}: {len(examples)} examples in {out} (tables in reports/{name}/table.md)")


if __name__ == "__main__":
    run(main)
