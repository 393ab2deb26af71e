"""The demo workspace: a small build, its models, proposals, training data and reuse."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest

from medviewer.demo.build import AUTHOR, build_demo
from medviewer.demo.samples import REAL_TASKS
from medviewer.workspace import Workspace, training_snapshot

# The brain MRI task needs nilearn (the `demo` extra); without it the demo skips it with a note.
HAS_NILEARN = all(importlib.util.find_spec(m) for m in ("nilearn", "nibabel"))
BRAIN = {"brain": 4} if HAS_NILEARN else {}  # small build: 4 slices, 2 confirmed
# scikit-image (the demo extra) adds its real fundus photograph, unreviewed, to the fundus task.
RETINA = int(importlib.util.find_spec("skimage") is not None)
# pydicom-data (the demo extra) adds its real chest radiograph, unreviewed, to the chest task.
REAL_CR = int(importlib.util.find_spec("data_store") is not None)


def test_small_demo_builds_and_is_reused(tmp_path: Path) -> None:
    ws_dir = tmp_path / "demo"
    started = time.perf_counter()
    messages: list[str] = []
    summary = build_demo(ws_dir, seed=0, progress=messages.append, small=True)
    assert time.perf_counter() - started < 60
    assert messages and not summary.reused
    assert summary.task_images == {
        "chest": 6 + REAL_CR,
        "abdomen": 6,
        "fundus": 6 + RETINA,
        **BRAIN,
    }
    assert summary.confirmed == {"chest": 4, "abdomen": 4, "fundus": 4,
                                 **{t: n // 2 for t, n in BRAIN.items()}}  # fmt: skip
    # every unconfirmed task image, by its own task's model
    brain = {"brain-tissue": 2} if HAS_NILEARN else {}
    assert summary.proposals == {"chest-pneumothorax": 2 + REAL_CR, "abdomen-kidneys": 2,
                                 "fundus-findings": 2 + RETINA, **brain}  # fmt: skip
    assert set(summary.models) == set(summary.proposals)
    assert all("score" in m["validation"] for m in summary.models.values())
    assert summary.images >= 18 + sum(BRAIN.values()) + summary.samples
    assert RETINA or any("retina.jpg is skipped" in n for n in summary.notes)
    assert HAS_NILEARN or any("brain MRI task is skipped" in n for n in summary.notes)
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
        extra = 2 if HAS_NILEARN else 0
        assert len(approved) == 12 + extra and not approved & set(models_of)
        # unconfirmed task images only; of the real samples the fundus and chest photographs
        assert len(models_of) == 6 + extra + RETINA + REAL_CR
        stems = {r.id: Path(r.path) for r in ws.images()}
        for image, models in models_of.items():
            assert models == {models_of_task(stems[image])}, (stems[image], models)
        items = training_snapshot(ws).items
        assert len(items) == 12 + extra
        assert all(i.status == "approved" for i in items)
        truth = [i.mask or i.labels for i in items]
        assert all(r is not None and r.source == "import" and r.author == AUTHOR for r in truth)
        # The truth names its task's model: Retrain takes that model's images only.
        for i in items:
            assert i.models == {models_of_task(stems[i.image_id])}
        revisions = ws.db.execute("SELECT count(*) FROM revisions").fetchone()[0]
        images = len(ws.images())

    started = time.perf_counter()
    again = build_demo(ws_dir, seed=0, progress=messages.append, small=True)
    assert again.reused and time.perf_counter() - started < 5
    assert again.proposals == summary.proposals and again.models == summary.models
    with Workspace.open(ws_dir) as ws:
        assert ws.db.execute("SELECT count(*) FROM revisions").fetchone()[0] == revisions
        assert len(ws.images()) == images


def models_of_task(path: Path) -> str:
    # demo-studies/<task>/<patient or skimage>/<file>, or a real sample of a task
    task = REAL_TASKS.get(path.name) or path.parts[-3]
    return {"chest": "chest-pneumothorax", "abdomen": "abdomen-kidneys",
            "fundus": "fundus-findings", "brain": "brain-tissue"}[task]  # fmt: skip


def test_same_seed_builds_bit_identical_models(tmp_path: Path) -> None:
    quiet = lambda message: None  # noqa: E731
    builds = [build_demo(tmp_path / d, seed=5, progress=quiet, small=True) for d in "ab"]
    assert builds[0].models == builds[1].models
    for name in builds[0].models:
        a, b = (tmp_path / d / "models" / name / "v1" / "weights.safetensors" for d in "ab")
        assert a.read_bytes() == b.read_bytes(), name


def test_a_demo_of_another_seed_is_rebuilt_not_mixed(tmp_path: Path) -> None:
    messages: list[str] = []
    build_demo(tmp_path / "ws", seed=1, progress=messages.append, small=True)
    again = build_demo(tmp_path / "ws", seed=2, progress=messages.append, small=True)
    assert not again.reused and again.seed == 2
    assert any(m.startswith("rebuilding") for m in messages)
    with Workspace.open(tmp_path / "ws", readonly=True) as ws:
        assert {m.version for m in ws.models.list()} == {"v1"}
        assert len(ws.images()) == again.images


def test_without_pretrained_weights_the_demo_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    import medviewer.demo.build as build

    monkeypatch.setattr(build, "find_efficientnet_lite0", lambda: None)
    notes: list[str] = []
    assert build._pretrained(Path("unused"), notes) is None
    assert "random weights" in notes[0]


@pytest.mark.skipif(not HAS_NILEARN, reason="nilearn / nibabel (the demo extra) not installed")
def test_brain_slices_are_a_real_mr_series_with_four_tissue_classes(tmp_path: Path) -> None:
    import numpy as np
    import pydicom

    from medviewer.demo.cases import SMALL, write_brain

    written, note = write_brain(tmp_path, SMALL)
    assert note is None and len(written) == 4 and [w.labelled for w in written].count(True) == 2
    zs = []
    for w in written:
        ds = pydicom.dcmread(w.path)
        assert ds.Modality == "MR" and ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4"
        assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.pixel_array.dtype == np.uint16
        assert [float(v) for v in ds.PixelSpacing] == [1.0, 1.0] and "FrameOfReferenceUID" in ds
        assert np.array_equal(ds.pixel_array, w.case.image)
        assert w.case.mask.shape == w.case.image.shape
        assert set(np.unique(w.case.mask)) == {0, 1, 2, 3}
        zs.append(float(ds.ImagePositionPatient[2]))
    assert zs == sorted(zs) and len(set(zs)) == 4


def test_brain_task_is_skipped_with_a_note_without_nilearn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import medviewer.demo.brain as brain
    from medviewer.demo.cases import SMALL, write_brain

    monkeypatch.setattr(brain, "_data_dir", lambda: None)
    written, note = write_brain(tmp_path, SMALL)
    assert written == [] and note and "skipped" in note
