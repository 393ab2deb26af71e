"""Shared pieces of the benchmarks: one result row and a timer. Each bench_*.py imports these."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One line of the table: our time for a case against a baseline measured in the same run."""

    benchmark: str
    case: str
    ours: float | None  # seconds; None when only a baseline was timed
    baseline_name: str = ""
    baseline: float | None = None  # seconds; None when there is no baseline or it was skipped
    target: str = ""  # e.g. ">= 2x" or "< 50 ms"; empty when the row is for information only
    met: bool | None = None  # None when there is no target
    note: str = ""  # printed under the table, e.g. why a baseline was skipped

    @property
    def ratio(self) -> float | None:
        """Speed-up, baseline / ours: above 1 means we are faster."""
        if self.ours is None or self.baseline is None or self.ours <= 0:
            return None
        return self.baseline / self.ours


def best_of(fn: Callable[[], object], repeat: int) -> float:
    """Minimum wall time of `repeat` calls, in seconds.

    The minimum, not the mean: on a shared machine noise only ever adds time.
    """
    best = float("inf")
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best
