"""`make demo-models`: train the full demo's models (seed 0) with the project's own trainer and
store their weights for the demo (medviewer.demo.shipped). Commit what it writes.

Each task's model is trained in a demo of that task alone (`cases.only`: the same studies and
the same model as in the whole demo); `--tasks` remakes some and keeps the others' entries."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from medviewer.demo.build import build_demo
from medviewer.demo.cases import ALL_TASKS, FULL, only
from medviewer.demo.shipped import SEED, WEIGHTS, read_index, write_shipped
from medviewer.models.versions import load_version
from medviewer.workspace import Workspace


def make_demo_models(
    folder: Path = WEIGHTS, progress: Any = print, tasks: tuple[str, ...] = ALL_TASKS
) -> dict[str, Any]:
    """Build each task's full demo with training (seed 0) in a temporary folder and ship its
    models; the index keeps the entries of the other tasks' models."""
    models = {}
    with tempfile.TemporaryDirectory(prefix="demo-models-") as tmp:
        for task in tasks:
            root = Path(tmp) / task
            summary = build_demo(
                root, seed=SEED, progress=progress, size=only(FULL, task), shipped=False
            )
            with Workspace.open(root, readonly=True) as ws:
                for name in summary.models:
                    model, spec, _ = load_version(ws, name)
                    models[name] = (model, spec, ws.models.active(name).metrics)
    return write_shipped(folder, models, keep=read_index(folder))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m medviewer.demo.make_models",
        description="Train the demo models (seed 0) and store their weights for the demo.",
    )
    parser.add_argument("--out", type=Path, default=WEIGHTS, help=f"default: {WEIGHTS}")
    parser.add_argument(
        "--tasks", nargs="+", choices=ALL_TASKS, default=list(ALL_TASKS),
        help="the tasks whose models to make (default: all); the others' are kept",
    )  # fmt: skip
    args = parser.parse_args(argv)
    clock = time.perf_counter()
    index = make_demo_models(args.out, tasks=tuple(args.tasks))
    for name, entry in index.items():
        size = (args.out / entry["file"]).stat().st_size / 1e6
        print(f"{name}: {entry['file']} ({size:.1f} MB), validation {entry['validation']}")
    print(f"made in {time.perf_counter() - clock:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
