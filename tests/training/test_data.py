"""Training data: patient-wise split, negatives kept, inference-identical preprocessing, seeded
augmentation. The builders here are shared by the other training tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from medviewer.imaging import ImageLoader
from medviewer.inference.preprocess import normalise, resize_to, to_channels
from medviewer.models.spec import ModelSpec
from medviewer.training.data import (
    TrainingError,
    TrainingSet,
    augment,
    prepare,
    split_by_patient,
)
from medviewer.workspace import Workspace, training_snapshot
from medviewer.workspace.snapshot import TrainingItem
from tests.imaging.helpers import write_ct_slice
from tests.specs import tiny_segmenter

SEG = tiny_segmenter()


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """OpenMP threads spin-wait: on a shared CI runner two threads on these tiny models run up to
    10x slower than one, and one is within ~10% of two on an idle machine. (The variable keeps
    the inference Engine from raising the thread count again.)"""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def disc_image(rng: np.random.Generator, positive: bool, size: int = 64) -> tuple:
    """A CT-like slice (stored values) and its truth: a bright disc, or nothing."""
    hu = rng.normal(40, 30, (size, size))
    mask = np.zeros((size, size), np.uint8)
    if positive:
        yy, xx = np.mgrid[:size, :size]
        cy, cx = rng.uniform(16, size - 16, 2)
        r = rng.uniform(6, 12)
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = 1
        hu[mask == 1] += 250
    return (hu + 1024).astype(np.int16), mask


def make_studies(folder: Path, patients: int, slices: int, seed: int = 0) -> dict[str, np.ndarray]:
    """`patients` patients of `slices` slices each; every third slice is a negative.
    Returns file name -> truth mask."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for p in range(patients):
        for k in range(slices):
            px, mask = disc_image(rng, positive=(p * slices + k) % 3 != 2)
            name = f"p{p}_s{k}.dcm"
            write_ct_slice(
                folder / name,
                px,
                series_uid=f"1.2.9.{p}.1",
                study_uid=f"1.2.9.{p}",
                patient_id=f"P{p}",
                position=(0, 0, float(k)),
                instance_number=k + 1,
            )
            truth[name] = mask
    return truth


def confirm(ws: Workspace, truth: dict[str, np.ndarray], names: list[str] | None = None) -> None:
    """Import the true masks as human-confirmed revisions (approved)."""
    for row in ws.images():
        name = Path(row.path).name
        if names is None or name in names:
            ws.revisions.save_mask(row.id, truth[name], source="import", author="test")
            ws.revisions.set_status(row.id, "approved", author="dr")


def item(image_id: int, patient: str, study: str = "1.2") -> TrainingItem:
    return TrainingItem(image_id, None, "approved", patient, study, None, None)  # type: ignore[arg-type]


def test_split_keeps_each_patient_on_one_side() -> None:
    items = [item(i, f"P{i % 7}") for i in range(70)]
    split = split_by_patient(items, 0.3, seed=1)
    train = {i.patient_id for i in split.train}
    val = {i.patient_id for i in split.val}
    assert train and val and not train & val
    assert len(val) == 2  # round(0.3 * 7)
    assert split.grouped_by == "patient"
    again = split_by_patient(list(reversed(items)), 0.3, seed=1)
    assert {i.patient_id for i in again.val} == val  # deterministic, order-independent
    others = {
        frozenset(i.patient_id for i in split_by_patient(items, 0.3, s).val) for s in range(8)
    }
    assert len(others) > 1  # the seed decides


def test_split_holds_out_only_patients_the_compared_version_never_learnt_from() -> None:
    items = [item(i, f"P{i % 8}") for i in range(40)]
    seen = {i.image_id for i in items if i.patient_id in ("P0", "P1", "P2", "P3", "P4")}
    for seed in range(6):
        split = split_by_patient(items, 0.25, seed, seen)
        val = {i.patient_id for i in split.val}
        assert len(val) == 2 and not val & {"P0", "P1", "P2", "P3", "P4"}
        assert not split.seen_held_out
    assert split_by_patient(items, 0.25, 0) == split_by_patient(items, 0.25, 0, set())
    everyone = split_by_patient(items, 0.25, 0, {i.image_id for i in items})
    assert everyone.val and everyone.seen_held_out and everyone.manifest()["seen_held_out"]


def test_split_by_study_without_patient_ids_then_by_image() -> None:
    items = [item(i, "", f"folder:{i % 4}") for i in range(12)]
    split = split_by_patient(items, 0.25, seed=0)
    assert split.grouped_by == "study"
    assert not {i.study_uid for i in split.train} & {i.study_uid for i in split.val}
    one_folder = [item(i, "", "folder:x") for i in range(5)]
    assert split_by_patient(one_folder, 0.25, seed=0).grouped_by == "image"
    with pytest.raises(TrainingError, match="at least 2"):
        split_by_patient([item(1, "P1")], 0.25, seed=0)


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[tuple[Workspace, dict[str, np.ndarray]]]:
    truth = make_studies(tmp_path / "study", patients=2, slices=3)
    with Workspace.open(tmp_path / "ws") as ws:
        ws.import_paths([tmp_path / "study"])
        yield ws, truth


def test_prepare_matches_inference_and_keeps_negatives(ws: tuple) -> None:
    workspace, truth = ws
    confirm(workspace, truth)
    spec = ModelSpec.from_dict({**SEG, "input": {"size": [32, 32]}})
    items = training_snapshot(workspace).items
    data = prepare(workspace, items, spec)
    assert len(data) == 6 and data.negative.sum() == 2
    loader = ImageLoader()
    for k, it in enumerate(items):
        expected = normalise(resize_to(to_channels(loader.image(it.frame), spec), (32, 32)), spec)
        np.testing.assert_array_equal(TrainingSet(data).batch([k])["image"][0].numpy(), expected)
        # Nearest neighbour: class ids stay ids, negatives are all background.
        assert set(np.unique(data.masks[k])) <= {0, 1}
        assert data.masks[k].any() != data.negative[k]


def test_labels_from_labels_revision_or_derived_from_mask(ws: tuple) -> None:
    workspace, truth = ws
    rows = workspace.images()
    spec = ModelSpec.from_dict(
        {**SEG, "task": "segmentation+classification", "labels": ["lesion", "calcified"]}
    )
    workspace.revisions.save_mask(
        rows[0].id, truth[Path(rows[0].path).name], source="human", author="dr"
    )
    workspace.revisions.save_labels(
        rows[1].id, {"lesion": True, "calcified": True}, source="human", author="dr"
    )
    workspace.revisions.save_labels(rows[2].id, {"lesion": False}, source="human", author="dr")
    items = {i.image_id: i for i in training_snapshot(workspace).items}
    data = prepare(workspace, [items[r.id] for r in rows[:3]], spec)
    # From the mask only the first label is known; a labels revision knows every label.
    assert data.labels[0].tolist() == [1, 0] and data.label_known[0].tolist() == [1, 0]
    assert data.labels[1].tolist() == [1, 1] and data.label_known[1].tolist() == [1, 1]
    # A positive without a mask cannot teach the mask; a negative one can (all background).
    assert data.has_mask.tolist() == [True, False, True] and data.negative.tolist()[2]
    seg_only = prepare(workspace, [items[r.id] for r in rows[:3]], ModelSpec.from_dict(SEG))
    assert len(seg_only) == 2 and seg_only.skipped[0][0] == rows[1].id


def test_augmentation_is_seeded_and_keeps_class_ids() -> None:
    rng = np.random.default_rng(0)
    image = rng.random((64, 64, 1)).astype(np.float32)
    mask = np.zeros((64, 64), np.uint8)
    mask[20:40, 10:30] = 3
    a = augment(image, mask, np.random.default_rng([1, 0, 5]))
    b = augment(image, mask, np.random.default_rng([1, 0, 5]))
    c = augment(image, mask, np.random.default_rng([1, 1, 5]))
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])
    assert set(np.unique(a[1])) <= {0, 3} and a[0].shape == (64, 64, 1)
