from __future__ import annotations

import pytest

from medviewer.workspace import Workspace, WorkspaceError


def test_register_activate_rollback(ws: Workspace) -> None:
    spec = {
        "classes": [
            {"name": "background", "color": [0, 0, 0]},
            {"name": "lung", "color": [255, 0, 0]},
        ]
    }
    ws.models.register("chest", "1", spec=spec, metrics={"dice": 0.7})
    ws.models.register("chest", "2", metrics={"dice": 0.8})
    assert ws.models.active("chest") is None
    ws.models.activate("chest", "1")
    ws.models.activate("chest", "2")
    assert ws.models.active("chest").version == "2"
    assert ws.models.rollback("chest").version == "1"
    assert [m.active for m in ws.models.list("chest")] == [True, False]
    assert ws.models.get("chest", "1").classes[1]["name"] == "lung"
    with pytest.raises(WorkspaceError, match="already registered"):
        ws.models.register("chest", "1")
    with pytest.raises(WorkspaceError, match="no model chest version 9"):
        ws.models.activate("chest", "9")


def test_rollback_without_history(ws: Workspace) -> None:
    ws.models.register("fundus", "1")
    with pytest.raises(WorkspaceError, match="no active version"):
        ws.models.rollback("fundus")
    ws.models.activate("fundus", "1")
    with pytest.raises(WorkspaceError, match="no earlier active version"):
        ws.models.rollback("fundus")


def test_jobs_survive_reopen(ws: Workspace) -> None:
    job = ws.jobs.create("train", "chest")
    ws.jobs.update(job.id, state="running", pid=1234, progress={"epoch": 1, "of": 5})
    ws.jobs.update(job.id, state="failed", message="out of memory on epoch 2")
    root = ws.root
    ws.close()
    with Workspace.open(root) as again:
        (j,) = again.jobs.list()
        assert (j.state, j.message, j.progress["epoch"]) == (
            "failed",
            "out of memory on epoch 2",
            1,
        )
        with pytest.raises(ValueError, match="unknown job state"):
            again.jobs.update(j.id, state="exploded")
