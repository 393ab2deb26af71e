"""The demo models' shipped weights, so `medviewer demo` proposes at once on any CPU.

Made by `make demo-models` (`python -m medviewer.demo.make_models`): the full demo is built with
seed 0 and training on (medviewer.demo.build, the project's own trainer), and each model's
weights are stored here as float16 safetensors (half the bytes; the loss in the weights is far
below what changes a mask) with an index naming the spec they belong to, the training settings
and where they were made. The demo uses a shipped file only when its spec is exactly the one the
demo asks for (encoder_weights aside: the shipped file holds the whole model); otherwise it
trains, as it does for the small test demo.

A click-guided model is trained from its unguided twin's weights (the model the demo shipped
before it took clicks: `unguided_base`), kept beside it as `<name>.unguided.safetensors` and
named in its entry's training record under "unguided" (with that model's spec and validation),
so `make demo-models` remakes the guided model from the same start without retraining that.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from medviewer.atomic import atomic_write, atomic_write_bytes, atomic_write_json
from medviewer.models.checkpoints import load_weights
from medviewer.models.registry import MedModel, build_model
from medviewer.models.spec import ModelSpec

WEIGHTS = Path(__file__).parent / "weights"
INDEX = "index.json"
SEED = 0  # the demo build the weights come from


def _key(spec: ModelSpec) -> dict[str, Any]:
    """The spec as the index stores it: JSON types, without the encoder's starting weights."""
    return json.loads(json.dumps({**spec.to_dict(), "encoder_weights": None}))


def read_index(folder: Path = WEIGHTS) -> dict[str, Any]:
    try:
        index = json.loads((folder / INDEX).read_text())
    except (OSError, ValueError):
        return {}
    return index if isinstance(index, dict) else {}


def unguided_base(spec: ModelSpec, folder: Path = WEIGHTS) -> tuple[Path, dict[str, Any]] | None:
    """The shipped weights of a guided spec's unguided twin and their index entry: the model's
    own entry while it ships unguided, else its entry's training "unguided"; None if none."""
    if not spec.guided:
        return None
    key = _key(spec.unguided())
    entry = read_index(folder).get(spec.name)
    entry = entry if isinstance(entry, dict) else {}
    for e in (entry, (entry.get("training") or {}).get("unguided")):
        if isinstance(e, dict) and e.get("spec") == key and (folder / str(e.get("file"))).is_file():
            return folder / str(e["file"]), e
    return None


def half_round_trip(
    spec: ModelSpec, state: dict[str, torch.Tensor], folder: Path
) -> tuple[Path, dict[str, torch.Tensor], dict[str, Any]]:
    """An unguided model's weights stored as shipped (float16) in `folder`, the weights read
    back (float32, what a guided model then starts from, whether made now or read from the
    shipped file later) and the spec as the index keeps it."""
    path = folder / f"{spec.name}.unguided.safetensors"
    half = {k: _half(v) for k, v in state.items()}
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: save_file(half, str(tmp)))
    back = {k: v.float() if v.is_floating_point() else v for k, v in half.items()}
    return path, back, _key(spec)


def shipped_entry(spec: ModelSpec, folder: Path = WEIGHTS) -> dict[str, Any] | None:
    """The index entry of shipped weights made for exactly this spec, or None."""
    entry = read_index(folder).get(spec.name)
    if not isinstance(entry, dict) or entry.get("spec") != _key(spec):
        return None
    return entry if (folder / str(entry.get("file"))).is_file() else None


def load_shipped(
    spec: ModelSpec, folder: Path = WEIGHTS
) -> tuple[MedModel, ModelSpec, dict[str, Any]] | None:
    """The shipped model for `spec` (float32, eval mode), the spec to register it under (no
    encoder_weights: the file holds every weight) and its index entry, or None when none was
    made for this spec."""
    entry = shipped_entry(spec, folder)
    if entry is None:
        return None
    spec = replace(spec, encoder_weights=None)
    model = load_weights(build_model(spec, pretrained=False), folder / entry["file"])
    return model.float().eval(), spec, entry


def write_shipped(
    folder: Path,
    models: dict[str, tuple[MedModel, ModelSpec, dict[str, Any]]],
    keep: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Store each model's weights as float16 and the index (atomically, file by file); `keep`:
    index entries of models not made now, kept as they are."""
    folder.mkdir(parents=True, exist_ok=True)
    index: dict[str, Any] = {k: v for k, v in (keep or {}).items() if k not in models}
    for name, (model, spec, metrics) in models.items():
        file = f"{name}.safetensors"
        base = metrics.get("training", {}).get("unguided")
        if isinstance(base, dict) and base.get("source"):  # kept before `file` is rewritten
            source, target = Path(base.pop("source")), folder / f"{name}.unguided.safetensors"
            data = source.read_bytes()
            if source.resolve() != target.resolve():
                atomic_write_bytes(target, data)
            base.update(file=target.name, sha256=hashlib.sha256(data).hexdigest())
        state = {k: _half(v) for k, v in model.state_dict().items()}
        for k, v in state.items():  # a model that diverged is not shipped
            if v.is_floating_point() and not torch.isfinite(v).all():
                raise ValueError(f"{name}: {k} is not finite; not shipped")
        atomic_write(folder / file, lambda tmp, s=state: save_file(s, str(tmp)))
        index[name] = {
            "file": file,
            "sha256": hashlib.sha256((folder / file).read_bytes()).hexdigest(),
            "spec": _key(spec),
            "validation": metrics.get("validation", {}),
            "training": metrics.get("training", {}),
            "made": {
                "by": "make demo-models",
                "seed": SEED,
                "torch": torch.__version__,
                "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
                "threads": torch.get_num_threads(),
                "date": time.strftime("%Y-%m-%d"),
            },
        }
    atomic_write_json(folder / INDEX, index)
    return index


FLOAT16_MAX = float(torch.finfo(torch.float16).max)


def _half(t: torch.Tensor) -> torch.Tensor:
    """Float weights as float16; integer buffers (BatchNorm's batch count) unchanged, and so
    is a float tensor with a value beyond float16's range (the kidney model's deepest decoder
    BatchNorm variance passes 65504): it stays float32 rather than becoming infinite."""
    t = t.detach().cpu().contiguous()
    if not t.is_floating_point() or t.numel() and t.abs().max().item() > FLOAT16_MAX:
        return t
    return t.half()
