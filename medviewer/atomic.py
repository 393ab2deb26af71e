"""The one way medviewer writes a file: temp file beside it, fsync, rename, fsync the folder.

Readers never see half a file, a crash leaves the old file or the new one, and a failed write
leaves no temp file behind. Everything that writes a file that must survive a crash calls this.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def fsync_dir(folder: Path) -> None:
    """Make a rename inside `folder` durable."""
    if os.name == "nt":
        return  # Windows cannot open folders for fsync; its renames are durable on return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[Path], object], *, tmp: Path | None = None) -> None:
    """Call `write(tmp)` to fill a temp file, then make it `path` durably and atomically.

    `tmp` defaults to `path` + ".tmp" beside it (same file system, so the rename is atomic).
    """
    path = Path(path)
    tmp = tmp or path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as fp:
            os.fsync(fp.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes, *, tmp: Path | None = None) -> None:
    atomic_write(path, lambda p: p.write_bytes(data), tmp=tmp)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def atomic_write_json(path: Path, data: Any, *, indent: int | None = 1) -> None:
    atomic_write_text(path, json.dumps(data, indent=indent))
