"""Read a caption file in Karpathy's split format into one table of captions.

Input: `dataset_<name>.json` as published in Karpathy's `caption_datasets.zip` (and as
`fillblank.data.sources` writes for every dataset):

    {"images": [{"filename": "x.jpg", "imgid": 0, "split": "train",
                 "sentences": [{"raw": "A dog runs.", "sentid": 0, ...}, ...], ...}, ...]}

Output columns (one row per caption, in file order), as written to `captions.parquet`:

    image_id     int64         the file's `imgid`
    filename     string        the image's file name, found in the dataset's image zips
    split        string        train | val | test (COCO's `restval` counts as train, as in
                               Karpathy's own training)
    sentence_id  int64         the sentence's `sentid`
    raw          string        the caption as published
    tokens       list<string>  `fillblank.data.text.normalise(raw)`

Real caption files have holes: an image listed without sentences, a caption of nothing
but punctuation. Those are dropped, not fatal: `read` returns them beside the table, one
`{"image_id", "filename", "sentence_id", "reason"}` each, and the prepare stage lists them
in `dropped.json`. A file that cannot be read as captions at all (not UTF-8, not JSON, an
entry without filename, imgid or split or with one of the wrong type, an unknown split, an
imgid or filename that two entries share, which would mix two images' features and
references) is one `UserError` naming the file and every bad entry, so that one run shows
them all. A UTF-8 byte-order mark, as Windows editors write, is accepted.
"""

import json
from pathlib import Path

import pyarrow as pa

from fillblank.data.text import normalise
from fillblank.errors import UserError

SPLITS = {"train": "train", "restval": "train", "val": "val", "test": "test"}

SCHEMA = pa.schema(
    [
        ("image_id", pa.int64()),
        ("filename", pa.string()),
        ("split", pa.string()),
        ("sentence_id", pa.int64()),
        ("raw", pa.string()),
        ("tokens", pa.list_(pa.string())),
    ]
)


Dropped = dict  # {"image_id": ..., "filename": ..., "sentence_id": ... or None, "reason": ...}
SHOWN = 3  # bad entries quoted in the error; the rest are counted


def read(path: str | Path) -> tuple[pa.Table, list[Dropped]]:
    """The captions of the file at `path`, and the images and captions it dropped."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not UTF-8 (byte {error.object[error.start]:#04x} at offset {error.start})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: not JSON ({error.msg} at line {error.lineno}, column {error.colno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise UserError(f"{path}: expected an object with an 'images' list (Karpathy's split format)")

    rows, dropped, problems = {name: [] for name in SCHEMA.names}, [], []
    owners: dict[tuple[str, object], str] = {}  # ("imgid" or "filename", value) -> the entry that used it first
    for position, image in enumerate(data["images"]):
        if not isinstance(image, dict):
            problems.append(f"entry #{position}: not an object")
            continue
        where = f"image {image.get('imgid', f'#{position}')} ({image.get('filename', 'no filename')})"
        if problem := entry_problem(image):
            problems.append(f"{where}: {problem}")
            continue
        if clash := [
            f"{key} {image[key]!r} is also {owners[key, image[key]]}'s"
            for key in ("imgid", "filename")
            if (key, image[key]) in owners
        ]:
            problems.append(f"{where}: {'; '.join(clash)}")
            continue
        owners |= {("imgid", image["imgid"]): where, ("filename", image["filename"]): where}
        entry = {"image_id": image["imgid"], "filename": image["filename"]}
        if not image.get("sentences"):
            dropped.append(entry | {"sentence_id": None, "reason": "no sentences"})
            continue
        for sentence in image["sentences"]:
            raw = sentence.get("raw")
            tokens = normalise(raw) if isinstance(raw, str) else []
            if not tokens:
                dropped.append(entry | {"sentence_id": sentence.get("sentid"), "reason": f"empty caption {raw!r}"})
                continue
            rows["image_id"].append(image["imgid"])
            rows["filename"].append(image["filename"])
            rows["split"].append(SPLITS[image["split"]])
            rows["sentence_id"].append(sentence.get("sentid"))
            rows["raw"].append(raw)
            rows["tokens"].append(tokens)
    if problems:
        more = f"; and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
        entries = "entry" if len(problems) == 1 else "entries"
        raise UserError(f"{path}: {len(problems)} bad {entries}: {'; '.join(problems[:SHOWN])}{more}")
    return pa.Table.from_pydict(rows, schema=SCHEMA), dropped


def entry_problem(image: dict) -> str | None:
    """Why one entry of the file's `images` cannot be read as an image's captions, or None."""
    if missing := [key for key in ("filename", "imgid", "split") if key not in image]:
        return f"missing {', '.join(missing)}"
    if not is_int(image["imgid"]):
        return f"imgid {image['imgid']!r} is not an integer"
    if not isinstance(image["filename"], str) or not image["filename"]:
        return f"filename {image['filename']!r} is not a file name"
    if not isinstance(image["split"], str) or image["split"] not in SPLITS:
        return f"unknown split {image['split']!r} (expected one of {', '.join(SPLITS)})"
    sentences = image.get("sentences") or []
    if not isinstance(sentences, list) or not all(isinstance(sentence, dict) for sentence in sentences):
        return "sentences is not a list of objects"
    if bad := [
        sentence["sentid"]
        for sentence in sentences
        if sentence.get("sentid") is not None and not is_int(sentence["sentid"])
    ]:
        return f"sentid {bad[0]!r} is not an integer"
    return None


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
