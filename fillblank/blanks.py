"""Blank sets: every test caption with a contiguous run of its words removed, once per ratio.

For ratio r and an n-word caption, k = round(r * n) words are removed (halves round up;
Python's `round` would send 2.5 to 2 but 3.5 to 4; r * n taken exactly, as the decimal r
is written, since 0.58 * 25 is 14.499999999999998 in floats), at most n - 2 so that a word stays on
each side whenever the caption allows, and at least one. The run is centred: (n - k) // 2
words stay on the left, the odd one out goes to the right. There is no sampling: the same
captions give the same blanks. A quick run may take the captions of the first `images`
test images only (by image id).

Both settings use the same rows: in the known-length setting a method is given
`len(blank)`, in the unknown-length setting it chooses the length itself.

Layout of `data/blanks/<ds>.parquet` (`table`), one row per (test caption, ratio), sorted
by sentence id, then ratio in the order of the params:

    blank_id     int64         0, 1, 2, ... in row order
    image_id     int64         the caption's image
    sentence_id  int64         the caption
    ratio        float64       the ratio it was cut at
    left         list<string>  the words before the blank (normalised, as in captions.parquet)
    blank        list<string>  the removed words
    right        list<string>  the words after the blank
"""

import math
from collections.abc import Sequence
from fractions import Fraction

import pyarrow as pa
import pyarrow.compute as pc

from fillblank.errors import UserError

SCHEMA = pa.schema(
    [
        ("blank_id", pa.int64()),
        ("image_id", pa.int64()),
        ("sentence_id", pa.int64()),
        ("ratio", pa.float64()),
        ("left", pa.list_(pa.string())),
        ("blank", pa.list_(pa.string())),
        ("right", pa.list_(pa.string())),
    ]
)


def cut(words: Sequence[str], ratio: float) -> tuple[list[str], list[str], list[str]]:
    """Split `words` into (left, blank, right) with the centred blank of `ratio`."""
    if not 0 < ratio < 1:
        raise UserError(f"blank ratio {ratio} is outside (0, 1)")
    n = len(words)
    if n == 0:
        raise ValueError("cannot blank an empty caption")
    length = max(1, min(math.floor(Fraction(str(ratio)) * n + Fraction(1, 2)), n - 2))
    start = (n - length) // 2
    return list(words[:start]), list(words[start : start + length]), list(words[start + length :])


def table(captions: pa.Table, ratios: Sequence[float], images: int | None = None, split: str = "test") -> pa.Table:
    """The blank set of the test captions in `captions` (columns of captions.parquet), of
    the first `images` test images if given; of another split's (`val`, to tune on) if asked."""
    test = captions.filter(pc.equal(captions["split"], split)).sort_by("sentence_id")
    if test.num_rows == 0:
        raise UserError(f"no captions in the {split} split to blank")
    if images is not None:
        first = pc.unique(test["image_id"]).sort()[:images]
        test = test.filter(pc.is_in(test["image_id"], first))
    rows = {name: [] for name in SCHEMA.names}
    for image_id, sentence_id, tokens in zip(
        *(test[name].to_pylist() for name in ("image_id", "sentence_id", "tokens")), strict=True
    ):
        if not tokens:
            raise UserError(f"{split} caption {sentence_id} (image {image_id}) has no words to blank")
        for ratio in ratios:
            left, blank, right = cut(tokens, ratio)
            for name, value in zip(
                SCHEMA.names, (len(rows["blank_id"]), image_id, sentence_id, ratio, left, blank, right), strict=True
            ):
                rows[name].append(value)
    return pa.table(rows, schema=SCHEMA)
