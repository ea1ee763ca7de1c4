"""Reading the pipeline's parquet tables (captions, blank sets, fills): a missing or broken
file, or one without the columns asked for, stops with one line saying which and why."""

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from fillblank.errors import UserError


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
    return table.select(list(columns))
