"""The re-identification mapping: per patient a pseudonym, a date offset and a seed, and every
UID replaced. It holds the original identities, so it stays with the site (never in an export
folder), is written atomically with owner-only permissions, and is reused: the same patient
gets the same pseudonym, date shift and UIDs on every later export.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from medviewer.atomic import atomic_write
from medviewer.deid.errors import DeidentificationError

FORMAT = "medviewer-deidentification-mapping"
VERSION = 1
# Dates move back by 62 days to 2 years: far enough not to match, near enough to keep seasons
# and ages roughly right (dicognito's range).
OFFSET_DAYS = (62, 730)


@dataclass(frozen=True)
class PatientEntry:
    pseudonym: str  # replaces both Patient's Name and Patient ID
    date_offset_days: int  # added to every date of this patient's objects (negative)
    seed: str  # seeds dicognito's stand-in values (other names, addresses, IDs)


class Mapping:
    """Load with `Mapping.open(path)`; `save()` writes it atomically."""

    def __init__(self, path: Path, key: str, patients: dict[str, PatientEntry],
                 uids: dict[str, str]) -> None:  # fmt: skip
        self.path = path
        self._key = bytes.fromhex(key)
        self.patients = patients
        self.uids = uids

    @classmethod
    def open(cls, path: Path | str) -> Mapping:
        """The mapping at `path`, or a new empty one (nothing written until `save`)."""
        path = Path(path).expanduser().absolute()
        if not path.exists():
            return cls(path, secrets.token_hex(32), {}, {})
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != FORMAT or data.get("version") != VERSION:
                raise ValueError("not a medviewer de-identification mapping")
            patients = {k: PatientEntry(**v) for k, v in data["patients"].items()}
            return cls(path, data["key"], patients, dict(data["uids"]))
        except OSError as e:
            raise DeidentificationError(f"{path}: cannot read the mapping: {e.strerror}") from e
        except (ValueError, KeyError, TypeError) as e:
            raise DeidentificationError(f"{path}: damaged mapping file ({e})") from e

    def patient(self, patient_id: str) -> PatientEntry:
        """The entry of `patient_id` (the original Patient ID), made on first use."""
        entry = self.patients.get(patient_id)
        if entry is None:
            taken = {p.pseudonym for p in self.patients.values()}
            pseudonym = f"ANON-{secrets.token_hex(4).upper()}"
            while pseudonym in taken:
                pseudonym = f"ANON-{secrets.token_hex(4).upper()}"
            offset = -(OFFSET_DAYS[0] + secrets.randbelow(OFFSET_DAYS[1] - OFFSET_DAYS[0] + 1))
            entry = PatientEntry(pseudonym, offset, secrets.token_hex(16))
            self.patients[patient_id] = entry
        return entry

    def uid(self, original: str) -> str:
        """The replacement of an instance UID: a keyed hash under the 2.25 root, so it is the
        same on every export with this mapping and reveals nothing without the key."""
        new = self.uids.get(original)
        if new is None:
            digest = hmac.new(self._key, original.encode("ascii", "replace"), hashlib.sha256)
            new = f"2.25.{int.from_bytes(digest.digest()[:16], 'big')}"
            self.uids[original] = new
        return new

    def save(self) -> None:
        """Write atomically, readable by the owner only; an unwritable place is one line."""
        data = {
            "format": FORMAT,
            "version": VERSION,
            "note": "Re-identification key: keep at the site, never send it with the data.",
            "key": self._key.hex(),
            "patients": {k: asdict(v) for k, v in self.patients.items()},
            "uids": self.uids,
        }
        text = json.dumps(data, indent=1, sort_keys=True)

        def write(tmp: Path) -> None:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fp:
                fp.write(text)

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, write)
        except OSError as e:
            raise DeidentificationError(
                f"{self.path}: cannot write the de-identification mapping: {e.strerror or e}"
            ) from e
