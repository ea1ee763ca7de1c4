"""Reading the pipeline's parquet tables (captions, blank sets, fills): a missing or broken
file, one without the columns asked for, or one whose columns of words are not lists of
words (a caption as one string would be read letter by letter), stops with one line saying
which and why."""

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fillblank.errors import UserError

WORD_LISTS = ("tokens", "left", "blank", "right", "fill")  # the columns of words, in every table that has them


def read(path: Path, columns: Sequence[str] | None = None, made_by: str | None = None) -> pa.Table:
    """The parquet table at `path`, only `columns` when given; `made_by` names the stage that
    writes it, for the hint when the file is missing."""
    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file" + (f" (run the {made_by} stage first)" if made_by else "")) from None
    except (pa.ArrowInvalid, OSError) as error:
        raise UserError(f"{path}: not a readable parquet file ({error})") from None
    if columns is None:
        return table
    if missing := [name for name in columns if name not in table.column_names]:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
    table = table.select(list(columns))
    for name in (name for name in columns if name in WORD_LISTS):
        check_words(table[name], f"{path}: column {name}")
    return table


def check_words(column: pa.ChunkedArray, where: str) -> None:
    """Stop unless every value of `column` is a list of strings, none of them null."""
    kind = column.type
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)) or not (
        pa.types.is_string(kind.value_type) or pa.types.is_large_string(kind.value_type)
    ):
        raise UserError(f"{where} holds {kind}, not lists of words")
    if column.null_count:
        raise UserError(f"{where}: row {pc.index(pc.is_null(column), True).as_py()} is null, not a list of words")
    words = pc.list_flatten(column)
    if words.null_count:
        row = pc.list_parent_indices(column)[pc.index(pc.is_null(words), True).as_py()]
        raise UserError(f"{where}: row {row} holds a null word")
