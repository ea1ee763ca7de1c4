"""Write to a temporary name beside the target, then rename: an interrupted stage never
leaves a half-written file under the final name.

The temporary is `.<name>.tmp-<pid>`. A process killed outright (kill -9, a power cut)
cannot remove its own, so the next write of the same target removes every such leftover
first; `.gitignore` keeps them out of `git status` meanwhile."""

import glob
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is renamed to `path`.

    On any exception (Ctrl-C included) the temporary file or folder is removed and the
    previous content of `path`, if any, is left untouched.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    for leftover in final.parent.glob(f".{glob.escape(final.name)}.tmp-*"):
        _remove(leftover)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        if tmp.is_dir():
            _remove(final)  # os.replace cannot replace a non-empty folder
        os.replace(tmp, final)
    finally:
        _remove(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
