"""Write phantom cases as the files clinicians get: DICOM for chest and abdomen, JPEG or PNG
for fundus photographs.

- Chest: CR Image Storage, MONOCHROME2, 12 bits stored in 16, Imager Pixel Spacing, Patient
  Orientation L\\F (a PA view) and a VOI window in the header.
- Abdomen: CT Image Storage, unsigned 12-bit stored values with Rescale Intercept -1024 (the
  classic scanner layout), a soft-tissue window, Image Plane module (position, orientation,
  pixel spacing, slice thickness) and a Frame of Reference, so slices sort into a volume and
  a DICOM SEG can reference them.
- Fundus: not DICOM. Fundus cameras hand clinicians JPEG files (an Ophthalmic Photography
  DICOM would need acquisition and ophthalmic modules we would have to invent, and a Secondary
  Capture would misstate what the image is), and medviewer imports JPEG and PNG directly.
  `write_jpeg` writes what a camera exports; `write_png` keeps the pixels exact.

The UIDs default to values derived from the arguments, so writing the same case twice gives
the same file. Every file passes dciodvfy (dicom3tools) and imports with medviewer's scan.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import medviewer
from medviewer.atomic import atomic_write, atomic_write_bytes
from medviewer.demo.phantoms import Case

CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
DICOM_MODALITY = {"chest": "CR", "abdomen": "CT"}

# Header windows: chest from the darkest lung to bone; abdomen the soft-tissue window.
CHEST_WINDOW = (2250.0, 3500.0, "PHANTOM CHEST")
ABDOMEN_WINDOWS = ((40.0, 400.0, "ABDOMEN"), (400.0, 1800.0, "BONE"))
CT_INTERCEPT = -1024
STUDY_DATE = "20250101"


def derived_uid(*parts: object) -> str:
    """A UID that is the same for the same parts (pydicom hashes them under its root)."""
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def write_dicom(
    case: Case,
    path: Path | str,
    patient_id: str = "PHANTOM",
    study_uid: str | None = None,
    series_uid: str | None = None,
    instance_number: int = 1,
    modality: str | None = None,
    *,
    patient_name: str | None = None,
    series_number: int = 1,
    series_description: str | None = None,
    slice_position: float | None = None,
    frame_of_reference_uid: str | None = None,
    study_date: str = STUDY_DATE,
) -> Path:
    """Write a chest case as CR or an abdomen case as CT; returns the path.

    `modality` must match the task when given ("CR" for chest, "CT" for abdomen). For CT,
    `slice_position` is the z of the slice in mm (default: slices 5 mm apart by instance
    number, going towards the feet); slices of one series share the study's frame of reference.
    """
    expected = DICOM_MODALITY.get(case.task)
    if expected is None:
        raise ValueError(
            f"{case.task} phantoms are written as JPEG or PNG (write_jpeg / write_png), "
            "as fundus cameras deliver them"
        )
    if modality is not None and modality.upper() != expected:
        raise ValueError(f"a {case.task} phantom is written as {expected}, not {modality}")
    path = Path(path)
    study_uid = study_uid or derived_uid("study", patient_id)
    series_uid = series_uid or derived_uid("series", study_uid, case.task)
    sop_uid = derived_uid("instance", series_uid, instance_number, case.task, case.seed)
    sop_class = CR_IMAGE_STORAGE if expected == "CR" else CT_IMAGE_STORAGE

    ds = base_dataset(
        path,
        sop_class,
        sop_uid,
        patient_id=patient_id,
        patient_name=patient_name or f"Phantom^{case.task.capitalize()}",
        study_uid=study_uid,
        study_date=study_date,
        study_description="Phantom " + ("chest radiograph" if expected == "CR" else "abdomen CT"),
        modality=expected,
        series_uid=series_uid,
        series_number=series_number,
        series_description=series_description
        or ("PA chest (phantom)" if expected == "CR" else "Abdomen with contrast (phantom)"),
        manufacturer="medviewer phantom generator",
        instance_number=instance_number,
        comments=f"Generated phantom: task {case.task}, seed {case.seed}",
    )
    if expected == "CR":
        _chest(ds, case)
    else:
        _abdomen(ds, case, study_uid, instance_number, slice_position, frame_of_reference_uid)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: pydicom.dcmwrite(tmp, ds, enforce_file_format=True))
    return path


def base_dataset(
    path: Path,
    sop_class: str,
    sop_uid: str,
    *,
    patient_id: str,
    patient_name: str,
    study_uid: str,
    study_date: str,
    study_description: str,
    modality: str,
    series_uid: str,
    series_number: int,
    series_description: str,
    manufacturer: str,
    instance_number: int,
    comments: str,
) -> FileDataset:
    """File meta, patient, study, series and equipment of a demo image (type 2 attributes
    present even when empty); the caller adds the modality's image attributes."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationVersionName = f"MEDVIEWER_{medviewer.__version__}"[:16]
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = study_date
    ds.StudyTime = "120000"
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.StudyDescription = study_description
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = series_description
    ds.Manufacturer = manufacturer
    ds.InstanceNumber = instance_number
    ds.ContentDate = study_date
    ds.ContentTime = "120000"
    ds.BurnedInAnnotation = "NO"
    ds.ImageComments = comments
    return ds


def _ds(value: float) -> str:
    """A decimal string value (at most 16 characters) without float noise."""
    return f"{value:.10g}"


def _pixels(ds: Dataset, stored: np.ndarray, bits_stored: int) -> None:
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(stored, dtype="<u2").tobytes()


def _windows(ds: Dataset, windows: tuple[tuple[float, float, str], ...]) -> None:
    ds.WindowCenter = [c for c, _, _ in windows] if len(windows) > 1 else windows[0][0]
    ds.WindowWidth = [w for _, w, _ in windows] if len(windows) > 1 else windows[0][1]
    names = [n for _, _, n in windows]
    ds.WindowCenterWidthExplanation = names if len(names) > 1 else names[0]


def _chest(ds: Dataset, case: Case) -> None:
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.PatientOrientation = ["L", "F"]  # rows run to the patient's left, columns to the feet
    ds.ImageType = ["DERIVED", "PRIMARY"]
    if case.pixel_spacing:
        ds.ImagerPixelSpacing = [_ds(v) for v in case.pixel_spacing]
    ds.KVP = "120"
    _windows(ds, (CHEST_WINDOW,))
    _pixels(ds, np.clip(case.image, 0, 4095).astype(np.uint16), 12)


def _abdomen(
    ds: Dataset,
    case: Case,
    study_uid: str,
    instance_number: int,
    slice_position: float | None,
    frame_of_reference_uid: str | None,
) -> None:
    rows, cols = case.image.shape
    dy, dx = case.pixel_spacing or (1.0, 1.0)
    thickness = float(case.meta.get("slice_thickness", 5.0))
    z = -thickness * (instance_number - 1) if slice_position is None else slice_position
    z = float(z) + 0.0  # no "-0" in the header
    ds.PatientPosition = "HFS"
    ds.BodyPartExamined = "ABDOMEN"
    ds.FrameOfReferenceUID = frame_of_reference_uid or derived_uid("frame", study_uid)
    ds.PositionReferenceIndicator = ""
    ds.ImageType = ["DERIVED", "PRIMARY", "AXIAL"]
    ds.AcquisitionNumber = 1
    ds.KVP = "120"
    # Head first supine, axial: columns run to the patient's left, rows to the back; the
    # isocentre in the middle of the image.
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [_ds(-dx * (cols - 1) / 2), _ds(-dy * (rows - 1) / 2), _ds(z)]
    ds.PixelSpacing = [_ds(dy), _ds(dx)]
    ds.SliceThickness = _ds(thickness)
    ds.SliceLocation = _ds(z)
    ds.RescaleIntercept = CT_INTERCEPT
    ds.RescaleSlope = 1
    _windows(ds, ABDOMEN_WINDOWS)
    stored = np.clip(case.image.astype(np.int32) - CT_INTERCEPT, 0, 4095)
    _pixels(ds, stored.astype(np.uint16), 12)


def display_image(case: Case) -> np.ndarray:
    """The case as 8-bit grey or RGB, through medviewer's display pipeline with the window its
    DICOM header carries (colour images as they are)."""
    from medviewer.imaging.display import DisplayInfo, Image, Window, render

    if case.image.ndim == 3:
        return render(Image(case.image, DisplayInfo(photometric="RGB")))
    if case.task == "chest":
        c, w, name = CHEST_WINDOW
        return render(Image(case.image, DisplayInfo(windows=(Window(c, w, name),))))
    if case.task == "abdomen":
        windows = tuple(Window(c, w, name) for c, w, name in ABDOMEN_WINDOWS)
        return render(Image(case.image, DisplayInfo(windows=windows)))
    return render(Image(case.image))


def write_png(case: Case, path: Path | str, *, raw: bool = False) -> Path:
    """The case as PNG: as displayed (8-bit, header window) by default; `raw` keeps the stored
    values instead (16-bit grey for chest, HU + 1024 for abdomen; RGB as it is)."""
    path = Path(path)
    if raw and case.image.ndim == 2:
        offset = -CT_INTERCEPT if case.task == "abdomen" else 0
        pixels = np.clip(case.image.astype(np.int32) + offset, 0, 65535).astype(np.uint16)
    else:
        pixels = display_image(case)
    return _imwrite(path, pixels, ".png", [cv2.IMWRITE_PNG_COMPRESSION, 3])


def write_jpeg(case: Case, path: Path | str, quality: int = 92) -> Path:
    """The case as a JPEG, as a fundus camera exports it (8-bit; greyscale cases as displayed)."""
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    return _imwrite(Path(path), display_image(case), ".jpg", params)


def _imwrite(path: Path, pixels: np.ndarray, ext: str, params: list[int]) -> Path:
    if pixels.ndim == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(ext, pixels, params)
    if not ok:
        raise OSError(f"could not encode {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data.tobytes())
    return path
