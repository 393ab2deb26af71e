"""The demo's generated studies, the real brain MRI slices and its four model specs.

Chest radiographs (CR, a few images per patient), abdominal CT series (one per patient) and
fundus photographs (JPEG, one folder per patient), written with medviewer.demo.writers from
the phantoms, each with the ground truth it was drawn from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medviewer.demo.brain import BRAIN_CLASSES, brain_cases, write_mr
from medviewer.demo.phantoms import (
    ABDOMEN_CLASSES,
    CHEST_CLASSES,
    FUNDUS_LABELS,
    Case,
    make_case,
)
from medviewer.demo.writers import write_dicom, write_jpeg
from medviewer.models.spec import ModelSpec

TASKS = ("chest", "abdomen", "fundus")  # generated phantoms
ALL_TASKS = (*TASKS, "brain")  # and the real brain MRI (nilearn's MNI152 slices, optional)


@dataclass(frozen=True)
class DemoSize:
    """How much the demo generates and trains; `labelled` patients of each task (abdomen:
    slices of each patient) get confirmed ground truth, the rest is left for the clinician."""

    patients: dict[str, int]
    per_patient: dict[str, int]
    labelled: dict[str, int]
    image_size: int
    input_size: int
    epochs: dict[str, int]
    batch_size: int = 4

    def key(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


FULL = DemoSize(
    patients={"chest": 6, "abdomen": 2, "fundus": 6, "brain": 1},
    per_patient={"chest": 4, "abdomen": 16, "fundus": 4, "brain": 16},
    labelled={"chest": 4, "abdomen": 8, "fundus": 4, "brain": 8},
    image_size=256,
    input_size=96,
    epochs={"chest": 8, "abdomen": 8, "fundus": 8, "brain": 8},
)
SMALL = DemoSize(
    patients={"chest": 3, "abdomen": 2, "fundus": 3, "brain": 1},
    per_patient={"chest": 2, "abdomen": 3, "fundus": 2, "brain": 4},
    labelled={"chest": 2, "abdomen": 2, "fundus": 2, "brain": 2},
    image_size=128,
    input_size=64,
    epochs={"chest": 1, "abdomen": 1, "fundus": 1, "brain": 1},
)


@dataclass(frozen=True)
class Written:
    task: str
    path: Path
    case: Case
    labelled: bool  # its ground truth becomes confirmed training data


def write_studies(root: Path, seed: int, size: DemoSize) -> list[Written]:
    """Generate and write every task's studies under `root` (deterministic from `seed`)."""
    out: list[Written] = []
    for t, task in enumerate(TASKS):
        for p in range(size.patients[task]):
            for k in range(size.per_patient[task]):
                case_seed = seed * 100_000 + t * 10_000 + p * 100 + k
                case = make_case(task, case_seed, size.image_size)
                if task == "abdomen":
                    labelled = k < size.labelled[task]
                else:
                    labelled = p < size.labelled[task]
                path = _write(root, task, p, k, case)
                out.append(Written(task, path, case, labelled))
    return out


def write_brain(root: Path, size: DemoSize) -> tuple[list[Written], str | None]:
    """The real brain MRI slices as one MR series (the first `labelled` confirmed), or none and
    a note when nilearn is not installed."""
    cases, note = brain_cases(size.per_patient["brain"])
    folder = root / "brain" / "DEMO-BRAIN-01"
    labelled = size.labelled["brain"]
    written = [
        Written("brain", write_mr(c, folder / f"{k + 1:03d}.dcm", k + 1), c, k < labelled)
        for k, c in enumerate(cases)
    ]
    return written, note


def _write(root: Path, task: str, p: int, k: int, case: Case) -> Path:
    if task == "fundus":  # one folder per patient: raster files group into a study by folder
        eye = "OD" if k % 2 == 0 else "OS"
        return write_jpeg(case, root / task / f"patient-{p + 1:02d}" / f"{eye}-{k // 2 + 1}.jpg")
    pid = f"DEMO-{task.upper()}-{p + 1:02d}"
    name = f"Demo^{task.capitalize()}{p + 1:02d}"
    path = root / task / pid / f"{k + 1:03d}.dcm"
    return write_dicom(case, path, patient_id=pid, instance_number=k + 1, patient_name=name)


def model_specs(size: DemoSize) -> dict[str, ModelSpec]:
    """One small CPU model per task."""
    inp = [size.input_size, size.input_size]
    return {
        "chest": ModelSpec.from_dict(
            {
                "name": "chest-pneumothorax",
                "task": "segmentation+classification",
                "architecture": "Unet",
                "encoder": "mobilenet_v2",
                "classes": list(CHEST_CLASSES),
                "labels": ["pneumothorax"],
                "input_size": inp,
                "min_component_pixels": 20,
                "gate": {"type": "classifier", "label": "pneumothorax", "threshold": 0.5},
            },
            "demo chest spec",
        ),
        "abdomen": ModelSpec.from_dict(
            {
                "name": "abdomen-kidneys",
                "task": "segmentation",
                "architecture": "Unet",
                "encoder": "mobilenet_v2",
                "classes": list(ABDOMEN_CLASSES),
                "input_size": inp,
                "min_component_pixels": 10,
            },
            "demo abdomen spec",
        ),
        "fundus": ModelSpec.from_dict(
            {
                "name": "fundus-findings",
                "task": "classification",
                "encoder": "mobilenet_v2",
                "in_channels": 3,
                "labels": list(FUNDUS_LABELS),
                "label_mode": "multilabel",
                "input_size": inp,
                "mean": [0.5, 0.5, 0.5],
                "std": [0.25, 0.25, 0.25],
            },
            "demo fundus spec",
        ),
        "brain": ModelSpec.from_dict(
            {
                "name": "brain-tissue",
                "task": "segmentation",
                "architecture": "Unet",
                "encoder": "mobilenet_v2",
                "classes": list(BRAIN_CLASSES),
                "input_size": inp,
                "min_component_pixels": 10,
            },
            "demo brain spec",
        ),
    }
