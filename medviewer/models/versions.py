"""Model versions kept inside the workspace: `models/NAME/VERSION/` holds a checkpoint folder
(safetensors weights, spec, metrics) and `ws.models` records it and which version is active.

Copying the weights in (rather than pointing at the user's file) keeps a workspace whole: the
proposals it stores can always be traced back to the exact weights that made them.

On PostgreSQL the folder is each machine's own: the registering machine (a GPU worker) also puts
every file of the version into the workspace's blob store (the database or the shared blob
folder, chosen at creation) and the row names them by SHA-256; any other machine fetches them
into its own `models/NAME/VERSION/` when they are missing or differ (`_folder`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medviewer.atomic import atomic_write_bytes, atomic_write_json
from medviewer.models.checkpoints import (
    METRICS,
    WEIGHTS,
    load_checkpoint,
    load_weights,
    save_checkpoint,
)
from medviewer.models.errors import ModelError
from medviewer.models.registry import MedModel, build_model
from medviewer.models.spec import ModelSpec
from medviewer.models.tensors import check_values
from medviewer.workspace.blobs import file_digest

if TYPE_CHECKING:
    from medviewer.workspace import Workspace
    from medviewer.workspace.model_table import ModelVersion

# Names and versions become folder names: keep them portable and free of path tricks.
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_NUMBERED = re.compile(r"^v(\d+)$")
MANIFEST = "manifest.json"  # what a trained version learnt from (revision ids, split)


def _check_name(what: str, value: str) -> None:
    if not _SAFE.match(value):
        raise ModelError(
            f"model {what} {value!r} is not usable as a folder name; use letters, digits, "
            "'.', '_' and '-' (starting with a letter or digit)"
        )


def version_dir(ws: Workspace, name: str, version: str) -> Path:
    return ws.root / "models" / name / version


def next_version(ws: Workspace, name: str) -> str:
    """v1, v2, ...: one past the highest numbered version registered (or left on disk)."""
    taken = {m.version for m in ws.models.list(name)}
    folder = ws.root / "models" / name
    if folder.is_dir():
        taken |= {p.name for p in folder.iterdir()}
    numbers = [int(m.group(1)) for v in taken if (m := _NUMBERED.match(v))]
    return f"v{max(numbers, default=0) + 1}"


def _source_files(weights: Path) -> tuple[Path, dict[str, Any]]:
    """A weights file, or a checkpoint folder (its weights plus the metrics it came with)."""
    folder = weights if weights.is_dir() else weights.parent
    file = weights / WEIGHTS if weights.is_dir() else weights
    metrics: dict[str, Any] = {}
    if (folder / METRICS).is_file() and (weights.is_dir() or file.name == WEIGHTS):
        try:
            metrics = json.loads((folder / METRICS).read_text())
        except (OSError, json.JSONDecodeError):
            metrics = {}  # metrics are informative only; bad ones must not block the weights
    return file, metrics if isinstance(metrics, dict) else {}


def register_version(
    ws: Workspace,
    spec: ModelSpec,
    model: MedModel,
    metrics: dict[str, Any],
    *,
    manifest: dict[str, Any] | None = None,
    version: str | None = None,
    activate: bool = False,
) -> ModelVersion:
    """The one writer of model versions: the version folder (weights, spec, metrics and the
    training manifest, each written atomically), then its row; activated when asked.

    A failure leaves no folder and no row. Training, `models add` and the demo all call this.
    Weights that are not finite (a diverged run) or not float32/16/bf16 are UnusableWeights.
    """
    _check_name("name", spec.name)
    version = version or next_version(ws, spec.name)
    _check_name("version", version)
    if any(m.version == version for m in ws.models.list(spec.name)):
        raise ModelError(f"model {spec.name} version {version} is already in {ws.root}")
    check_values(model.state_dict(), f"model {spec.name} version {version}")
    folder = version_dir(ws, spec.name, version)
    if folder.exists():
        shutil.rmtree(folder)  # left by a writer that died before registering; never registered
    try:
        save_checkpoint(folder, model, spec, metrics)
        if manifest is not None:
            atomic_write_json(folder / MANIFEST, manifest)
        registered = ws.models.register(
            spec.name,
            version,
            path=str(folder),
            spec=spec.to_dict(),
            metrics=metrics,
            files=_shared(ws, folder),
        )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    if activate:
        registered = ws.models.activate(spec.name, version)
    return registered


def add_model(
    ws: Workspace,
    spec: ModelSpec,
    weights: Path | None,
    version: str | None = None,
    activate: bool = True,
) -> ModelVersion:
    """Copy a model into the workspace as a new version of `spec.name` and register it.

    The weights are loaded into the spec's model first, so a file of another architecture
    fails with CheckpointMismatch (naming the tensors) before anything is written. Without
    weights the model is randomly initialised and its metrics say so.
    """
    _check_name("name", spec.name)
    model = build_model(spec, pretrained=weights is None)
    if weights is not None:
        file, metrics = _source_files(Path(weights))
        load_weights(model, file)
        metrics = {**metrics, "source": str(Path(weights).resolve())}
    else:
        metrics = {"note": "untrained"}
    return register_version(ws, spec, model, metrics, version=version, activate=activate)


def _shared(ws: Workspace, folder: Path) -> dict[str, str]:
    """On PostgreSQL, every file of the version folder put into the workspace's blob store (its
    name -> SHA-256), before the row names them; on SQLite nothing: the folder is the store."""
    if ws.database is None:
        return {}
    return {
        p.name: ws.blobs.put_bytes(p.read_bytes()) for p in sorted(folder.iterdir()) if p.is_file()
    }


def _fetched(ws: Workspace, mv: ModelVersion) -> Path:
    """This machine's copy of a version kept in the blob store: each file checked against its
    SHA-256 and fetched again when missing or different (another machine registered it)."""
    folder = version_dir(ws, mv.name, mv.version)
    for name, digest in mv.files.items():
        path = folder / name
        if Path(name).name != name or name.startswith("."):
            raise ModelError(f"model {mv.name} {mv.version}: file name {name!r} is not usable")
        if file_digest(path) == digest:
            continue
        data = ws.blobs.get_bytes(digest)  # verified against the digest
        # Two processes may fetch at once: each its own temp file, the rename is atomic.
        tmp = folder / f".{name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, data, tmp=tmp)
        except OSError as e:
            raise ModelError(
                f"model {mv.name} {mv.version}: cannot keep its weights in {folder}: "
                f"{e.strerror or e}"
            ) from e
    return folder


def _folder(ws: Workspace, mv: ModelVersion) -> Path:
    """The registered path, or its place under this workspace when the folder was moved; a
    version kept in the blob store is this machine's copy (never another machine's path)."""
    if mv.files:
        return _fetched(ws, mv)
    path = Path(mv.path) if mv.path else version_dir(ws, mv.name, mv.version)
    if not path.is_absolute():
        path = ws.root / path
    if not path.exists():
        path = version_dir(ws, mv.name, mv.version)
    return path


def load_version(
    ws: Workspace, name: str, version: str | None = None
) -> tuple[MedModel, ModelSpec, str]:
    """The model of a registered version (the active one by default), in eval mode on the CPU."""
    if version is None:
        active = ws.models.active(name)
        if active is None:
            known = sorted({m.name for m in ws.models.list()})
            if name in known:
                raise ModelError(
                    f"model {name} has no active version in {ws.root}; "
                    f"activate one with `medviewer models activate {name} VERSION`"
                )
            raise ModelError(
                f"no model {name} in {ws.root}; known: {', '.join(known) or 'none'} "
                "(add one with `medviewer models add SPEC.json`)"
            )
        mv = active
    else:
        found = [m for m in ws.models.list(name) if m.version == version]
        if not found:
            raise ModelError(f"no model {name} version {version} in {ws.root}")
        mv = found[0]
    model, spec, _ = load_checkpoint(_folder(ws, mv))
    return model, spec, mv.version


def learnt_from(ws: Workspace, name: str, version: str) -> set[int]:
    """Image ids a version trained on, its ancestors' included (a version trained from another
    started from what that one learnt): what a fair comparison with it must not validate on.
    Read from each version's manifest (`split.train`, `trained_from`); a version without one
    (added from outside with `models add`) adds nothing."""
    seen: set[int] = set()
    visited: set[str] = set()
    current: str | None = version
    versions = {m.version: m for m in ws.models.list(name)}
    while current in versions and current not in visited:
        visited.add(current)
        path = _folder(ws, versions[current]) / MANIFEST
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError):
            break
        seen.update(int(i) for i in manifest.get("split", {}).get("train", []))
        current = manifest.get("trained_from")
    return seen


def load_gate_classifier(ws: Workspace, spec: ModelSpec) -> tuple[MedModel, ModelSpec] | None:
    """The active classifier a two-stage gate runs first; None for other gates."""
    gate = spec.gate
    if gate.type != "two_stage":
        return None
    model, c_spec, _ = load_version(ws, gate.model or "")
    if gate.label is not None and gate.label not in c_spec.labels:
        raise ModelError(
            f"model {spec.name}: its gate reads label {gate.label!r}, which classifier "
            f"{c_spec.name} does not have (it has {', '.join(c_spec.labels) or 'none'})"
        )
    return model, c_spec
