"""Write to a temporary name beside the target, then rename: an interrupted stage never
leaves a half-written file under the final name.

The temporary is `.<name>.tmp-<pid>`. A process killed outright (kill -9, a power cut)
cannot remove its own, so the next write of the same target removes every such leftover
first, and `remove_leftovers` (stage source, on every `dvc repro`) those of processes no
longer running, even when DVC restores the target from its cache instead of writing it.
`.gitignore` and `.dvcignore` keep them out of `git status` and of DVC's hashes meanwhile."""

import glob
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fillblank.errors import UserError


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


def check_writable(*paths: str | os.PathLike) -> None:
    """Stop with one line unless a file can be written where each of `paths` goes (in its
    folder, or in the nearest folder above it that exists: nothing is created here). A
    stage calls this before its work, so that a read-only or blocked folder is found in a
    second, not after hours."""
    for path in map(Path, paths):
        there = next(folder for folder in (path.parent, *path.parent.parents) if folder.exists() or folder == Path())
        if not there.is_dir():
            raise UserError(f"{there}: not a folder, so {path} cannot be written")
        probe = there / f".{path.name}.tmp-{os.getpid()}"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as error:
            raise UserError(f"{there}: cannot write {path.name} there ({error.strerror})") from None


def remove_leftovers(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporaries below `folder` whose process is gone; return them."""
    removed = []
    for path in Path(folder).rglob(".*.tmp-*"):
        pid = path.name.rpartition(".tmp-")[2]
        if pid.isdigit() and not running(int(pid)):
            _remove(path)
            removed.append(path)
    return removed


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
