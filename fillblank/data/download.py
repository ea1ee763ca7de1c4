"""Files from the network or from a local copy, landing under their final name only when
complete.

`download(remote, folder, dataset)` fetches `remote.url` into `folder/.<name>.part` over
HTTP(S), resuming with a `Range` request when the connection drops or stalls, retrying
with growing waits, showing a progress bar; it checks the file against `remote.checksum`
(the registry entry in the dataset's source module) and only then renames it to
`folder/<name>`. Any failure removes the partial file and raises one `UserError` line
that says what happened and, where the network is the problem, how to point
`sources.<dataset>` at a local copy instead.

A local source folder (`sources.<dataset>` in params.yaml) holds the same files as the
official download, at its top or one folder down; images may also come as a tar or as
the unpacked folder, which `add_images` packs into an uncompressed zip so that every
dataset's images are `images/*.zip`. A folder holding both a zip and its unpacked copy is
refused: an edit to one would be silently ignored for the other. Symlinked folders are
read through, and listed (`files_below`) as they are read. Local files are not compared
with the official checksums (users may hold re-encoded copies); the `download` stage
records the SHA-256 of every file it keeps in `SHA256SUMS`.
"""

import gzip
import hashlib
import http.client
import os
import shutil
import socket
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from tqdm import tqdm

from fillblank.errors import UserError

CHUNK = 1 << 20
IMAGE_FORMS = (".zip", ".tar.gz", ".tgz", ".tar", "/")  # "/": the unpacked folder
EPOCH = (1980, 1, 1, 0, 0, 0)  # zip's earliest date: packed zips do not depend on when they were made
USER_AGENT = "fillblank/0.1 (research dataset download)"


@dataclass(frozen=True)
class Remote:
    """One published file: where it is and what it must hash to."""

    url: str
    checksum: str  # "sha256:<hex>"; "md5:<hex>" where the publisher gives nothing stronger

    @property
    def name(self) -> str:
        return PurePosixPath(urlsplit(self.url).path).name


class _Retry(Exception):
    """A transfer failed in a way that another try may fix (a drop, a stall, a 5xx)."""


def download(remote: Remote, folder: Path, dataset: str, *, tries: int = 6, wait_s: float = 2.0) -> Path:
    """Fetch `remote` into `folder`, verified; return the final path."""
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / f".{remote.name}.part"
    offline = f"to use a local copy instead, set sources.{dataset} in params.yaml to a folder holding {remote.name}"
    try:
        for attempt in range(1, tries + 1):
            try:
                _transfer(remote, part)
                break
            except _Retry as error:
                if attempt == tries:
                    gave_up = f"{error} (gave up after {tries} tries)"
                    raise UserError(f"cannot download {remote.url}: {gave_up}; {offline}") from None
                tqdm.write(f"{remote.name}: {error}; retrying in {wait_s * 2 ** (attempt - 1):.0f} s")
                time.sleep(wait_s * 2 ** (attempt - 1))
            except urllib.error.URLError as error:  # a 4xx, or no such host: another try will not help
                raise UserError(f"cannot download {remote.url}: {_describe(error, remote.url)}; {offline}") from None
        got = checksum(part, remote.checksum.split(":")[0])
        if got != remote.checksum:
            raise UserError(
                f"{remote.url}: checksum mismatch (expected {remote.checksum}, got {got}); removed the download"
            )
        final = folder / remote.name
        os.replace(part, final)
        return final
    finally:
        part.unlink(missing_ok=True)


def _transfer(remote: Remote, part: Path) -> None:
    """One try: continue `part` from its current size, or start over if the server cannot."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(remote.url, headers={"User-Agent": USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            if response.status != 206:  # the server sent the whole file: start over
                offset = 0
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length is not None else None
            with (
                part.open("ab" if offset else "wb") as file,
                tqdm(
                    total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=remote.name
                ) as bar,
            ):
                for block in iter(lambda: response.read(CHUNK), b""):
                    file.write(block)
                    bar.update(len(block))
                received = file.tell()
    except urllib.error.HTTPError as error:
        if error.code in (408, 429) or error.code >= 500:
            raise _Retry(f"HTTP {error.code} {error.reason}") from None
        raise
    except urllib.error.URLError as error:
        if isinstance(error.reason, socket.gaierror):
            raise
        raise _Retry(_describe(error, remote.url)) from None
    except (http.client.HTTPException, ConnectionError, TimeoutError) as error:
        raise _Retry(_describe(error, remote.url)) from None
    # http.client returns end-of-file, not an error, when a server closes early
    if total is not None and received < total:
        raise _Retry(f"connection closed after {received} of {total} bytes")


def _describe(error: Exception, url: str) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        if isinstance(error.reason, socket.gaierror):
            return f"host {urlsplit(url).hostname} not found ({error.reason.strerror})"
        error = error.reason if isinstance(error.reason, Exception) else error
    return str(error) or type(error).__name__


def checksum(path: Path, algorithm: str = "sha256") -> str:
    """`"<algorithm>:<hex digest>"` of the file at `path`."""
    with path.open("rb") as file:
        return f"{algorithm}:{hashlib.file_digest(file, algorithm).hexdigest()}"


def copy(path: Path, target: Path) -> Path:
    """Copy a local source file to `target`, with progress."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with (
        path.open("rb") as src,
        target.open("wb") as dst,
        tqdm(total=path.stat().st_size, unit="B", unit_scale=True, unit_divisor=1024, desc=path.name) as bar,
    ):
        for block in iter(lambda: src.read(CHUNK), b""):
            dst.write(block)
            bar.update(len(block))
    return target


def local_folder(source: str, dataset: str) -> Path:
    folder = Path(source).expanduser()
    if not folder.is_dir():
        raise UserError(f"sources.{dataset}: {source} is not a folder")
    return folder


def find(folder: Path, *names: str) -> Path | None:
    """The first of `names` (a trailing "/" asks for a folder) in `folder` or one folder down
    (not in `__MACOSX`, where macOS's zips keep resource forks)."""
    for name in names:
        want_dir = name.endswith("/")
        below = sorted(p for p in folder.glob(f"*/{name.rstrip('/')}") if p.parent.name != "__MACOSX")
        for path in (folder / name, *below):
            if path.is_dir() if want_dir else path.is_file():
                return path
    return None


def find_images(folder: Path, *stems: str) -> Path | None:
    """The image archive or folder named after one of `stems` (`train2014.zip`, `train2014/`, ...)."""
    found = [path for stem in stems for form in IMAGE_FORMS if (path := find(folder, stem + form))]
    if len(found) > 1:
        names = " and ".join(path.relative_to(folder).as_posix() for path in found)
        raise UserError(
            f"{folder}: holds the same images twice ({names}); keep one, so that an edit is never read from the other"
        )
    return found[0] if found else None


def files_below(folder: Path) -> list[Path]:
    """Every file below `folder`, in name order, through symlinked folders (each real folder once)."""
    seen, files = set(), []
    for top, subfolders, names in os.walk(folder, followlinks=True):
        status = os.stat(top)
        if (status.st_dev, status.st_ino) in seen:
            subfolders.clear()
            continue
        seen.add((status.st_dev, status.st_ino))
        files += [path for name in names if (path := Path(top) / name).is_file()]
    return sorted(files)


def add_images(found: Path, images: Path) -> Path:
    """Bring a zip as it is; pack a tar or a folder into `images/<stem>.zip`, uncompressed
    (JPEGs do not compress), with one fixed date (a folder's files in name order)."""
    if found.is_file() and found.suffix == ".zip":
        return copy(found, images / found.name)
    stem = found.name.removesuffix(".gz").removesuffix(".tgz").removesuffix(".tar")
    target = images / f"{stem}.zip"
    images.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:
        if found.is_dir():
            files = files_below(found)
            for path in tqdm(files, desc=f"packing {found.name}", unit="file"):
                with path.open("rb") as src:
                    _store(archive, path.relative_to(found.parent).as_posix(), path.stat().st_size, src)
        else:
            try:
                with tarfile.open(found) as tar:
                    for member in tqdm(tar, desc=f"packing {found.name}", unit="file"):
                        if member.isfile():
                            _store(archive, member.name, member.size, tar.extractfile(member))
            except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as error:
                raise UserError(f"{found}: not a readable tar archive ({error})") from None
    return target


def _store(archive: zipfile.ZipFile, name: str, size: int, src) -> None:
    info = zipfile.ZipInfo(name, EPOCH)
    info.file_size = size
    with archive.open(info, "w") as dst:
        shutil.copyfileobj(src, dst, CHUNK)
