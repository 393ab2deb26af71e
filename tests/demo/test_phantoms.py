"""Phantom generators: deterministic, ground truth consistent with the image, cheap; and the
files written from them valid DICOM (dciodvfy) that medviewer imports without problems."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest

from medviewer.demo.phantoms import (
    ABDOMEN_CLASSES,
    FUNDUS_LABELS,
    Case,
    abdomen_case,
    chest_case,
    fundus_case,
    make_case,
)
from medviewer.demo.writers import write_dicom, write_jpeg, write_png
from medviewer.imaging.display import modality_values, render
from medviewer.imaging.loading import ImageLoader
from medviewer.imaging.scan import scan, verify

GENERATORS = {"chest": chest_case, "abdomen": abdomen_case, "fundus": fundus_case}
SEEDS = range(100)


@pytest.fixture(scope="module")
def chest_cases() -> list[Case]:
    return [chest_case(s) for s in SEEDS]


@pytest.fixture(scope="module")
def abdomen_cases() -> list[Case]:
    return [abdomen_case(s) for s in SEEDS]


@pytest.fixture(scope="module")
def fundus_cases() -> list[Case]:
    return [fundus_case(s) for s in SEEDS]


def _same(a: Case, b: Case) -> bool:
    return (
        a.image.dtype == b.image.dtype
        and np.array_equal(a.image, b.image)
        and np.array_equal(a.mask, b.mask)
        and a.labels == b.labels
        and a.finding == b.finding
    )


# --- determinism, types, shapes ---------------------------------------------------------------


@pytest.mark.parametrize("task", GENERATORS)
def test_same_seed_gives_identical_case(task: str) -> None:
    for seed in (0, 7, 123456):
        assert _same(make_case(task, seed), GENERATORS[task](seed))


@pytest.mark.parametrize("task", GENERATORS)
def test_different_seeds_give_different_images(task: str) -> None:
    images = [GENERATORS[task](seed).image for seed in range(6)]
    for i in range(len(images)):
        for j in range(i + 1, len(images)):
            assert not np.array_equal(images[i], images[j])


def test_unknown_task_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown phantom task"):
        make_case("brain", 0)


@pytest.mark.parametrize("size", [128, 200, 384])
def test_other_sizes(size: int) -> None:
    for task, generate in GENERATORS.items():
        case = generate(3, size)
        assert case.image.shape[:2] == (size, size), task
        assert case.mask is not None and case.mask.shape == (size, size), task


def test_chest_types_and_ranges(chest_cases: list[Case]) -> None:
    for case in chest_cases[:20]:
        assert case.task == "chest" and case.image.dtype == np.uint16
        assert case.image.shape == (256, 256) and case.image.max() <= 4095
        assert case.mask is not None and case.mask.dtype == np.uint8
        assert set(np.unique(case.mask)) <= {0, 1}
        assert case.pixel_spacing is not None and case.pixel_spacing[0] > 0
        # Dark air outside the body, bright mediastinum in the middle.
        assert case.image[:20, :10].mean() < 600
        assert case.image[100:140, 120:136].mean() > case.image[100:140, 40:80].mean()


def test_abdomen_types_and_ranges(abdomen_cases: list[Case]) -> None:
    for case in abdomen_cases[:20]:
        hu, mask = case.image, case.mask
        assert case.task == "abdomen" and hu.dtype == np.int16 and hu.shape == (256, 256)
        assert mask is not None and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 1, 2, 3}
        assert hu.min() >= -1024 and hu.max() <= 3071
        assert abs(float(hu[:16, :16].mean()) + 1000) < 15  # air around the patient
        assert hu.max() > 500  # bone
        kidney = hu[(mask == 1) | (mask == 2)]
        assert 80 < float(np.median(kidney)) < 200  # enhancing parenchyma


def test_fundus_types_and_ranges(fundus_cases: list[Case]) -> None:
    for case in fundus_cases[:20]:
        img = case.image
        assert case.task == "fundus" and img.dtype == np.uint8 and img.shape == (256, 256, 3)
        assert img[:12, :12].max() == 0  # black outside the field stop
        centre = img[96:160, 96:160].reshape(-1, 3).mean(0)
        assert centre[0] > centre[1] > centre[2]  # orange-red
        assert case.mask is not None and case.mask.dtype == np.uint8


# --- ground truth ---------------------------------------------------------------------------


def test_chest_finding_share_and_mask(chest_cases: list[Case]) -> None:
    positives = [c for c in chest_cases if c.finding]
    assert 35 <= len(positives) <= 65
    for case in chest_cases:
        assert case.labels == {"pneumothorax": case.finding}
        assert bool(case.mask.any()) == case.finding
    for case in positives:
        mask = case.mask.astype(bool)
        assert 0.005 < mask.mean() < 0.15
        assert cv2.connectedComponents(case.mask)[0] == 2  # one crescent
        ys, xs = np.nonzero(mask)
        # On the lateral side of its lung: patient's right lung is on the image's left.
        if case.meta["side"] == "right":
            assert xs.mean() < 110
        else:
            assert xs.mean() > 146
        assert ys.min() < 90  # reaches the apex
        # Darker than the same place in the other lung (air, no lung markings).
        mirror = mask[:, ::-1] & ~mask
        assert case.image[mask].mean() < case.image[mirror].mean()


def test_abdomen_lesion_share_and_imbalance(abdomen_cases: list[Case]) -> None:
    positives = [c for c in abdomen_cases if c.finding]
    assert 45 <= len(positives) <= 75
    total = np.zeros(4)
    for case in abdomen_cases:
        counts = np.bincount(case.mask.ravel(), minlength=4)
        total += counts
        assert counts[1] > 300 and counts[2] > 300  # both kidneys in every slice
        assert (counts[3] > 0) == case.finding == case.labels["lesion"]
        assert counts[3] / case.mask.size < 0.01
    share = total / total.sum()
    assert share[3] < 0.002 and share[0] > 0.95  # strongly imbalanced by design
    for case in positives:
        lesion = case.mask == 3
        assert 20 <= lesion.sum() <= 200
        label = ABDOMEN_CLASSES.index(case.meta["lesion"]["kidney"])
        near = cv2.dilate(lesion.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        assert (case.mask[near] == label).any()  # inside or touching its kidney
        kidney = case.image[case.mask == label]
        assert case.image[lesion].mean() < kidney.mean()  # hypo-enhancing


def test_kidneys_on_the_correct_sides(abdomen_cases: list[Case]) -> None:
    # Radiological convention: the patient's left kidney (1) is on the image's right.
    for case in abdomen_cases:
        left_x = np.nonzero(case.mask == 1)[1].mean()
        right_x = np.nonzero(case.mask == 2)[1].mean()
        assert right_x < 128 < left_x


def test_fundus_labels_consistent(fundus_cases: list[Case]) -> None:
    counts = dict.fromkeys(FUNDUS_LABELS, 0)
    for case in fundus_cases:
        labels = case.labels
        assert tuple(labels) == FUNDUS_LABELS
        dr, glaucoma = labels["diabetic retinopathy"], labels["glaucoma"]
        assert labels["normal"] == (not dr and not glaucoma)
        assert case.finding == (not labels["normal"])
        assert bool(case.mask.any()) == dr
        assert (case.meta["cup_to_disc"] > 0.6) == glaucoma
        for name, value in labels.items():
            counts[name] += value
    assert 25 <= counts["diabetic retinopathy"] <= 55
    assert 15 <= counts["glaucoma"] <= 45
    assert 30 <= counts["normal"] <= 60


def test_fundus_lesions_where_the_mask_says(fundus_cases: list[Case]) -> None:
    checked = 0
    for case in (c for c in fundus_cases if c.labels["diabetic retinopathy"]):
        mask = case.mask.astype(bool)
        assert case.meta["lesions"]
        for lesion in case.meta["lesions"]:
            r, c = (round(v) for v in lesion["center"])
            if lesion["radius"] < 2 or not (6 <= r < 250 and 6 <= c < 250):
                continue
            assert mask[r - 1 : r + 2, c - 1 : c + 2].any()
            # The lesion looks different from the retina around it: haemorrhages dark red,
            # exudates yellow (more green than the orange background).
            spot = case.image[r - 1 : r + 2, c - 1 : c + 2].reshape(-1, 3).astype(float).mean(0)
            around = case.image[r - 6 : r + 7, c - 6 : c + 7].astype(float)
            ring = ~mask[r - 6 : r + 7, c - 6 : c + 7]
            background = around[ring].mean(0)
            if lesion["kind"] == "haemorrhage":
                assert spot[0] < background[0] - 15
            else:
                assert spot[1] > background[1] + 40
            checked += 1
    assert checked > 50


# --- speed ----------------------------------------------------------------------------------


@pytest.mark.parametrize("task", GENERATORS)
def test_generation_is_cheap(task: str) -> None:
    generate = GENERATORS[task]
    generate(0)
    start = time.perf_counter()
    for seed in range(10):
        generate(seed)
    per_image = (time.perf_counter() - start) / 10
    print(f"{task}: {per_image * 1000:.1f} ms per 256x256 image")
    assert per_image < 0.2


# --- files ----------------------------------------------------------------------------------


def _dciodvfy(path: Path) -> None:
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (dicom3tools) not installed")
    proc = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Error" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    root = tmp_path_factory.mktemp("phantoms")
    chest = [chest_case(2), chest_case(3)]
    abdomen = [abdomen_case(5), abdomen_case(6), abdomen_case(7)]
    return {
        "chest": [
            write_dicom(c, root / "chest" / f"{i}.dcm", "P-CHEST", instance_number=i + 1)
            for i, c in enumerate(chest)
        ],
        "abdomen": [
            write_dicom(c, root / "ct" / f"{i}.dcm", "P-CT", None, None, i + 1, "CT")
            for i, c in enumerate(abdomen)
        ],
        "fundus": [
            write_jpeg(fundus_case(3), root / "fundus" / "od.jpg"),
            write_png(fundus_case(4), root / "fundus" / "os.png"),
        ],
    }


@pytest.mark.parametrize("task", ["chest", "abdomen"])
def test_written_dicom_passes_dciodvfy(written: dict[str, list[Path]], task: str) -> None:
    for path in written[task]:
        _dciodvfy(path)


def test_written_files_import_and_render(written: dict[str, list[Path]]) -> None:
    catalog = verify(scan([p.parent for paths in written.values() for p in paths[:1]]))
    assert catalog.problems == [] and catalog.skipped == []
    by_modality = {se.modality: se for se in catalog.series()}
    assert set(by_modality) == {"CR", "CT", "OT"}
    ct = by_modality["CT"]
    assert ct.sorted_by == "position" and len(ct.instances) == 3
    assert len({i.position for i in ct.instances}) == 3
    assert ct.instances[0].pixel_spacing == pytest.approx((380 / 256, 380 / 256))
    loader = ImageLoader()
    for se in catalog.series():
        for ref in se.frames:
            shown = render(loader.image(ref))
            assert shown.dtype == np.uint8 and shown.min() < 30 and shown.max() > 200
            assert shown.std() > 20


def test_dicom_round_trip_keeps_values(written: dict[str, list[Path]]) -> None:
    loader = ImageLoader()
    for path, case in ((written["abdomen"][0], abdomen_case(5)), (written["chest"][0], None)):
        catalog = scan([path])
        image = loader.image(catalog.series()[0].frames[0])
        if case is not None:  # CT: stored + intercept gives the Hounsfield units back
            assert np.array_equal(modality_values(image).astype(np.int16), case.image)
        else:
            assert np.array_equal(image.pixels, chest_case(2).image)
    ds = pydicom.dcmread(written["abdomen"][1])
    assert ds.RescaleIntercept == -1024 and ds.PixelRepresentation == 0 and ds.BitsStored == 12
    assert ds.FrameOfReferenceUID == pydicom.dcmread(written["abdomen"][0]).FrameOfReferenceUID


def test_writing_is_reproducible(tmp_path: Path) -> None:
    a = write_dicom(abdomen_case(1), tmp_path / "a.dcm")
    b = write_dicom(abdomen_case(1), tmp_path / "b.dcm")
    assert a.read_bytes() == b.read_bytes()


def test_write_dicom_refuses_what_it_cannot_write(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="JPEG or PNG"):
        write_dicom(fundus_case(0), tmp_path / "f.dcm")
    with pytest.raises(ValueError, match="written as CR"):
        write_dicom(chest_case(0), tmp_path / "c.dcm", modality="CT")


def test_png_writers(tmp_path: Path) -> None:
    raw = cv2.imread(str(write_png(chest_case(1), tmp_path / "raw.png", raw=True)), -1)
    assert raw.dtype == np.uint16 and np.array_equal(raw, chest_case(1).image)
    shown = cv2.imread(str(write_png(abdomen_case(1), tmp_path / "ct.png")), -1)
    assert shown.dtype == np.uint8 and shown.ndim == 2 and shown.std() > 20
    rgb = cv2.imread(str(write_png(fundus_case(1), tmp_path / "f.png")))[..., ::-1]
    assert np.array_equal(rgb, fundus_case(1).image)


def test_ct_slices_take_a_dicom_seg(written: dict[str, list[Path]], tmp_path: Path) -> None:
    """The CT headers carry what a DICOM SEG needs (highdicom builds one, dciodvfy passes it)."""
    hd = pytest.importorskip("highdicom")
    from pydicom.sr.codedict import codes

    sources = [pydicom.dcmread(p) for p in written["abdomen"]]
    masks = np.stack([abdomen_case(s).mask for s in (5, 6, 7)])
    segments = [
        hd.seg.SegmentDescription(
            segment_number=value,
            segment_label=ABDOMEN_CLASSES[value],
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type="MANUAL",
        )
        for value in (1, 2, 3)
    ]
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=masks,
        segmentation_type="BINARY",
        segment_descriptions=segments,
        series_instance_uid=hd.UID(),
        series_number=99,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="test",
        manufacturer_model_name="test",
        software_versions="0",
        device_serial_number="0",
    )
    seg.save_as(tmp_path / "seg.dcm")
    _dciodvfy(tmp_path / "seg.dcm")
