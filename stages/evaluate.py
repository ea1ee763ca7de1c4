"""Stage evaluate@<dataset>: score every method's fills; write the metrics, tables and plot data.

Reads data/fills/<dataset>/<method>.parquet for each method of `fill.methods`,
data/blanks/<dataset>.parquet and, as references, every caption in
data/prepared/<dataset>/captions.parquet, and the length rule's tuned bonus
data/length/<dataset>.json, with which the search error compares fills of unknown length.
Writes

    metrics/<dataset>.json                         layout in fillblank/evaluate.py
    reports/<dataset>/table.md                     one table per setting and metric
    reports/<dataset>/plots/<setting>.csv          ratio, method and every metric (`dvc plots`)
    reports/<dataset>/plots/<metric>.svg           CIDEr and BLEU-4 against the ratio, as images

Fills that do not match the blank set stop the stage before anything is written.
"""

import argparse
import json
from pathlib import Path

from fillblank import params as params_module
from fillblank.atomic import atomic_path, write_text
from fillblank.data import sources
from fillblank.decode import length
from fillblank.errors import run
from fillblank.evaluate import evaluate, read_provenance, read_results
from fillblank.report import chart, plot_csvs, tables

CHARTS = ("CIDEr", "BLEU-4")  # drawn as images; every metric is in the CSVs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sources.NAMES)
    args = parser.parse_args()
    params = params_module.load()
    name = args.dataset
    reports = Path("reports") / name

    fills, blanks, captions = read_results(Path("."), name, params.fill.methods)
    print(f"{name}: scoring {', '.join(params.fill.methods)} on {len(blanks)} blanks")
    bonuses = length.bonuses(params.fill, length.tuned_path(name))  # the search error counts the oracle's
    metrics = evaluate(fills, blanks, captions, bonuses) | {
        "provenance": read_provenance(Path("data/fills") / name, params.fill.methods)
    }

    write_text(Path("metrics") / f"{name}.json", json.dumps(metrics, indent=2) + "\n")
    write_text(reports / "table.md", tables(metrics, f"{name}: filling the blanks"))
    with atomic_path(reports / "plots") as tmp:
        for relative, text in plot_csvs(metrics).items():
            (tmp / relative).parent.mkdir(parents=True, exist_ok=True)
            (tmp / relative).write_text(text, encoding="utf-8")
        for metric in CHARTS:
            (tmp / f"{metric}.svg").write_text(
                chart(metrics, metric, f"{name}: {metric} against the blank ratio"), encoding="utf-8"
            )
    print(
        f"{name}: tables in {reports / 'table.md'}, metrics in metrics/{name}.json, plot data in {reports / 'plots'}/"
    )


if __name__ == "__main__":
    run(main)
