"""Run the benchmarks (`make bench`) and print one table for all of them.

Usage: .venv/bin/python bench/run.py [--quick] [--json] [--device DEVICE] [NAME ...]
A benchmark is any bench/bench_*.py module with `run(quick: bool = False) -> list[Row]`;
NAME is its file name with or without the `bench_` prefix and `.py`.

--json prints one JSON object per row instead of the table (keys: benchmark, case, ours,
baseline, ratio, target, met; seconds as numbers, null where a value is missing).
--device (cpu, cuda, auto) goes to the benchmarks whose `run` takes a `device` argument; the
others run as they always do (said on stderr).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import math
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


def as_json(row: Row) -> str:
    """One row as one JSON object on one line, for scripts."""

    def number(value: float | None) -> float | None:
        return None if value is None or not math.isfinite(value) else float(value)

    return json.dumps(
        {
            "benchmark": row.benchmark,
            "case": row.case,
            "ours": number(row.ours),
            "baseline": number(row.baseline),
            "ratio": number(row.ratio),
            "target": row.target or None,
            "met": row.met,
        }
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller sizes")
    parser.add_argument("--json", action="store_true", help="one JSON object per row")
    parser.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        help="for the benchmarks that take one (default: each benchmark's own)",
    )
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
        module = importlib.import_module(available[name])
        kw = {}
        if args.device is not None:
            if "device" in inspect.signature(module.run).parameters:
                kw["device"] = args.device
            else:
                print(f"  ({name} takes no device: run as it is)", file=sys.stderr, flush=True)
        rows += module.run(quick=args.quick, **kw)
        print(f"  done in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    if args.json:
        for row in rows:
            print(as_json(row), flush=True)
    else:
        print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
