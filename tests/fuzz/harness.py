"""Run mutants through the CLI in worker processes, with a time limit and a memory cap each.

Each mutant ends as one of: ok (every command succeeded), error (a command refused it with a
clear message), traceback (a Python traceback, the CLI's "unexpected error" line, or an
exception out of main(): an unhandled bug), hang (over the time limit; the worker is killed
and a fresh one goes on), crash (the worker died, e.g. a segfault in a decoder).
`python -m tests.fuzz.harness [MUTANTS]` prints the counts; the test asserts on them.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tests.fuzz.mutate import mutant

REPO = Path(__file__).resolve().parents[2]
KINDS = ("ok", "error", "traceback", "hang", "crash")
# What an unhandled exception looks like in the output: a traceback, the top-level handler's
# line for unexpected errors, and scan's catch-all for a file it could not describe.
_BUG_MARKS = ("Traceback (most recent call last)", "MEDVIEWER_DEBUG=1", "unexpected error")


@dataclass
class Outcome:
    index: int
    seed_file: str
    ops: tuple[str, ...]
    kind: str
    detail: str = ""
    seconds: float = 0.0


@dataclass
class Report:
    seed: int
    outcomes: list[Outcome] = field(default_factory=list)
    peak_rss: int = 0
    seconds: float = 0.0

    def counts(self) -> Counter[str]:
        return Counter(o.kind for o in self.outcomes)

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.kind not in ("ok", "error")]

    def summary(self) -> str:
        c = self.counts()
        slowest = max(self.outcomes, key=lambda o: o.seconds, default=None)
        return (
            f"fuzz seed {self.seed}: {len(self.outcomes)} mutants, {c['ok']} ok, "
            f"{c['error']} clear errors, {c['traceback']} tracebacks, {c['hang']} hangs, "
            f"{c['crash']} crashes; peak memory {self.peak_rss / 2**20:,.0f} MB; "
            f"{self.seconds:.1f} s"
            + (f" (slowest mutant {slowest.seconds:.1f} s)" if slowest else "")
        )

    def describe_failures(self, limit: int = 10) -> str:
        lines = []
        for o in self.failures[:limit]:
            lines.append(
                f"mutant {o.index} ({o.kind}) of {o.seed_file}: {'; '.join(o.ops)}\n"
                f"  rebuild: python -m tests.fuzz.mutate {self.seed} {o.index} OUT\n"
                + "\n".join("  | " + ln for ln in o.detail.splitlines()[-25:])
            )
        more = len(self.failures) - limit
        return "\n".join(lines) + (f"\n... and {more} more" if more > 0 else "")


def classify(results: list[dict]) -> tuple[str, str]:
    for r in results:
        if r["code"] is None or any(mark in r["output"] for mark in _BUG_MARKS):
            return "traceback", f"$ medviewer {' '.join(r['argv'])}\n{r['output']}"
    for r in results:
        if r["code"] != 0:
            return "error", r["output"].strip().splitlines()[-1:][0] if r["output"] else ""
    return "ok", ""


class _Worker:
    def __init__(self, workdir: Path, memory: int) -> None:
        self.log = tempfile.TemporaryFile(dir=workdir)
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        env.pop("MEDVIEWER_DEBUG", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fuzz.worker", str(workdir), str(memory)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            cwd=REPO,
            env=env,
            start_new_session=True,  # its own process group: killed whole on a hang
        )

    def ask(self, path: Path, timeout: float) -> dict | str:
        """The worker's report on one file, or 'hang' / 'crash'."""
        assert self.proc.stdin and self.proc.stdout
        try:
            self.proc.stdin.write(f"{path}\n".encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            return "crash"
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return "hang"
        line = self.proc.stdout.readline()
        return json.loads(line) if line else "crash"

    def log_tail(self) -> str:
        """The end of the worker's stderr (a decoder may have written gigabytes to it)."""
        size = self.log.seek(0, os.SEEK_END)
        self.log.seek(max(0, size - 3000))
        return f"(worker log: {size:,} bytes)\n" + self.log.read().decode(errors="replace")

    def stop(self, kill: bool = False) -> None:
        if kill:
            os.killpg(self.proc.pid, signal.SIGKILL)
        elif self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()


def run(
    mutants: int,
    seed: int = 0,
    *,
    workers: int = 2,
    timeout: float = 20.0,
    memory: int = 2 << 30,
    workdir: Path | None = None,
) -> Report:
    """Build and run mutants 0..mutants-1 of `seed` on `workers` processes."""
    report = Report(seed)
    start = time.monotonic()
    indices = iter(range(mutants))
    lock = threading.Lock()
    errors: list[BaseException] = []
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        root = Path(tmp)

        def drive() -> None:
            worker = _Worker(root, memory)
            try:
                while not errors:
                    with lock:
                        index = next(indices, None)
                    if index is None:
                        break
                    worker = _one(worker, index)
            except BaseException as e:  # noqa: BLE001 - a bug in the harness or mutator fails the run
                errors.append(e)
            finally:
                worker.stop()

        def _one(worker: _Worker, index: int) -> _Worker:
            """Run one mutant; the worker to go on with (a fresh one after a hang or crash)."""
            with lock:  # pydicom's writer and the recursion limit are not for two threads
                m = mutant(seed, index)
            path = root / f"mutant-{index:05d}{m.suffix}"
            path.write_bytes(m.data)
            t0 = time.monotonic()
            answer = worker.ask(path, timeout)
            seconds = time.monotonic() - t0
            path.unlink()
            if isinstance(answer, dict):
                kind, detail = classify(answer["results"])
            else:
                kind, detail = answer, worker.log_tail()
                worker.stop(kill=True)
                worker = _Worker(root, memory)
            with lock:
                report.outcomes.append(Outcome(index, m.seed_file, m.ops, kind, detail, seconds))
                if isinstance(answer, dict):
                    report.peak_rss = max(report.peak_rss, answer["peak_rss"])
            return worker

        threads = [threading.Thread(target=drive) for _ in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
    report.outcomes.sort(key=lambda o: o.index)
    report.seconds = time.monotonic() - start
    return report


def settings() -> dict:
    """The run's size from the environment: MEDVIEWER_FUZZ_MUTANTS (200), _SEED (0),
    _TIMEOUT (20 s per file), _WORKERS (2)."""
    env = os.environ.get
    return {
        "mutants": int(env("MEDVIEWER_FUZZ_MUTANTS", "200")),
        "seed": int(env("MEDVIEWER_FUZZ_SEED", "0")),
        "timeout": float(env("MEDVIEWER_FUZZ_TIMEOUT", "20")),
        "workers": int(env("MEDVIEWER_FUZZ_WORKERS", "2")),
    }


if __name__ == "__main__":
    s = settings()
    if len(sys.argv) > 1:
        s["mutants"] = int(sys.argv[1])
    result = run(s.pop("mutants"), **s)
    print(result.summary())
    if result.failures:
        print(result.describe_failures(limit=50))
    sys.exit(1 if result.failures else 0)
