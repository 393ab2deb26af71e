"""Model versions kept in the workspace: files, spec, metrics, and which one is active."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from medviewer.workspace.errors import WorkspaceError

if TYPE_CHECKING:
    from medviewer.workspace.store import Workspace


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    path: str
    active: bool
    created_at: float
    activated_at: float | None
    spec: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    # file name -> SHA-256, in the workspace's blob store (PostgreSQL); {} on SQLite
    files: dict[str, str] = field(default_factory=dict)

    @property
    def classes(self) -> list[dict[str, Any]]:
        """[{"name": ..., "color": [r, g, b]}, ...] from the spec, index = class value."""
        return list(self.spec.get("classes", []))


_COLUMNS = "name, version, path, active, created_at, activated_at, spec, metrics, files"


def _model(r: tuple) -> ModelVersion:
    return ModelVersion(
        r[0],
        r[1],
        r[2],
        bool(r[3]),
        r[4],
        r[5],
        spec=json.loads(r[6]),
        metrics=json.loads(r[7]),
        files=json.loads(r[8]),
    )


Activated = Callable[[ModelVersion], None]


class ModelVersions:
    """The one owner of model versions' rows and of activation.

    `activate` (and `rollback`, through it) is the only place a version becomes active; it then
    calls every `on_activated` listener of this process. Other processes (a training job that
    activates, the CLI) change the same rows: the app notices them with `active_versions`.
    """

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._listeners: list[Activated] = []

    def on_activated(self, listener: Activated) -> Callable[[], None]:
        """Call `listener(version)` after each activation in this process; returns a function
        that removes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def register(
        self,
        name: str,
        version: str,
        *,
        path: str = "",
        spec: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        files: dict[str, str] | None = None,
    ) -> ModelVersion:
        with self.ws.transaction(f"register model {name} {version}") as db:
            db.lock(f"model {name}")
            if db.execute(
                "SELECT 1 FROM models WHERE name = ? AND version = ?", (name, version)
            ).fetchone():
                raise WorkspaceError(f"model {name} version {version} is already registered")
            db.execute(
                "INSERT INTO models (name, version, path, spec, metrics, files, created_at)"
                " VALUES (?,?,?,?,?,?,?)",
                (
                    name,
                    version,
                    path,
                    json.dumps(spec or {}),
                    json.dumps(metrics or {}),
                    json.dumps(files or {}),
                    time.time(),
                ),
            )
        return self.get(name, version)

    def get(self, name: str, version: str) -> ModelVersion:
        r = self.ws.db.execute(
            f"SELECT {_COLUMNS} FROM models WHERE name = ? AND version = ?", (name, version)
        ).fetchone()
        if r is None:
            raise WorkspaceError(f"no model {name} version {version} in {self.ws.root}")
        return _model(r)

    def list(self, name: str | None = None) -> list[ModelVersion]:
        sql = f"SELECT {_COLUMNS} FROM models"
        rows = self.ws.db.execute(
            sql + (" WHERE name = ?" if name else "") + " ORDER BY name, created_at, id",
            (name,) if name else (),
        )
        return [_model(r) for r in rows]

    def active(self, name: str) -> ModelVersion | None:
        r = self.ws.db.execute(
            f"SELECT {_COLUMNS} FROM models WHERE name = ? AND active = 1", (name,)
        ).fetchone()
        return _model(r) if r else None

    def activate(self, name: str, version: str) -> ModelVersion:
        self.get(name, version)
        with self.ws.transaction(f"activate model {name} {version}") as db:
            db.lock(f"model {name}")  # two activations at once leave one active version
            db.execute("UPDATE models SET active = 0 WHERE name = ?", (name,))
            db.execute(
                "UPDATE models SET active = 1, activated_at = ? WHERE name = ? AND version = ?",
                (time.time(), name, version),
            )
        activated = self.get(name, version)
        for listener in list(self._listeners):
            listener(activated)
        return activated

    def active_versions(self) -> dict[str, str]:
        """Model name -> its active version, in one cheap query (the app polls this)."""
        rows = self.ws.db.execute("SELECT name, version FROM models WHERE active = 1")
        return dict(rows.fetchall())

    def rollback(self, name: str) -> ModelVersion:
        """Re-activate the version that was active before the current one."""
        current = self.active(name)
        if current is None:
            raise WorkspaceError(f"model {name} has no active version to roll back from")
        r = self.ws.db.execute(
            "SELECT version FROM models WHERE name = ? AND activated_at IS NOT NULL"
            " AND version != ? ORDER BY activated_at DESC LIMIT 1",
            (name, current.version),
        ).fetchone()
        if r is None:
            raise WorkspaceError(f"model {name} has no earlier active version to roll back to")
        return self.activate(name, r[0])
