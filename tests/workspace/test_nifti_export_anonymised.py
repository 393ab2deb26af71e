"""NIfTI volumes in and out (issue 13, items 6 and 8): a mask made on an imported NIfTI volume
exports as a label volume of the source's shape and affine and comes back onto it through
import-masks; `export --format nifti --anonymise` names files by pseudonym and writes no
identifying text (a PHI scan over every written file, decompressed)."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medviewer.cli import main
from medviewer.deid.mapping import Mapping
from medviewer.deid.profile import Anonymiser
from medviewer.workspace import Workspace
from medviewer.workspace.export import export_workspace
from medviewer.workspace.mask_import import import_masks
from tests.workspace.test_export_anonymised import PATIENT, _write_series

SHAPE = (7, 6, 5)


def rotation(degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])


SOURCES = {
    "ras": np.array([[1.5, 0, 0, -20], [0, 2.0, 0, 10], [0, 0, 3.0, -5], [0, 0, 0, 1]]),
    # Radiological storage (x flipped, det < 0), slices descending, tilted 15 degrees.
    "oblique": np.vstack(
        [np.hstack([rotation(15) @ np.diag([-0.8, 1.1, -2.5]), [[30], [-40], [60]]]), [0, 0, 0, 1]]
    ),
}


def write_volume(path: Path, affine: np.ndarray, descrip: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.arange(np.prod(SHAPE), dtype=np.int16).reshape(SHAPE)
    image = nib.Nifti1Image(data, affine)
    image.header["descrip"] = descrip.encode()
    nib.save(image, path)


def masked_workspace(root: Path, source: Path) -> tuple[Workspace, dict[int, np.ndarray]]:
    """The source imported, an asymmetric mask on its third slice."""
    ws = Workspace.open(root)
    ws.import_paths([source])
    rows = ws.images()
    mask = np.zeros((rows[0].rows, rows[0].columns), np.uint8)
    mask[0, :3] = 1
    mask[-2:, -1] = 2
    ws.revisions.save_mask(rows[2].id, mask, source="human", author="alice")
    return ws, {rows[2].id: mask}


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_label_volume_lies_on_its_source_and_comes_back(tmp_path: Path, name: str) -> None:
    source = tmp_path / "data" / f"{name}.nii.gz"
    write_volume(source, SOURCES[name])
    ws, masks = masked_workspace(tmp_path / "ws", source)
    with ws:
        report = export_workspace(ws, tmp_path / "out", "nifti")
        (path,) = report.files
        assert path.name == f"{name}_labels.nii.gz"
        label, original = nib.load(path), nib.load(source)
        assert label.shape == original.shape
        assert np.abs(label.affine - original.affine).max() < 1e-3
        assert np.count_nonzero(np.asanyarray(label.dataobj)) == 5  # 3 + 2 labelled pixels
        results = import_masks(ws, tmp_path / "out", author="bob")
        assert [r.error for r in results] == [None] * SHAPE[2]
        for r in results:
            back = ws.revisions.read_mask(ws.revisions.get(r.revision_id))
            expected = masks.get(r.image_id, np.zeros_like(back))
            assert np.array_equal(back, expected), r.image_id


def test_anonymised_nifti_export_carries_no_phi(tmp_path: Path) -> None:
    """A DICOM series of a named patient and a NIfTI volume in a folder named after them,
    its header describing them: names from the pseudonym, no text in the headers."""
    data = tmp_path / "data"
    uids = _write_series(data / "Smithers_Waylon")
    write_volume(data / "Smithers_Waylon_nifti" / "Smithers_T1.nii.gz", SOURCES["ras"],
                 descrip=f"{PATIENT['PatientName']} {PATIENT['PatientBirthDate']}")  # fmt: skip
    with Workspace.open(tmp_path / "ws") as ws:
        ws.import_paths([data])
        for row in ws.images():
            mask = np.zeros((row.rows, row.columns), np.uint8)
            mask[1:4, 2:5] = 1
            ws.revisions.save_mask(row.id, mask, source="human", author="alice")
        mapping = Mapping.open(tmp_path / "site" / "mapping.json")
        report = export_workspace(ws, tmp_path / "out", "nifti", anonymiser=Anonymiser(mapping))
    assert len(report.files) == 2 and report.failed == []
    pseudonyms = {entry.pseudonym for entry in mapping.patients.values()}
    phi = [PATIENT[k] for k in ("PatientName", "PatientID", "PatientBirthDate")]
    phi += ["Smithers", "Waylon", "19610417", "1CT1", *uids]
    found = []
    for path in (tmp_path / "out").rglob("*"):
        assert any(path.name.startswith(p) for p in pseudonyms), path.name
        content = gzip.decompress(path.read_bytes()) + path.name.encode()
        found += [f"{path.name}: {w}" for w in phi if w.encode() in content]
        header = nib.load(path).header
        for field in ("descrip", "aux_file", "intent_name", "db_name"):
            assert header[field].item() == b"", (path.name, field)
        assert len(header.extensions) == 0
    assert found == []


def test_cli_export_nifti_anonymise(tmp_path: Path, capsys) -> None:
    source = tmp_path / "data" / "Smithers_T1.nii.gz"
    write_volume(source, SOURCES["ras"])
    ws, _ = masked_workspace(tmp_path / "ws", source)
    ws.close()
    out = tmp_path / "out"
    args = ["export", "--workspace", str(tmp_path / "ws"), "--format", "nifti", "--out", str(out)]
    assert main([*args, "--anonymise"]) == 0
    (path,) = out.iterdir()
    assert path.name.startswith("ANON-") and "Smithers" not in path.name
    assert "mapping" in capsys.readouterr().out
