"""A tiny dataset with blanks and fills as the pipeline writes them, for evaluate and report.

`write_dataset(root)` writes, under `root`, the files of the contracts for dataset `shapes`:

    data/prepared/shapes/captions.parquet   3 test images, 2 captions each
    data/raw/shapes/images/shapes.zip       their PNG images
    data/blanks/shapes.parquet              every caption blanked at ratios 0.25 and 0.5
    data/fills/shapes/<method>.parquet      every method of `FILLERS`, both settings
                                            (bibs_unknown: unknown only)

and, when `root` holds a params.yaml, sets its `fill.methods` to those of `FILLERS`.

Each method fills in a way whose scores are known in advance (see `FILLERS`).
"""

import io
import json
import zipfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from PIL import Image

from fillblank.decode import registry

CAPTIONS = {
    10: ("a red circle is left of a blue square", "there is one red circle and one blue square"),
    11: ("a small green star is above a black diamond", "two shapes a green star over a black diamond"),
    12: ("three yellow triangles in a row", "there are three yellow triangles at the bottom"),
}
COLOURS = {10: (220, 40, 40), 11: (40, 160, 60), 12: (230, 200, 20)}
RATIOS = (0.25, 0.5)

# (fill of a blank, S(Y)) per method; "zzz" is in no caption, so it never matches.
FILLERS = {
    "forward": lambda blank: (["zzz"] * len(blank), -5.0),
    "backward": lambda blank: (["zzz"] * len(blank), -6.0),
    "fb_max": lambda blank: (["zzz"] * len(blank), -5.0),
    "fb_rerank": lambda blank: ([*blank[:-1], "zzz"], -3.0),  # all but the last word right
    "bibs": lambda blank: (list(blank), -1.0),
    "bibs_unknown": lambda blank: (list(blank), -1.0),
    "exact": lambda blank: (list(blank), -1.0),
}
KNOWN_ONLY_WRONG_LENGTH = "fb_rerank"  # in the unknown setting, fb_rerank picks one word too many

FILL_SCHEMA = pa.schema(
    [
        ("blank_id", pa.int64()),
        ("setting", pa.string()),
        ("fill", pa.list_(pa.string())),
        ("sentence", pa.string()),
        ("score", pa.float64()),
        ("length", pa.int64()),
        ("seconds", pa.float64()),
    ]
)


def split_blank(words: list[str], ratio: float) -> tuple[list[str], list[str], list[str]]:
    """The DESIGN's blank: round(r * n) words (at least one) centred, a word kept each side."""
    length = min(max(1, round(ratio * len(words))), len(words) - 2)
    start = (len(words) - length) // 2
    return words[:start], words[start : start + length], words[start + length :]


def write_dataset(root: Path) -> Path:
    captions, blanks = [], []
    for image_id, sentences in CAPTIONS.items():
        for n, raw in enumerate(sentences):
            sentence_id = image_id * 10 + n
            captions.append(
                {
                    "image_id": image_id,
                    "filename": f"shapes/{image_id:05d}.png",
                    "split": "test",
                    "sentence_id": sentence_id,
                    "raw": raw.capitalize() + ".",
                    "tokens": raw.split(),
                }
            )
            for ratio in RATIOS:
                left, blank, right = split_blank(raw.split(), ratio)
                blanks.append(
                    {
                        "blank_id": len(blanks),
                        "image_id": image_id,
                        "sentence_id": sentence_id,
                        "ratio": ratio,
                        "left": left,
                        "blank": blank,
                        "right": right,
                    }
                )

    if (root / "params.yaml").is_file():  # the stages read the fills of `fill.methods`: these
        settings = yaml.safe_load((root / "params.yaml").read_text())
        settings["fill"]["methods"] = list(FILLERS)
        (root / "params.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    write(root / "data/prepared/shapes/captions.parquet", pd.DataFrame(captions))
    write(root / "data/blanks/shapes.parquet", pd.DataFrame(blanks))
    mkdir(root / "data/length/shapes.json").write_text(json.dumps(tuned_length(0.0)))  # no bonus: S(Y) alone
    for method, filler in FILLERS.items():
        settings = ("unknown",) if method == "bibs_unknown" else ("known", "unknown")
        rows = []
        for setting in settings:
            for row in blanks:
                fill, score = filler(row["blank"])
                if setting == "unknown" and method == KNOWN_ONLY_WRONG_LENGTH:
                    fill = fill + ["zzz"]
                rows.append(
                    {
                        "blank_id": row["blank_id"],
                        "setting": setting,
                        "fill": fill,
                        "sentence": " ".join([*row["left"], *fill, *row["right"]]),
                        "score": score,
                        "length": len(fill),
                        "seconds": 0.01,
                    }
                )
        pq.write_table(
            pa.Table.from_pylist(rows, schema=FILL_SCHEMA), mkdir(root / f"data/fills/shapes/{method}.parquet")
        )

    with zipfile.ZipFile(mkdir(root / "data/raw/shapes/images/shapes.zip"), "w") as archive:
        for image_id, colour in COLOURS.items():
            png = io.BytesIO()
            Image.new("RGB", (64, 64), colour).save(png, "PNG")
            archive.writestr(f"shapes/{image_id:05d}.png", png.getvalue())
    return root


def write(path: Path, frame: pd.DataFrame) -> None:
    frame.to_parquet(mkdir(path), index=False)


def mkdir(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def tuned_length(bonus: float) -> dict:
    """A data/length/<dataset>.json that stage length could have written: `bonus` for every scale."""
    return {"scales": {name: {"length_bonus": bonus} for name in registry.scales()}}
