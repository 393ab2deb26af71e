"""Reading weight files as plain tensors (never unpickling objects) and saying how a set of
tensors differs from a model's. Shared by checkpoints and the registry's encoder weights."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from medviewer.models.errors import CheckpointMismatch, ModelError


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from safetensors, or from a .pth/.pt with torch's weights-only loader."""
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise ModelError(f"{path}: weights file not found") from e
    except (SafetensorError, OSError, RuntimeError, EOFError) as e:
        raise ModelError(f"{path}: not a readable weights file: {str(e).splitlines()[0]}") from e
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
    return dict(state)


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
    if partial_ok and not shapes and len(missing) < len(own):
        return None
    if not (missing or unexpected or shapes):
        return None
    parts = []
    for title, names in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("shape differs", shapes),
    ):
        if names:
            more = f" (+{len(names) - 5} more)" if len(names) > 5 else ""
            parts.append(f"{title} {len(names)}: {', '.join(names[:5])}{more}")
    return CheckpointMismatch(f"{path}: weights do not fit the spec's model; " + "; ".join(parts))
