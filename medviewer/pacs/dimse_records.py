"""C-FIND identifiers, and the records (the same as DICOMweb's) made of their answers."""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from medviewer.pacs.query import SeriesRecord, StudyRecord

STUDY_KEYS = (
    "StudyInstanceUID",
    "PatientID",
    "PatientName",
    "StudyDate",
    "AccessionNumber",
    "ModalitiesInStudy",
    "StudyDescription",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)
SERIES_KEYS = (
    "SeriesInstanceUID",
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "NumberOfSeriesRelatedInstances",
)


def query_identifier(level: str, keys: dict[str, str]) -> Dataset:
    ds = Dataset()
    if any(not v.isascii() for v in keys.values()):
        ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8, for a name with accents
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def multi_values(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple, MultiValue)):
        return [str(v) for v in value]
    return [str(value)]  # one value: text, a number, a PersonName


def _text(ds: Dataset, keyword: str) -> str:
    values = multi_values(ds.get(keyword))
    return values[0] if values else ""


def _count(ds: Dataset, keyword: str) -> int | None:
    try:
        return int(_text(ds, keyword))
    except ValueError:
        return None


def study_record(ds: Dataset) -> StudyRecord:
    return StudyRecord(
        study_uid=_text(ds, "StudyInstanceUID"),
        patient_id=_text(ds, "PatientID"),
        patient_name=_text(ds, "PatientName"),
        study_date=_text(ds, "StudyDate"),
        accession=_text(ds, "AccessionNumber"),
        description=_text(ds, "StudyDescription"),
        modalities=tuple(multi_values(ds.get("ModalitiesInStudy"))),
        series=_count(ds, "NumberOfStudyRelatedSeries"),
        instances=_count(ds, "NumberOfStudyRelatedInstances"),
    )


def series_record(ds: Dataset, study_uid: str) -> SeriesRecord:
    return SeriesRecord(
        study_uid=_text(ds, "StudyInstanceUID") or study_uid,
        series_uid=_text(ds, "SeriesInstanceUID"),
        modality=_text(ds, "Modality"),
        number=_text(ds, "SeriesNumber"),
        description=_text(ds, "SeriesDescription"),
        instances=_count(ds, "NumberOfSeriesRelatedInstances"),
    )
