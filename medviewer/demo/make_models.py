"""`make demo-models`: train the full demo's models (seed 0) with the project's own trainer and
store their weights for the demo (medviewer.demo.shipped). Commit what it writes."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from medviewer.demo.build import build_demo
from medviewer.demo.shipped import SEED, WEIGHTS, write_shipped
from medviewer.models.versions import load_version
from medviewer.workspace import Workspace


def make_demo_models(folder: Path = WEIGHTS, progress: Any = print) -> dict[str, Any]:
    """Build the full demo with training (seed 0) in a temporary folder and ship its models."""
    with tempfile.TemporaryDirectory(prefix="demo-models-") as tmp:
        summary = build_demo(Path(tmp) / "demo", seed=SEED, progress=progress, shipped=False)
        with Workspace.open(Path(tmp) / "demo", readonly=True) as ws:
            models = {}
            for name in summary.models:
                model, spec, _ = load_version(ws, name)
                models[name] = (model, spec, ws.models.active(name).metrics)
        return write_shipped(folder, models)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m medviewer.demo.make_models",
        description="Train the demo models (seed 0) and store their weights for the demo.",
    )
    parser.add_argument("--out", type=Path, default=WEIGHTS, help=f"default: {WEIGHTS}")
    args = parser.parse_args(argv)
    clock = time.perf_counter()
    index = make_demo_models(args.out)
    for name, entry in index.items():
        size = (args.out / entry["file"]).stat().st_size / 1e6
        print(f"{name}: {entry['file']} ({size:.1f} MB), validation {entry['validation']}")
    print(f"made in {time.perf_counter() - clock:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
