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

Every problem a user can have with such a file (not UTF-8, not JSON, an image without
sentences, an empty caption, an unknown split) is one `UserError` naming file and entry.
"""

import json
from pathlib import Path

import pyarrow as pa

from fillblank.data.text import normalise
from fillblank.errors import UserError

SPLITS = {"train": "train", "restval": "train", "val": "val", "test": "test"}

SCHEMA = pa.schema([
    ("image_id", pa.int64()),
    ("filename", pa.string()),
    ("split", pa.string()),
    ("sentence_id", pa.int64()),
    ("raw", pa.string()),
    ("tokens", pa.list_(pa.string())),
])


def read(path: str | Path) -> pa.Table:
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
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

    rows = {name: [] for name in SCHEMA.names}
    for position, image in enumerate(data["images"]):
        where = f"{path}: image {image.get('imgid', f'#{position}')} ({image.get('filename', 'no filename')})"
        missing = [key for key in ("filename", "imgid", "split") if key not in image]
        if missing:
            raise UserError(f"{where}: missing {', '.join(missing)}")
        if image["split"] not in SPLITS:
            raise UserError(f"{where}: unknown split {image['split']!r} (expected one of {', '.join(SPLITS)})")
        if not image.get("sentences"):
            raise UserError(f"{where}: has no sentences")
        for sentence in image["sentences"]:
            raw = sentence.get("raw")
            tokens = normalise(raw) if isinstance(raw, str) else []
            if not tokens:
                raise UserError(f"{where}, sentence {sentence.get('sentid')}: empty caption {raw!r}")
            rows["image_id"].append(image["imgid"])
            rows["filename"].append(image["filename"])
            rows["split"].append(SPLITS[image["split"]])
            rows["sentence_id"].append(sentence.get("sentid"))
            rows["raw"].append(raw)
            rows["tokens"].append(tokens)
    return pa.Table.from_pydict(rows, schema=SCHEMA)
