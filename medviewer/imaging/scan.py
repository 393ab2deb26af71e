"""Import: turn files, folders and DICOMDIRs into a Catalog without decoding any pixels."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from medviewer.imaging import dicom, nifti_volumes, raster
from medviewer.imaging.budget import DecodeBudget
from medviewer.imaging.errors import ImageLoadError, NotAnImage, UnreadableFile
from medviewer.imaging.loading import ImageLoader
from medviewer.imaging.records import Catalog, Instance, Problem
from medviewer.imaging.series import group


def _expand(
    paths: Iterable[Path | str], problems: list[Problem], skipped: list[Problem]
) -> list[Path]:
    """Every regular file under the given paths, plus the files DICOMDIRs reference inside
    their folders; each once. Anything else (a FIFO would block the read for ever, a device
    never ends) is skipped with the reason, before any file is opened."""
    out: dict[Path, None] = {}
    for p in map(Path, paths):
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if not name.startswith("."):
                        out.setdefault(Path(root) / name)
        elif p.exists():
            out.setdefault(p)
        else:
            problems.append(Problem(p, "no such file or folder"))
    found = dict.fromkeys(_regular(out, skipped))
    for f in [f for f in found if f.name.upper() == "DICOMDIR"]:
        try:
            refs, outside = dicom.dicomdir_files(f)
        except Exception as e:  # noqa: BLE001 - a broken index must not stop the import
            problems.append(Problem(f, f"DICOMDIR unreadable: {e}"))
            continue
        skipped.extend(outside)
        # A missing reference is left in: describe_file reports it as missing.
        found.update(dict.fromkeys(_regular([r for r in refs if r not in found], skipped)))
    # Resolve so the same file reached twice (folder walk and DICOMDIR) counts once.
    resolved: dict[Path, Path] = {}
    for f in found:
        resolved.setdefault(f.resolve(), f)
    return list(resolved.values())


_NOT_REGULAR = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _regular(paths: Iterable[Path], skipped: list[Problem]) -> list[Path]:
    """The paths that are regular files (after symlinks) or do not exist; the rest skipped."""
    kept = []
    for path in paths:
        try:
            mode = path.stat().st_mode
        except OSError:
            kept.append(path)  # missing or unreadable: describe_file says which
            continue
        if stat.S_ISREG(mode):
            kept.append(path)
        else:
            kind = next((name for test, name in _NOT_REGULAR if test(mode)), "not a file")
            skipped.append(Problem(path, f"not a regular file: {kind}"))
    return kept


def describe_file(path: Path, budget: DecodeBudget | None = None) -> Instance:
    """Header record of one file, DICOM or raster; raises UnreadableFile (OverBudget when the
    header declares more than `budget`, by default the configured one) or NotAnImage."""
    budget = budget or DecodeBudget.from_env()
    if not path.exists():
        raise UnreadableFile(path, "no such file (it was referenced but is missing)")
    if raster.sniff(path) is not None:
        return raster.describe(path, budget)
    if path.stat().st_size == 0:
        raise UnreadableFile(path, "empty file")
    return dicom.describe(path, budget)


def describe_path(path: Path, budget: DecodeBudget | None = None) -> list[Instance]:
    """Header records of one file: a NIfTI volume's (one per time point), else
    `describe_file`'s one."""
    budget = budget or DecodeBudget.from_env()
    if path.exists() and nifti_volumes.sniff(path):
        return nifti_volumes.describe(path, budget)
    return [describe_file(path, budget)]


def scan(paths: Iterable[Path | str], budget: DecodeBudget | None = None) -> Catalog:
    """Index files and folders (recursively) and DICOMDIRs. Never raises for a bad file.

    A file whose header declares more than the decode budget (by default the configured one)
    is refused with the setting to raise."""
    budget = budget or DecodeBudget.from_env()
    catalog = Catalog()
    instances: list[Instance] = []
    for path in _expand(paths, catalog.problems, catalog.skipped):
        try:
            instances.extend(describe_path(path, budget))
        except NotAnImage as e:
            if path.name.upper() != "DICOMDIR":
                catalog.skipped.append(Problem(path, e.reason))
        except UnreadableFile as e:
            catalog.problems.append(Problem(path, e.reason))
        except Exception as e:  # noqa: BLE001 - the report, not a traceback, is the contract
            catalog.problems.append(
                Problem(path, f"unexpected error reading file: {type(e).__name__}: {e}")
            )
    duplicates: list[tuple[Instance, Instance]] = []
    catalog.patients = group(instances, duplicates)
    for dup, first in duplicates:
        catalog.skipped.append(Problem(dup.path, f"same SOP Instance UID as {first.path}"))
    return catalog


def verify(catalog: Catalog, loader: ImageLoader | None = None) -> Catalog:
    """Decode every instance once; move those that fail into the problems with their reason.

    Indexing reads headers only, so a corrupt compressed stream shows up here, not in `scan`.
    """
    loader = loader or ImageLoader(cache_bytes=0)
    for se in catalog.series():
        kept = []
        for inst in se.instances:
            try:
                loader.frames(inst)
                kept.append(inst)
            except ImageLoadError as e:
                catalog.problems.append(Problem(inst.path, e.reason))
        se.instances = kept
    _prune(catalog)
    return catalog


def _prune(catalog: Catalog) -> None:
    for p in catalog.patients:
        for st in p.studies:
            st.series = [se for se in st.series if se.instances]
        p.studies = [st for st in p.studies if st.series]
    catalog.patients = [p for p in catalog.patients if p.studies]
