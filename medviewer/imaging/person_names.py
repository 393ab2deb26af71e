"""How a patient is named on screen: DICOM person names read as people write them, and a
name for a patient the file leaves unnamed (anonymised or test data), so no row is blank."""

from __future__ import annotations

from pathlib import PurePath


def readable(person_name: str) -> str:
    """A DICOM PN ('Family^Given^Middle^Prefix^Suffix') as 'Family, Given Middle'; other
    text as it is. Empty components (trailing ^) are dropped."""
    if "^" not in person_name:
        return person_name.strip()
    parts = [p.strip() for p in person_name.split("=")[0].split("^")]
    family, given = parts[0], " ".join(p for p in parts[1:3] if p)
    if family and given:
        return f"{family}, {given}"
    return family or given


def display_name(person_name: str, patient_id: str, source: str | PurePath) -> str:
    """The name a worklist or corner shows: the readable name, else the patient ID, else
    'Unnamed (<file>)' from the image's file, which tells such patients apart."""
    name = readable(person_name)
    if name:
        return name
    if patient_id.strip():
        return f"ID {patient_id.strip()}"
    stem = PurePath(str(source)).name if str(source) else ""
    return f"Unnamed ({stem})" if stem else "Unnamed"
