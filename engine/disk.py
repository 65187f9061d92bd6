"""Writes a full disk cannot leave half done, and the one error a full disk becomes.

Files are written beside their place and renamed into it (a rename needs no space): a write that runs out of
space, or a process killed mid-write, leaves the files there were whole, and frees what it had written.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from engine.errors import DiskFull

FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
NEARLY_FULL_BYTES = 2**20
# How libraries that do not raise OSError say it: safetensors, SQLite.
FULL_WORDS = ("No space left on device", "Disk quota exceeded", "database or disk is full")


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc`, or an exception that caused it, says the disk is full."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, DiskFull) or (isinstance(seen, OSError) and seen.errno in FULL_ERRNOS):
            return True
        if any(words in str(seen) for words in FULL_WORDS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _nearly_full(folder: Path) -> bool:
    """After a failed write: torch.save given a path says only "unexpected pos", so the space left tells."""
    return shutil.disk_usage(folder).free < NEARLY_FULL_BYTES


def disk_full_message(folder: Path) -> str:
    free = shutil.disk_usage(folder).free if folder.exists() else 0
    return (f"The disk holding {folder} is full ({free / 2**20:.1f} MiB free): nothing was half written, and what "
            "was saved before is whole. Free some space, then try again.")


@contextmanager
def written_whole(folder: Path) -> Iterator[Path]:
    """A staging folder beside `folder` to write files into; at the end each file is renamed into `folder`
    (files already there and not written again are kept). On any error `folder` is as it was."""
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.saving-", dir=folder.parent))
    try:
        try:
            yield staging
        except Exception as exc:
            if is_disk_full(exc) or _nearly_full(staging):
                shutil.rmtree(staging, ignore_errors=True)  # the space it took, back before the message is written
                raise DiskFull(disk_full_message(folder)) from exc
            raise
        for item in staging.iterdir():
            os.replace(item, folder / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_file(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write `path` whole through `write(file)`: into a file beside it, then renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        with partial.open("wb") as file:  # an open file, not a path: torch.save then reports ENOSPC as OSError
            write(file)
        partial.replace(path)
    except Exception as exc:
        full = is_disk_full(exc) or _nearly_full(path.parent)
        partial.unlink(missing_ok=True)
        if full:
            raise DiskFull(disk_full_message(path.parent)) from exc
        raise
