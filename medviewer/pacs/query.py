"""What a PACS search asks for and what it finds: the same records over DICOMweb and DIMSE."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from medviewer.pacs.errors import PacsError

_DATE = re.compile(r"\d{8}")


@dataclass(frozen=True)
class StudyQuery:
    """Study filters (QIDO-RS or C-FIND); None matches anything. `dates` is a DICOM range."""

    patient_id: str | None = None  # * and ? are wildcards, as in DICOM matching
    patient_name: str | None = None  # Family^Given, or with wildcards: Family*
    dates: str | None = None
    modality: str | None = None
    accession: str | None = None
    study_uid: str | None = None

    def filters(self) -> dict[str, str]:
        pairs = {
            "PatientID": self.patient_id,
            "PatientName": self.patient_name,
            "StudyDate": self.dates,
            "ModalitiesInStudy": self.modality,
            "AccessionNumber": self.accession,
            "StudyInstanceUID": self.study_uid,
        }
        return {k: v for k, v in pairs.items() if v}


def date_range(text: str) -> str:
    """`YYYYMMDD-YYYYMMDD`, open at either end (`YYYYMMDD-`, `-YYYYMMDD`), or one day."""
    start, sep, end = text.strip().partition("-")
    if not all(_DATE.fullmatch(d) for d in (start, end) if d) or not (start or end):
        raise PacsError(
            f"study date range {text!r}: expected YYYYMMDD, YYYYMMDD-YYYYMMDD, "
            "YYYYMMDD- or -YYYYMMDD"
        )
    if start and end and start > end:
        raise PacsError(f"study date range {text!r}: {start} is after {end}")
    return f"{start}{sep}{end}"


@dataclass(frozen=True)
class StudyRecord:
    study_uid: str
    patient_id: str
    patient_name: str
    study_date: str
    accession: str
    description: str
    modalities: tuple[str, ...]
    series: int | None
    instances: int | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SeriesRecord:
    study_uid: str
    series_uid: str
    modality: str
    number: str
    description: str
    instances: int | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
