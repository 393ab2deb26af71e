"""One medviewer window per workspace: an advisory lock that dies with its process."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from medviewer.workspace.errors import WorkspaceLocked


class AppLock:
    """Exclusive flock on `app.lock`; the OS releases it if the holder crashes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise WorkspaceLocked(
                f"{self.path.parent}: this workspace is already open in another medviewer "
                f"({holder}); close it there first"
            ) from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        since = time.strftime("%Y-%m-%d %H:%M", time.localtime(info["since"]))
        return f"process {info['pid']} on {info['host']} since {since}"
    except (ValueError, KeyError, OSError):
        return "another process"
