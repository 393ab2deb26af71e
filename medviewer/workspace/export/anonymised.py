"""What `export --anonymise` adds to each format: the mapping checked and saved before any
output exists, names that carry no original UID or description, and de-identified copies of
the DICOM sources a SEG references (`sources/<series>/<instance>.dcm`, beside the SEG).
The de-identification itself is `medviewer.deid`'s."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import pydicom

from medviewer.atomic import atomic_write
from medviewer.deid.errors import DeidentificationError
from medviewer.workspace.export import ExportError, safe_name

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from medviewer.deid.profile import Anonymiser
    from medviewer.imaging import Instance
    from medviewer.workspace.store import ImageRow, Workspace

SOURCES = "sources"
BURNED_IN = (
    "their source images say they carry burned-in annotation (Burned In Annotation YES), "
    "which de-identification of the header does not remove; check the pixels before sharing"
)


# Formats whose output names and headers are de-identified here.
FORMATS = ("dicom-seg", "png", "nifti", "csv")
# Where a workspace keeps its re-identification mapping unless told otherwise.
MAPPING = Path("deidentification") / "mapping.json"


def anonymiser_for(root: Path, mapping: Path | None = None) -> Anonymiser:
    """The anonymiser over `mapping`, by default the workspace's own (root / MAPPING), so an
    export and a PACS send give a patient the same pseudonym, date shift and UIDs."""
    from medviewer.deid.mapping import Mapping
    from medviewer.deid.profile import Anonymiser  # dicognito only when anonymising

    return Anonymiser(Mapping.open(mapping or root / MAPPING))


def prepare(ws: Workspace, out: Path, fmt: str, anonymiser: Anonymiser) -> None:
    """Refuse a mapping inside the export folder, give every patient an entry, and save it,
    all before the export writes anything: no output ever exists without its mapping."""
    if fmt not in FORMATS:
        raise DeidentificationError(
            f"--anonymise is not available for {fmt} yet; it is for {', '.join(FORMATS)}"
        )
    mapping = anonymiser.mapping.path
    if mapping.is_relative_to(out.expanduser().absolute()):
        raise DeidentificationError(
            f"{mapping}: the mapping would be inside the export folder {out}; it re-identifies "
            "the patients, so keep it elsewhere (--mapping)"
        )
    for row in ws.images():
        anonymiser.mapping.patient(row.patient_id or "")
    anonymiser.mapping.save()


def stem(row: ImageRow, inst: Instance, anonymiser: Anonymiser) -> str:
    """A file name stem from the replacement SOP Instance UID (raster files: the image id, as
    their path may name the patient) and frame; no description, which may identify."""
    if inst.kind == "raster":
        name = f"image_{row.id}"
    else:
        name = anonymiser.mapping.uid(inst.sop_instance_uid)
    if inst.frames > 1:
        name += f"_f{row.frame + 1:04d}"
    return safe_name(name)


def volume_stem(row: ImageRow, anonymiser: Anonymiser) -> str:
    """A volume's file name stem (NIfTI): the patient's pseudonym and the replacement of its
    series UID, which for a raster or NIfTI file would name its path."""
    pseudonym = anonymiser.mapping.patient(row.patient_id or "").pseudonym
    return safe_name(f"{pseudonym}_{anonymiser.mapping.uid(row.series_uid)}")


def write_source(anonymiser: Anonymiser, source: Path, out_dir: Path) -> tuple[Path, bool]:
    """A de-identified copy of `source` under out_dir/sources; returns its path and whether
    the source declares burned-in annotation."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # odd values are the source's, not ours
            ds = pydicom.dcmread(source)
    except Exception as e:  # moved, deleted or corrupt since the SEG was built
        reason = (e.strerror if isinstance(e, OSError) else None) or str(e)
        raise ExportError(f"{source}: cannot read the source to copy it: {reason}") from e
    burned_in = str(ds.get("BurnedInAnnotation", "")).upper() == "YES"
    anonymiser.dataset(ds)
    folder = out_dir / SOURCES / safe_name(str(ds.SeriesInstanceUID))
    path = folder / f"{safe_name(str(ds.SOPInstanceUID))}.dcm"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: _save(ds, tmp))
    except OSError as e:
        raise ExportError(f"{path}: cannot write: {e.strerror}") from e
    return path, burned_in


def _save(ds: Dataset, tmp: Path) -> None:
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(tmp, enforce_file_format=True)
