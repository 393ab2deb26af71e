"""`python -m medviewer.tether PARENT GRACE -- COMMAND...`: run COMMAND as this process's child
and end its whole tree when PARENT (the process that started us) dies, even by SIGKILL, or when
we get SIGTERM/SIGINT; exit as COMMAND did (its code, or the signal that ended it).

Why a process of its own: a `medviewer worker`'s training must not outlive the worker, and
PR_SET_PDEATHSIG reaches only a direct child, while torchrun starts every rank in a new session
of its own, out of reach of a process-group kill. This process is a child subreaper
(PR_SET_CHILD_SUBREAPER), so ranks orphaned by a torchrun that died first are re-parented here
and still found by walking /proc. Linux only; elsewhere `processes.tethered` does not use it.
Built by `processes.tethered`.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

_PR_SET_CHILD_SUBREAPER = 36
_POLL = 0.2  # seconds between looks at the parent


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (children first), from /proc's parent links."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        p = todo.pop(0)
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def end_tree(grace: float) -> None:
    """SIGTERM every process below this one (torchrun stops its ranks), SIGKILL what is left
    after `grace` seconds."""
    me = os.getpid()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in descendants(me):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + (grace if sig == signal.SIGTERM else 5.0)
        while descendants(me) and time.monotonic() < deadline:
            time.sleep(0.05)  # orphans re-parented here stay zombies until we exit: uncounted


def main(argv: list[str]) -> int:
    parent, grace = int(argv[0]), float(argv[1])
    command = argv[argv.index("--") + 1 :]
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # no prctl: orphaned ranks escape the walk, the process group kill remains
    stop = []
    # A handler, not SIG_IGN: a handled signal is reset for the command at exec, an ignored one
    # would be inherited.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.append(True))
    child = subprocess.Popen(command)
    ended = False
    while child.poll() is None:
        if not ended and (stop or os.getppid() != parent):
            end_tree(grace)
            ended = True
        time.sleep(_POLL)
    if not ended and os.getppid() != parent:
        end_tree(grace)  # the command ended, but what it started may not have
    code = child.returncode
    if code < 0:  # ended by a signal: end the same way, so the caller reads what happened
        if -code not in (signal.SIGKILL, signal.SIGSTOP):  # no handler to undo on these
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
