"""Reading weight files as plain tensors (never unpickling objects), checking their values and
saying how a set of tensors differs from a model's. Shared by checkpoints, the registry's
encoder weights, pretrained conversions and the version writer."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from medviewer.models.errors import CheckpointMismatch, ModelError, UnusableWeights

# The precisions a model runs in; float64 would be cast down silently, so it is refused.
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from safetensors, or from a .pth/.pt with torch's weights-only loader."""
    try:
        if path.suffix == ".safetensors":
            state: object = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise ModelError(f"{path}: weights file not found") from e
    except (SafetensorError, OSError, RuntimeError, EOFError) as e:
        why = (str(e).splitlines() or [type(e).__name__])[0]  # an empty file: EOFError('')
        raise ModelError(f"{path}: not a readable weights file: {why}") from e
    except Exception as e:
        raise ModelError(
            f"{path}: refused: holds more than plain tensors ({type(e).__name__})"
        ) from e
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise ModelError(f"{path}: expected a mapping of tensor names to tensors")
    state = dict(state)
    check_values(state, path)
    return state


def check_values(state: Mapping[str, torch.Tensor], source: Path | str) -> None:
    """Raise UnusableWeights naming the first tensor whose values a model cannot run on: a
    floating tensor not float32/float16/bfloat16, or holding NaN or infinity (a model of NaN
    weights says "no finding" with probability NaN on every image). Integer tensors
    (BatchNorm's counters) pass here; report_mismatch checks them against the model's own.

    The one check of weight values: read_tensors runs it on every file read, register_version
    on every model written."""
    for name, t in state.items():
        if t.is_complex() or (t.is_floating_point() and t.dtype not in FLOAT_DTYPES):
            raise UnusableWeights(
                f"{source}: tensor {name} is {str(t.dtype).removeprefix('torch.')}; "
                "weights must be float32, float16 or bfloat16"
            )
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise UnusableWeights(
                f"{source}: tensor {name} holds {bad:,} of {t.numel():,} values that are NaN "
                "or infinite"
            )


def report_mismatch(
    own: Mapping[str, torch.Tensor],
    loaded: Mapping[str, torch.Tensor],
    path: Path,
    partial_ok: bool = False,
) -> CheckpointMismatch | None:
    """Which tensors are missing, unexpected or of another shape; None when they fit."""
    missing = sorted(set(own) - set(loaded))
    unexpected = sorted(set(loaded) - set(own))
    shapes = sorted(
        f"{k}: file {tuple(loaded[k].shape)}, model {tuple(own[k].shape)}"
        for k in set(own) & set(loaded)
        if loaded[k].shape != own[k].shape
    )
    # load_state_dict would cast int8 weights to float silently: values, not weights.
    kinds = sorted(
        f"{k}: file {str(loaded[k].dtype).removeprefix('torch.')}, "
        f"model {str(own[k].dtype).removeprefix('torch.')}"
        for k in set(own) & set(loaded)
        if loaded[k].is_floating_point() != own[k].is_floating_point()
    )
    if partial_ok and not shapes and not kinds and len(missing) < len(own):
        return None
    if not (missing or unexpected or shapes or kinds):
        return None
    parts = []
    for title, names in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("shape differs", shapes),
        ("type differs", kinds),
    ):
        if names:
            more = f" (+{len(names) - 5} more)" if len(names) > 5 else ""
            parts.append(f"{title} {len(names)}: {', '.join(names[:5])}{more}")
    return CheckpointMismatch(f"{path}: weights do not fit the spec's model; " + "; ".join(parts))
