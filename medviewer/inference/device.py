"""Where models run: CUDA > MPS > CPU unless told otherwise, and at which precision."""

from __future__ import annotations

import os

import torch

from medviewer.inference.errors import InferenceError

DEVICES = ("auto", "cpu", "cuda", "mps")


def pick_device(preference: str | torch.device = "auto") -> torch.device:
    if isinstance(preference, torch.device):
        return preference
    if preference not in DEVICES and not preference.startswith("cuda:"):
        raise InferenceError(f"unknown device {preference!r}; valid: {', '.join(DEVICES)}")
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if preference.startswith("cuda") and not torch.cuda.is_available():
        raise InferenceError("device cuda asked for, but no CUDA GPU is available here")
    if preference == "mps" and not torch.backends.mps.is_available():
        raise InferenceError("device mps asked for, but Apple's MPS is not available here")
    return torch.device(preference)


# Set to 1 to take the fp32 path that CPUs without bf16 take (make test runs the suite both ways).
NO_BF16_ENV = "MEDVIEWER_CPU_NO_BF16"


def cpu_has_fast_bf16() -> bool:
    """AVX-512 BF16 or AMX: bf16 autocast is ~3x fp32 on such CPUs (docs/PERFORMANCE.md)."""
    if os.environ.get(NO_BF16_ENV, "") not in ("", "0"):
        return False
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for a device, or None for plain fp32."""
    if precision == "fp32":
        return None
    if precision not in ("auto", "bf16", "fp16"):
        raise InferenceError(f"unknown precision {precision!r}; valid: auto, fp32, bf16, fp16")
    if device.type == "cuda":
        if precision == "fp16" or not torch.cuda.is_bf16_supported():
            return torch.float16
        return torch.bfloat16
    if device.type == "cpu" and (precision == "bf16" or cpu_has_fast_bf16()):
        return torch.bfloat16
    return None


def describe(device: torch.device) -> str:
    """For the status bar: the GPU's name, or CPU."""
    if device.type == "cuda":
        return f"GPU {torch.cuda.get_device_name(device)}"
    return "Apple GPU (MPS)" if device.type == "mps" else "CPU"
