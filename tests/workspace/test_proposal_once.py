"""One AI revision per (image, kind, model, version), even from two `infer` runs at once
(issue 17, item 11: 212 images got duplicate AI revisions)."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import numpy as np

from medviewer.workspace import Workspace

MODEL = ("chest", "3")
KINDS = ("mask", "labels")


def _propose_all(root: str, value: int, barrier: threading.Barrier) -> None:
    """What one `medviewer infer` run writes per image: an AI mask, then AI labels."""
    with Workspace.open(root) as ws:
        ids = [r.id for r in ws.images()]
        barrier.wait(timeout=60)
        for image_id in ids:
            mask = np.full((32, 24), value, np.uint8)
            summary = {"probability": value / 10}
            ws.revisions.save_mask(
                image_id, mask, source="ai", author="unet", model=MODEL, summary=summary
            )
            ws.revisions.save_labels(
                image_id, {"x": True}, source="ai", author="unet", model=MODEL, summary=summary
            )


def _ai_rows(ws: Workspace) -> list[tuple[int, str, int]]:
    return ws.db.execute(
        "SELECT image, kind, count(*) FROM revisions WHERE source = 'ai' GROUP BY image, kind"
    ).fetchall()


def test_a_second_proposal_of_one_version_returns_the_first(ws: Workspace) -> None:
    image = ws.images()[0].id
    first = ws.revisions.save_mask(
        image, np.ones((32, 24), np.uint8), source="ai", author="unet", model=MODEL
    )
    again = ws.revisions.save_mask(
        image, np.zeros((32, 24), np.uint8), source="ai", author="unet", model=MODEL
    )
    assert again == first and len(ws.revisions.history(image)) == 1
    newer = ws.revisions.save_mask(
        image, np.zeros((32, 24), np.uint8), source="ai", author="unet", model=("chest", "4")
    )
    assert newer.id != first.id and newer.parent_id == first.id  # another version: a new one
    human = ws.revisions.save_mask(image, np.ones((32, 24), np.uint8), source="human", author="a")
    assert ws.revisions.save_mask(
        image, np.ones((32, 24), np.uint8), source="human", author="a"
    ).id not in (human.id, first.id, newer.id)  # human edits are never folded together


def test_two_processes_at_once_write_each_proposal_once(tmp_path: Path, series_dir: Path) -> None:
    root = tmp_path / "ws"
    with Workspace.open(root) as ws:
        ws.import_paths([series_dir])
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_propose_all, args=(str(root), v, barrier)) for v in (1, 2, 3, 4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    with Workspace.open(root) as ws:
        rows = _ai_rows(ws)
        assert len(rows) == 6 and {n for *_, n in rows} == {1}, rows
        for image in ws.images():
            # The worklist columns come from a revision kept, never from a run that lost.
            kept = {ws.revisions.original(image.id, k).summary["probability"] for k in KINDS}
            assert image.ai_probability in kept
