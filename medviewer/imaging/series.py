"""Group instances patient -> study -> series by UID, and put slices in anatomical order."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from medviewer.imaging.records import Instance, Patient, Series, Study


def slice_order(instances: list[Instance]) -> tuple[list[Instance], str]:
    """Sort one series' instances; return them and the rule that was used.

    Position projected on the slice normal when every slice has a position and they share one
    orientation (InstanceNumber lies after reformatting); else InstanceNumber; else path.
    """
    orientations = {i.orientation for i in instances}
    if (
        len(instances) > 1
        and all(i.position is not None for i in instances)
        and len(orientations) == 1
        and None not in orientations
    ):
        o = np.array(next(iter(orientations)), dtype=float)
        normal = np.cross(o[:3], o[3:])
        key = {id(i): float(np.dot(normal, i.position)) for i in instances}  # type: ignore[arg-type]
        if len(set(key.values())) == len(instances):
            return sorted(instances, key=lambda i: key[id(i)]), "position"
    if all(i.instance_number is not None for i in instances):
        return sorted(instances, key=lambda i: (i.instance_number, str(i.path))), "instance number"
    return sorted(instances, key=lambda i: str(i.path)), "path"


def group(
    instances: Iterable[Instance], duplicates: list[tuple[Instance, Instance]] | None = None
) -> list[Patient]:
    """Patients -> studies -> series, each series sorted.

    A second file with an already-seen SOP Instance UID is the same image (often another
    encoding of it): it is left out and, when `duplicates` is given, listed there with the first.
    """
    patients: dict[tuple[str, str], Patient] = {}
    studies: dict[str, Study] = {}
    series: dict[tuple[str, str], Series] = {}
    seen: dict[str, Instance] = {}
    for inst in instances:
        first = seen.setdefault(inst.sop_instance_uid, inst)
        if first is not inst:
            if duplicates is not None:
                duplicates.append((inst, first))
            continue
        # Without a patient ID (raster files: the name is their folder) the name tells patients
        # apart; otherwise every such file would join the first one's patient.
        who = (inst.patient_id, "" if inst.patient_id else inst.patient_name)
        patient = patients.setdefault(who, Patient(inst.patient_id, inst.patient_name))
        study = studies.get(inst.study_uid)
        if study is None:
            study = studies[inst.study_uid] = Study(
                inst.study_uid, inst.study_description, inst.study_date
            )
            patient.studies.append(study)
        key = (inst.study_uid, inst.series_uid)
        se = series.get(key)
        if se is None:
            se = series[key] = Series(
                inst.series_uid, inst.series_description, inst.modality, inst.series_number
            )
            study.series.append(se)
        se.instances.append(inst)
    for se in series.values():
        se.instances, se.sorted_by = slice_order(se.instances)
    for p in patients.values():
        p.studies.sort(key=lambda s: (s.date, s.uid))
        for st in p.studies:
            st.series.sort(key=lambda s: (s.number if s.number is not None else 1 << 30, s.uid))
    return sorted(patients.values(), key=lambda p: (p.id, p.name))
