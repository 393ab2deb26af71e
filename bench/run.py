"""Run the benchmarks (`make bench`) and print one table for all of them.

Usage: .venv/bin/python bench/run.py [--quick] [NAME ...]
A benchmark is any bench/bench_*.py module with `run(quick: bool = False) -> list[Row]`;
NAME is its file name with or without the `bench_` prefix and `.py`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from harness import Row

HERE = Path(__file__).resolve().parent
COLUMNS = (
    "benchmark",
    "case",
    "ours (s)",
    "baseline",
    "baseline (s)",
    "ratio",
    "target",
    "met",
)


def discover() -> dict[str, str]:
    """Short name -> module name of every bench_*.py beside this file."""
    return {p.stem.removeprefix("bench_"): p.stem for p in sorted(HERE.glob("bench_*.py"))}


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _cells(row: Row) -> list[str]:
    ratio = row.ratio
    met = "-" if row.met is None else ("yes" if row.met else "no")
    return [
        row.benchmark,
        row.case,
        _seconds(row.ours),
        row.baseline_name or "-",
        _seconds(row.baseline) if row.baseline_name else "-",
        "-" if ratio is None else f"{ratio:.2f}x",
        row.target or "-",
        met,
    ]


def table(rows: list[Row]) -> str:
    """A Markdown table, aligned so it also reads well in a terminal; notes follow it."""
    cells = [list(COLUMNS)] + [_cells(r) for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]

    def fmt(line: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |"

    out = [fmt(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [fmt(line) for line in cells[1:]]
    out += [f"note ({r.benchmark}, {r.case}): {r.note}" for r in rows if r.note]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller sizes")
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    args = parser.parse_args(argv)

    available = discover()
    wanted = [n.removesuffix(".py").removeprefix("bench_") for n in args.names]
    unknown = [n for n in wanted if n not in available]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; available: {sorted(available)}")

    rows: list[Row] = []
    for name in wanted or list(available):
        # Progress goes to stderr so stdout is only the table.
        print(f"running {name}{' (quick)' if args.quick else ''} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        rows += importlib.import_module(available[name]).run(quick=args.quick)
        print(f"  done in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
