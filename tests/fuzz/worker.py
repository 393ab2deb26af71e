"""One fuzz worker: runs what a user meets on each file it is sent, in-process, and reports.

Started by tests/fuzz/harness.py as `python -m tests.fuzz.worker WORKDIR MEMORY_BYTES`. It reads
a file path per line on stdin, runs `info --verify`, `import` (into a fresh workspace) and
`render` through `medviewer.cli.main`, and writes one JSON line per file on its stdout. Its
address space is capped (RLIMIT_AS), so a blow-up is a MemoryError here, not a swapping host;
the harness enforces the time limit by killing it.
"""

from __future__ import annotations

import contextlib
import faulthandler
import io
import json
import os
import resource
import shutil
import sys
import traceback
from pathlib import Path

OUTPUT_KEPT = 4000  # characters of each command's output sent back


def commands(path: Path, workdir: Path) -> list[list[str]]:
    return [
        ["info", "--verify", str(path)],
        ["import", "--workspace", str(workdir / "workspace"), str(path)],
        ["render", str(path), "--out", str(workdir / "render.png")],
    ]


def _cap_memory(extra: int) -> None:
    """Allow `extra` bytes of address space beyond what the imports took."""
    with open("/proc/self/status") as fp:
        vm = next(int(line.split()[1]) << 10 for line in fp if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (vm + extra, vm + extra))


def _peak_rss() -> int:
    """This process's peak resident memory, VmHWM. Not getrusage's ru_maxrss: Linux keeps that
    across exec, so a worker started from a pytest that had grown to 2.5 GB reported 2.5 GB."""
    with open("/proc/self/status") as fp:
        return next(int(line.split()[1]) << 10 for line in fp if line.startswith("VmHWM:"))


def run_one(cli: object, argv: list[str]) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            code = cli(argv)  # type: ignore[operator]
        except BaseException as e:  # noqa: BLE001 - escaping main() is what we look for
            code = None
            out.write(f"escaped medviewer.cli.main: {type(e).__name__}\n")
            out.write(traceback.format_exc())
    text = out.getvalue()
    if len(text) > OUTPUT_KEPT:
        text = text[:1000] + "\n...\n" + text[-(OUTPUT_KEPT - 1000) :]
    return {"argv": argv, "code": code, "output": text}


def main() -> int:
    workdir = Path(sys.argv[1])
    memory = int(sys.argv[2])
    # Results go on the real stdout; anything C code prints to fd 1 goes to the stderr log.
    report = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    faulthandler.enable()  # a crash in a decoder leaves its stack in the log
    from medviewer.cli import main as cli

    _cap_memory(memory)
    for line in sys.stdin:
        path = Path(line.rstrip("\n"))
        own = workdir / f"worker-{os.getpid()}"
        own.mkdir(exist_ok=True)
        results = [run_one(cli, argv) for argv in commands(path, own)]
        shutil.rmtree(own, ignore_errors=True)
        peak = _peak_rss()
        report.write(json.dumps({"path": str(path), "results": results, "peak_rss": peak}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
