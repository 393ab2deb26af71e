"""The de-identification applied to each DICOM object: PS3.15's Basic Application Level
Confidentiality Profile with the Retain Longitudinal Temporal Information with Modified Dates
option.

dicognito does the breadth (every person name, the ID attributes, addresses, institution and
equipment) with stand-in values seeded per patient. What must be consistent across objects and
exports, and recorded for re-identification, is ours and runs before dicognito sees the element:
Patient's Name and ID become the pseudonym, instance UIDs come from the mapping, and dates move
by the patient's offset in whole days (times are kept). Private attributes, overlays and the
profile's free-text and patient-characteristic attributes are removed.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta

import dicognito
from dicognito.anonymizer import Anonymizer
from dicognito.element_anonymizer import ElementAnonymizer
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from medviewer.deid.mapping import Mapping, PatientEntry

# Profile attributes (action X, or Z where an empty value says nothing) that dicognito leaves.
REMOVE = (
    "AcquisitionComments",
    "AdditionalPatientHistory",
    "AdmittingDiagnosesDescription",
    "Allergies",
    "ContributionDescription",
    "DerivationDescription",
    "EthnicGroup",
    "ImageComments",
    "IssuerOfPatientID",
    "MedicalAlerts",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "PatientAge",
    "PatientBirthName",
    "PatientBirthTime",
    "PatientComments",
    "PatientMotherBirthName",
    "PatientSize",
    "PatientState",
    "PatientWeight",
    "PerformedProcedureStepDescription",
    "PregnancyStatus",
    "ProtocolName",
    "ReasonForStudy",
    "ReferencedPatientSequence",
    "ReferencedStudySequence",
    "RequestAttributesSequence",
    "RequestedProcedureDescription",
    "ScheduledProcedureStepDescription",
    "SeriesDescription",
    "SmokingStatus",
    "SpecialNeeds",
    "StudyComments",
    "StudyDescription",
    "TextComments",
    "TextString",
)
EMPTY = ("PatientBirthDate", "PatientSex")  # type 2 in the Patient module: kept, empty
# UIDs that name a standard thing (a class, a syntax, a coding scheme), not an instance.
KEPT_UID_SUFFIXES = ("ClassUID", "TransferSyntaxUID", "SchemeUID", "ContextUID", "ResourceUID")
STANDARD_ROOT = "1.2.840.10008."
METHOD = "PS3.15 Basic Profile, dates shifted; medviewer + dicognito"[:64]
# CID 7050: the profile and the option applied.
METHOD_CODES = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
)


class Anonymiser:
    """De-identifies datasets in place, keeping what it invents in `mapping`."""

    def __init__(self, mapping: Mapping) -> None:
        self.mapping = mapping
        self._engines: dict[str, Anonymizer] = {}
        self._once = _Once()

    def dataset(self, ds: Dataset) -> None:
        patient_id = str(ds.get("PatientID", "") or "")
        entry = self.mapping.patient(patient_id)
        ds.remove_private_tags()
        for elem in list(ds):
            if 0x6000 <= elem.tag.group <= 0x60FF:  # overlays may hold burned-in text
                del ds[elem.tag]
        for keyword in REMOVE:
            if keyword in ds:
                delattr(ds, keyword)
        self._once.seen.clear()
        self._engine(patient_id, entry).anonymize(ds)
        for keyword in EMPTY:
            if keyword in ds:
                setattr(ds, keyword, "")
        if ds.get("DeviceSerialNumber"):
            ds.DeviceSerialNumber = "0"  # type 1 in some IODs (SEG): a dummy, not removed
        ds.PatientIdentityRemoved = "YES"
        ds.LongitudinalTemporalInformationModified = "MODIFIED"
        ds.DeidentificationMethod = METHOD
        ds.DeidentificationMethodCodeSequence = Sequence(
            [_code(value, meaning) for value, meaning in METHOD_CODES]
        )

    def _engine(self, patient_id: str, entry: PatientEntry) -> Anonymizer:
        engine = self._engines.get(patient_id)
        if engine is None:
            engine = Anonymizer(seed=entry.seed)
            # Added handlers run first (last added, first asked).
            engine.add_element_handler(_Dates(entry.date_offset_days))
            engine.add_element_handler(_Uids(self.mapping))
            engine.add_element_handler(_Patient(entry.pseudonym))
            engine.add_element_handler(self._once)
            self._engines[patient_id] = engine
        return engine


def library_version() -> str:
    return dicognito.__version__


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
    return item


class _Once(ElementAnonymizer):
    """Each element is changed once: highdicom puts one item object in several sequences
    (a SEG's source references), and a second visit would map a UID or shift a date again."""

    def __init__(self) -> None:
        self.seen: set[int] = set()

    def __call__(self, dataset: Dataset, data_element: DataElement) -> bool:
        if id(data_element) in self.seen:
            return True
        self.seen.add(id(data_element))
        return False

    def describe_actions(self) -> Iterator[str]:
        yield "Change each element once, however many sequences hold it"


class _Patient(ElementAnonymizer):
    def __init__(self, pseudonym: str) -> None:
        self.pseudonym = pseudonym

    def __call__(self, dataset: Dataset, data_element: DataElement) -> bool:
        if data_element.tag in (0x00100010, 0x00100020):  # Patient's Name, Patient ID
            data_element.value = self.pseudonym
            return True
        return False

    def describe_actions(self) -> Iterator[str]:
        yield "Replace Patient's Name and Patient ID with the patient's pseudonym"


class _Uids(ElementAnonymizer):
    def __init__(self, mapping: Mapping) -> None:
        self.mapping = mapping

    def __call__(self, dataset: Dataset, data_element: DataElement) -> bool:
        if data_element.VR != "UI":
            return False
        if not data_element.value or keyword_for_tag(data_element.tag).endswith(KEPT_UID_SUFFIXES):
            return True  # kept as it is: dicognito must not replace it either
        if isinstance(data_element.value, MultiValue):
            data_element.value = [self._new(v) for v in data_element.value]
        else:
            data_element.value = self._new(data_element.value)
        return True

    def _new(self, uid: str) -> str:
        return uid if str(uid).startswith(STANDARD_ROOT) else self.mapping.uid(str(uid))

    def describe_actions(self) -> Iterator[str]:
        yield "Replace instance UIDs with the mapping's keyed-hash UIDs"


class _Dates(ElementAnonymizer):
    def __init__(self, offset_days: int) -> None:
        self.offset = timedelta(days=offset_days)

    def __call__(self, dataset: Dataset, data_element: DataElement) -> bool:
        if data_element.VR == "TM":
            return True  # whole-day shifts leave times as they were
        if data_element.VR not in ("DA", "DT"):
            return False
        if isinstance(data_element.value, MultiValue):
            data_element.value = [self._shift(str(v)) for v in data_element.value]
        elif data_element.value:
            data_element.value = self._shift(str(data_element.value))
        return True

    def _shift(self, value: str) -> str:
        """YYYYMMDD, and a DT's date part (its time and zone kept); anything else is emptied,
        since a date that cannot be read cannot be shifted."""
        try:
            day = date(int(value[:4]), int(value[4:6]), int(value[6:8]))
        except ValueError:
            return ""
        return (day + self.offset).strftime("%Y%m%d") + value[8:]

    def describe_actions(self) -> Iterator[str]:
        yield "Shift dates by the patient's offset in whole days; keep times"
