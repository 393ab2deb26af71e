"""Real DICOM files that installable packages ship, used by the demo and the tests."""

from __future__ import annotations

from pathlib import Path

from pydicom.data import get_testdata_file

# pydicom's own test files (always installed); pydicom-data's larger real images (demo extra).
PYDICOM_FILES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_jp2klossless.dcm",
    "rtdose.dcm",
    "examples_ybr_color.dcm",
    "examples_palette.dcm",
    "SC_rgb.dcm",
]
# Real images a demo model proposes on too (their task), unreviewed: the AI, trained on
# phantoms, meets a real chest radiograph.
REAL_TASKS = {"RG1_UNCI.dcm": "chest"}
PYDICOM_DATA_FILES = [
    "RG1_UNCI.dcm",  # chest radiograph, MONOCHROME1
    "RG1_J2KR.dcm",  # the same, JPEG 2000 lossless
    "693_UNCI.dcm",  # CT 512x512
    "MR2_UNCI.dcm",  # MR 1024x1024
    "emri_small.dcm",  # enhanced MR, 10 frames
]


def sample_files() -> tuple[list[Path], list[str]]:
    """Paths of the sample files found, and the names that are not installed."""
    found, missing = [], []
    for name in PYDICOM_FILES + PYDICOM_DATA_FILES:
        try:
            path = get_testdata_file(name, download=False)
        except Exception:  # noqa: BLE001 - a missing optional file is only a note
            path = None
        if path:
            found.append(Path(path))
        else:
            missing.append(name)
    # The DICOMDIR set: three patients' CR, CT and MR series.
    dicomdir = get_testdata_file("DICOMDIR", download=False)
    if dicomdir:
        found.append(Path(dicomdir))
    return found, missing


def real_tasks(found: list[Path]) -> dict[Path, str]:
    """The found sample files that belong to a demo task (REAL_TASKS), with their task."""
    return {p: REAL_TASKS[p.name] for p in found if p.name in REAL_TASKS}
