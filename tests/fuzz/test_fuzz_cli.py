"""Fuzzing: seeded mutants of real files through what a user meets (`info --verify`, `import`,
`render`), each file under a time limit and a memory cap (tests/fuzz/harness.py).

MEDVIEWER_FUZZ_MUTANTS sets the budget: 200 here, 2,000 under `make fuzz`; MEDVIEWER_FUZZ_SEED
picks another set. A failure names the mutant and how to rebuild it.
"""

from __future__ import annotations

from pathlib import Path

from tests.fuzz.harness import classify, run, settings
from tests.fuzz.mutate import mutant, seeds

MEMORY = 2 << 30  # each worker's cap beyond its imports, and the peak RSS allowed


def test_no_traceback_hang_or_blow_up_on_mutated_files(tmp_path: Path) -> None:
    s = settings()
    report = run(
        s["mutants"],
        s["seed"],
        workers=s["workers"],
        timeout=s["timeout"],
        memory=MEMORY,
        workdir=tmp_path,
    )
    print("\n" + report.summary())  # `make fuzz` shows it (pytest -s)
    assert len(report.outcomes) == s["mutants"]
    assert not report.failures, report.summary() + "\n" + report.describe_failures()
    assert report.peak_rss < MEMORY, report.summary()


def test_a_mutant_is_the_same_bytes_every_time() -> None:
    assert mutant(3, 41) == mutant(3, 41)
    assert mutant(3, 41).data != mutant(4, 41).data
    # Every seed file is found and used in turn.
    assert len({mutant(0, i).seed_file for i in range(len(seeds()))}) == len(seeds())


def test_an_unexpected_error_counts_as_a_traceback() -> None:
    def result(code: int | None, output: str) -> dict:
        return {"argv": ["info", "x"], "code": code, "output": output}

    assert classify([result(0, "ok"), result(2, "error: x.dcm: truncated\n")])[0] == "error"
    bug = "error: KeyError: 'x' (set MEDVIEWER_DEBUG=1 for the traceback)"
    assert classify([result(1, bug)])[0] == "traceback"
    scan_bug = "  unreadable: x.dcm: unexpected error reading file: MemoryError"
    assert classify([result(2, scan_bug)])[0] == "traceback"
    assert classify([result(None, "escaped medviewer.cli.main: SystemExit")])[0] == "traceback"
    assert classify([result(0, "wrote x.png")])[0] == "ok"


def test_peak_memory_is_the_workers_own_not_the_parents(tmp_path: Path) -> None:
    """Linux keeps getrusage's ru_maxrss across exec: workers started by a pytest that had grown
    (model tests before this one) reported its size as theirs."""
    import numpy as np

    fat = np.ones(800 << 20, np.uint8)  # 800 MB resident in this process
    report = run(4, 0, workers=1, timeout=60, memory=MEMORY, workdir=tmp_path)
    assert fat.sum() == 800 << 20 and report.peak_rss < 600 << 20, report.summary()
