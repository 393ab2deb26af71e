"""Confirmed truth has one definition (`Revisions.confirmed`), and export, the training
snapshot and label spreading all follow it: approving an unedited AI proposal confirms it."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from medviewer.cli import main
from medviewer.workspace import Workspace, training_snapshot
from medviewer.workspace.export import export_workspace


def _mask(v: int) -> np.ndarray:
    m = np.zeros((32, 24), np.uint8)
    m[2:9, 3:7] = v
    return m


def test_an_approved_unedited_proposal_is_confirmed_by_the_approver(ws: Workspace) -> None:
    a = ws.images()[0].id
    ai = ws.revisions.save_mask(a, _mask(1), source="ai", author="m", model=("m", "1"))
    assert ws.revisions.confirmed(a) is None  # a proposal alone is not truth
    approval = ws.revisions.set_status(a, "approved", author="dr.b")
    confirmed = ws.revisions.confirmed(a)
    assert confirmed.revision.id == ai.id
    assert (confirmed.by, confirmed.at) == ("dr.b", approval.created_at)


def test_later_proposals_corrections_and_rejection(ws: Workspace) -> None:
    a, b, _ = (r.id for r in ws.images())
    ai = ws.revisions.save_mask(a, _mask(1), source="ai", author="m", model=("m", "1"))
    ws.revisions.set_status(a, "approved", author="dr.b")
    ws.revisions.save_mask(a, _mask(2), source="ai", author="m", model=("m", "2"))
    assert ws.revisions.confirmed(a).revision.id == ai.id  # a newer model changes nothing
    fixed = ws.revisions.save_mask(a, _mask(3), source="human", author="dr.c")
    assert (ws.revisions.confirmed(a).revision.id, ws.revisions.confirmed(a).by) == (
        fixed.id,
        "dr.c",
    )
    human = ws.revisions.save_mask(b, _mask(1), source="human", author="dr.c")
    assert ws.revisions.confirmed(b).revision.id == human.id  # a correction needs no approval
    ws.revisions.set_status(b, "rejected", author="dr.b")
    assert ws.revisions.confirmed(b) is None


def test_export_and_training_agree_on_approved_proposals(ws: Workspace, tmp_path: Path) -> None:
    """The bug: approved unedited proposals trained but were not exported (`--which final`)."""
    ids = [r.id for r in ws.images()]
    for i in ids:
        ws.revisions.save_mask(i, _mask(1), source="ai", author="m", model=("m", "1"))
    for i in ids[:2]:
        ws.revisions.set_status(i, "approved", author="dr.b")
    trained = {item.image_id for item in training_snapshot(ws).items if item.mask is not None}
    assert trained == set(ids[:2])

    png = export_workspace(ws, tmp_path / "png", "png")
    assert (png.exported, png.skipped) == (2, 1)
    for path in png.files:
        assert np.array_equal(np.asarray(_read_png(path)), _mask(1))

    table = export_workspace(ws, tmp_path / "csv", "csv")
    with open(table.files[0], newline="", encoding="utf-8") as fp:
        rows = {int(r["image_id"]): r for r in csv.DictReader(fp)}
    assert {i for i, r in rows.items() if r["mask_revision"]} == trained
    assert {rows[i]["confirmed_by"] for i in trained} == {"dr.b"}
    assert {rows[i]["mask_source"] for i in trained} == {"ai"}
    assert rows[ids[2]]["confirmed_by"] == "" and rows[ids[2]]["modality"] == "CT"

    seg = export_workspace(ws, tmp_path / "seg", "dicom-seg")
    assert seg.exported == 2 and len(seg.files) == 1


def _read_png(path: Path) -> np.ndarray:
    import cv2

    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def test_review_command_then_export_writes_the_approved_masks(
    ws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = [r.id for r in ws.images()]
    for i in ids:
        ws.revisions.save_mask(i, _mask(1), source="ai", author="m", model=("m", "1"))
    root = str(ws.root)
    args = ["review", *map(str, ids[:2]), "--approve", "--author", "dr.q", "--workspace", root]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"image {ids[0]}: approved by dr.q; mask revision" in out and "(ai) confirmed" in out
    assert main(["review", str(ids[2]), "--reject", "--author", "dr.q", "--workspace", root]) == 0
    out_dir = str(tmp_path / "o")
    assert main(["export", "--format", "png", "--out", out_dir, "--workspace", root]) == 0
    assert len(list((tmp_path / "o").glob("*_mask.png"))) == 2
    assert main(["review", "999", "--approve", "--author", "dr.q", "--workspace", root]) != 0
    assert "no image with id 999" in capsys.readouterr().err
    assert [r.status for r in ws.images()] == ["approved", "approved", "rejected"]
