"""Which CPU backend runs a model faster on this machine: a short timing, recorded once.

`Engine(backend="auto")` on a CPU times torch (at the precision `device.autocast_dtype` picks:
bf16 on CPUs with AMX or AVX-512 BF16, else fp32) against ONNX Runtime on a batch of sample
inputs, and keeps the faster (ONNX Runtime on a near tie: see MARGIN). The result is recorded
in the workspace, keyed by model name and version and by a fingerprint of this machine's CPU
and software, so the next session on the same machine starts with the right backend at once;
another machine (or the workspace opened on another computer) calibrates for itself.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from medviewer.atomic import atomic_write_json
from medviewer.inference.device import NO_BF16_ENV, cpu_has_fast_bf16

if TYPE_CHECKING:
    from medviewer.workspace import Workspace

CALIBRATION_FILE = "inference-backends.json"  # in the workspace folder
BACKEND_ENV = "MEDVIEWER_BACKEND"  # auto | torch | onnxruntime: the default backend
ROUNDS = 3  # timed runs of each backend, interleaved, after one warm-up run
# On a near tie ONNX Runtime is kept: its thread pool shares work out dynamically, so it holds
# its speed when other programs (the GUI, image loading, other users) take a core, where torch's
# OpenMP threads wait for the slowest one. On the 2-core EPYC of docs/PERFORMANCE.md torch bf16
# was up to 20 % faster idle and ONNX Runtime 1.5-1.8x faster at load average 5-6. Torch must be
# this much faster to be chosen (on AMX CPUs, bf16 is several times faster and is).
MARGIN = 0.25
PREFERRED = "onnxruntime"


@dataclass(frozen=True)
class BackendStore:
    """Where an engine keeps what it learns about a model version's backends: the version
    folder (the cached ONNX file) and the workspace's calibration record."""

    folder: Path | None
    calibration: Path | None
    model: str  # "name/version", the record's key together with the machine
    readonly: bool = False  # read what is there, write nothing (a workspace opened read-only)


def backend_store(ws: Workspace, name: str, version: str | None = None) -> BackendStore:
    """Where a version (the active one by default) keeps its ONNX file and calibration."""
    from medviewer.models.versions import version_dir

    readonly = bool(getattr(ws, "readonly", False))
    if version is None:
        active = ws.models.active(name)
        if active is None:
            return BackendStore(None, ws.root / CALIBRATION_FILE, name, readonly)
        version = active.version
    folder = version_dir(ws, name, version)
    return BackendStore(folder, ws.root / CALIBRATION_FILE, f"{name}/{version}", readonly)


def default_backend() -> str:
    """The backend the runner and `medviewer infer` use unless told: $MEDVIEWER_BACKEND or auto."""
    return os.environ.get(BACKEND_ENV, "").strip() or "auto"


def cpu_name() -> str:
    """The CPU's model name as the OS reports it (e.g. "AMD EPYC 9R14 96-Core Processor")."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_fingerprint(threads: int) -> str:
    """What a timing depends on besides the model: CPU, its bf16 support (and whether it is
    switched off), the thread count and the two runtimes' versions."""
    try:
        import onnxruntime

        ort = onnxruntime.__version__
    except ImportError:
        ort = "none"
    cpu = getattr(torch, "cpu", None)
    amx = bool(getattr(cpu, "_is_amx_tile_supported", lambda: False)())
    bf16 = (
        "bf16" if cpu_has_fast_bf16() else ("bf16-off" if os.environ.get(NO_BF16_ENV) else "fp32")
    )
    return (
        f"{cpu_name()} | {'amx' if amx else 'no-amx'} {bf16} | {threads} threads | "
        f"torch {torch.__version__} | onnxruntime {ort}"
    )


def read(path: Path | None, model: str, fingerprint: str) -> dict[str, Any] | None:
    """The recorded choice for this model on this machine, or None."""
    if path is None:
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    entry = data.get(f"{model} @ {fingerprint}") if isinstance(data, dict) else None
    return entry if isinstance(entry, dict) and entry.get("backend") else None


def record(path: Path | None, model: str, fingerprint: str, entry: dict[str, Any]) -> None:
    """Add or replace this model's entry; other models' entries stay (read, update, write
    atomically: at worst a concurrent writer's entry is lost and calibrated again)."""
    if path is None:
        return
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            data = {}
    except (OSError, ValueError):
        data = {}
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    data[f"{model} @ {fingerprint}"] = {**entry, "when": stamp}
    try:
        atomic_write_json(path, data)
    except OSError:
        pass  # a read-only workspace: the next session calibrates again


def time_backends(
    candidates: dict[str, Callable[[], object]], rounds: int = ROUNDS
) -> dict[str, float]:
    """Seconds of one call of each candidate: the best of `rounds`, in rotating order so that
    a busy spell of a shared machine hits every candidate alike."""
    for fn in candidates.values():
        fn()  # warm-up: oneDNN primitives, ONNX Runtime's arena
    names = list(candidates)
    best = dict.fromkeys(names, float("inf"))
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            candidates[name]()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def faster(seconds: dict[str, float], preferred: str = PREFERRED) -> str:
    """The fastest candidate, but `preferred` unless another beats it by MARGIN."""
    best = min(seconds, key=seconds.__getitem__)
    if preferred in seconds and seconds[best] > (1 - MARGIN) * seconds[preferred]:
        return preferred
    return best
