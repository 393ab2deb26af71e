"""The demo's real brain MRI task: axial slices of nilearn's MNI152 2009 T1 template, with a
4-class tissue mask from its grey- and white-matter probability maps.

nilearn ships the three volumes (197x233x189, 1 mm, RAS) in its package data, so nothing is
fetched. nilearn and nibabel are optional (the `demo` extra): without them the task is skipped
with a note. The slices are written as one MR series (MR Image Storage, MONOCHROME2, 12 bits
stored in 16, Image Plane module in the patient's LPS coordinates, a frame of reference and a
header window), one DICOM file per slice; the mask of each slice is
0 background (outside the brain), 1 grey matter, 2 white matter, 3 other brain tissue / CSF:
the most probable of grey, white and neither where the T1 template is above a threshold.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom

from medviewer.atomic import atomic_write
from medviewer.demo.phantoms import Case
from medviewer.demo.writers import (
    STUDY_DATE,
    _ds,
    _pixels,
    _windows,
    base_dataset,
    derived_uid,
)

BRAIN_CLASSES = ("background", "grey matter", "white matter", "other brain")
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
FILES = {k: f"mni_icbm152_{k}_tal_nlin_sym_09a_converted.nii.gz" for k in ("t1", "gm", "wm")}
THRESHOLD = 0.2  # of the T1 maximum: the brain (nilearn's load_mni152_brain_mask default)
SCALE = 16  # uint8 template values -> 12-bit stored values
WINDOW = (2040.0, 4080.0, "T1 BRAIN")
PATIENT_ID = "DEMO-BRAIN-01"


def _data_dir() -> Path | None:
    """nilearn's package data folder, or None when nilearn / nibabel are not installed."""
    try:
        import nibabel  # noqa: F401
        import nilearn
    except ImportError:
        return None
    return Path(nilearn.__file__).parent / "datasets" / "data"


def brain_cases(slices: int) -> tuple[list[Case], str | None]:
    """`slices` axial slices through the cerebrum, evenly spaced, as cases (image: stored
    values, rows towards the back, columns towards the patient's left); or no cases and why."""
    folder = _data_dir()
    if folder is None:
        return [], "nilearn / nibabel are not installed: the brain MRI task is skipped"
    paths = {k: folder / name for k, name in FILES.items()}
    if not all(p.is_file() for p in paths.values()):
        return [], "nilearn has no local MNI152 2009 template: the brain MRI task is skipped"
    import nibabel

    imgs = {k: nibabel.load(p) for k, p in paths.items()}
    t1, gm, wm = (np.asarray(imgs[k].dataobj, dtype=np.float32) for k in ("t1", "gm", "wm"))
    brain = t1 > THRESHOLD * float(t1.max())
    gm, wm = gm / 255.0, wm / 255.0
    # The cerebrum: axial levels where grey and white matter cover at least 40% of the most.
    tissue = ((gm + wm > 0.5) & brain).sum(axis=(0, 1))
    levels = np.flatnonzero(tissue >= 0.4 * tissue.max())
    zs = np.linspace(levels[0], levels[-1], slices).round().astype(int)
    affine = imgs["t1"].affine
    cases = []
    for z in zs:
        # (x right, y anterior) -> rows posterior, columns to the patient's left (LPS, axial).
        def view(a: np.ndarray) -> np.ndarray:
            return np.ascontiguousarray(a[::-1, ::-1, z].T)  # noqa: B023 - used at once

        probs = np.stack([view(gm), view(wm), np.clip(1.0 - view(gm) - view(wm), 0, 1)])
        mask = np.where(view(brain), 1 + probs.argmax(axis=0), 0).astype(np.uint8)
        nx, ny = t1.shape[:2]
        ras = affine @ np.array([nx - 1, ny - 1, z, 1.0])  # the first pixel, top left
        image = (view(t1) * SCALE).astype(np.uint16)
        cases.append(
            Case(
                image=image,
                mask=mask,
                labels={},
                finding=True,
                seed=int(z),
                task="brain",
                classes=BRAIN_CLASSES,
                pixel_spacing=(1.0, 1.0),
                meta={"z": int(z), "position": (-float(ras[0]), -float(ras[1]), float(ras[2]))},
            )
        )
    return cases, None


def write_mr(case: Case, path: Path, instance_number: int, patient_id: str = PATIENT_ID) -> Path:
    """One slice of the brain case as an MR Image Storage file (uids derived from the args)."""
    study_uid = derived_uid("study", patient_id)
    series_uid = derived_uid("series", study_uid, case.task)
    sop_uid = derived_uid("instance", series_uid, instance_number, case.task, case.seed)
    ds = base_dataset(
        path,
        MR_IMAGE_STORAGE,
        sop_uid,
        patient_id=patient_id,
        patient_name="MNI152^Template",
        study_uid=study_uid,
        study_date=STUDY_DATE,
        study_description="Brain MRI (MNI152 2009 template)",
        modality="MR",
        series_uid=series_uid,
        series_number=1,
        series_description="T1 MNI152 2009c sym (nilearn)",
        manufacturer="medviewer demo (MNI152 ICBM 2009c template)",
        instance_number=instance_number,
        comments=f"MNI152 ICBM 2009c nonlinear symmetric T1 template, axial z {case.seed}",
    )
    ds.PatientPosition = "HFS"
    ds.BodyPartExamined = "BRAIN"
    ds.FrameOfReferenceUID = derived_uid("frame", study_uid)
    ds.PositionReferenceIndicator = ""
    ds.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
    ds.ScanningSequence = "RM"  # research mode: an average template, no real acquisition
    ds.SequenceVariant = "NONE"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "3D"
    ds.RepetitionTime = ""
    ds.EchoTime = ""
    ds.EchoTrainLength = ""
    ds.AcquisitionNumber = 1
    x, y, z = (float(v) + 0.0 for v in case.meta["position"])
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [_ds(x), _ds(y), _ds(z)]
    ds.PixelSpacing = [_ds(v) for v in case.pixel_spacing or (1.0, 1.0)]
    ds.SliceThickness = "1"
    ds.SliceLocation = _ds(z)
    _windows(ds, (WINDOW,))
    _pixels(ds, case.image, 12)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: pydicom.dcmwrite(tmp, ds, enforce_file_format=True))
    return path
