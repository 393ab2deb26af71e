"""The demo workspace: a small build, its models, proposals, training data and reuse."""

from __future__ import annotations

import time
from pathlib import Path

from medviewer.demo.build import AUTHOR, build_demo
from medviewer.workspace import Workspace, training_snapshot


def test_small_demo_builds_and_is_reused(tmp_path: Path) -> None:
    ws_dir = tmp_path / "demo"
    started = time.perf_counter()
    messages: list[str] = []
    summary = build_demo(ws_dir, seed=0, progress=messages.append, small=True)
    assert time.perf_counter() - started < 60
    assert messages and not summary.reused
    assert summary.task_images == {"chest": 6, "abdomen": 6, "fundus": 6}
    assert summary.confirmed == {"chest": 4, "abdomen": 4, "fundus": 4}
    # every unconfirmed task image, by its own task's model
    assert summary.proposals == {"chest-pneumothorax": 2, "abdomen-kidneys": 2,
                                 "fundus-findings": 2}  # fmt: skip
    assert set(summary.models) == set(summary.proposals)
    assert all("score" in m["validation"] for m in summary.models.values())
    assert summary.images >= 18 + summary.samples
    assert any("demo workspace" in line for line in summary.lines())

    with Workspace.open(ws_dir) as ws:
        active = {m.name for m in ws.models.list() if m.active}
        assert active == set(summary.models)
        by_modality: dict[str, set[int]] = {}
        for row in ws.images():
            by_modality.setdefault(row.modality, set()).add(row.id)
        ai = ws.db.execute(
            "SELECT DISTINCT image, model_name FROM revisions WHERE source = 'ai'"
        ).fetchall()
        models_of: dict[int, set[str]] = {}
        for image, model in ai:
            models_of.setdefault(image, set()).add(model)
        approved = {r.id for r in ws.images() if r.status == "approved"}
        assert len(approved) == 12 and not approved & set(models_of)
        assert len(models_of) == 6  # unconfirmed task images only, never the real samples
        stems = {r.id: Path(r.path) for r in ws.images()}
        for image, models in models_of.items():
            task = stems[image].parts[-3]  # demo-studies/<task>/<patient>/<file>
            want = {"chest": "chest-pneumothorax", "abdomen": "abdomen-kidneys",
                    "fundus": "fundus-findings"}[task]  # fmt: skip
            assert models == {want}, (stems[image], models)
        items = training_snapshot(ws).items
        assert len(items) == 12
        assert all(i.status == "approved" for i in items)
        truth = [i.mask or i.labels for i in items]
        assert all(r is not None and r.source == "import" and r.author == AUTHOR for r in truth)
        revisions = ws.db.execute("SELECT count(*) FROM revisions").fetchone()[0]
        images = len(ws.images())

    started = time.perf_counter()
    again = build_demo(ws_dir, seed=0, progress=messages.append, small=True)
    assert again.reused and time.perf_counter() - started < 5
    assert again.proposals == summary.proposals and again.models == summary.models
    with Workspace.open(ws_dir) as ws:
        assert ws.db.execute("SELECT count(*) FROM revisions").fetchone()[0] == revisions
        assert len(ws.images()) == images
