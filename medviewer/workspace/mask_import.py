"""Bring existing label maps into the workspace as `import` revisions, one clear result per file:
PNG label maps matched to images by name here, DICOM SEG files by their references
(`seg_import`), NIfTI label volumes by their geometry (`nifti_import`)."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np

from medviewer.workspace.errors import MaskMismatch, SaveError, UnknownImage, WorkspaceError
from medviewer.workspace.mask_results import MaskImportResult, revision_model
from medviewer.workspace.nifti_import import import_niftis, is_nifti, nifti_files
from medviewer.workspace.seg_import import import_segs, seg_files
from medviewer.workspace.store import Workspace

MASK_SUFFIXES = {".png"}


def read_label_map(path: Path) -> np.ndarray:
    """A PNG label map as uint8 class indices; raises MaskMismatch with the reason."""
    data = np.fromfile(path, dtype=np.uint8)
    mask = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if mask is None:
        raise MaskMismatch(f"{path}: not a readable PNG")
    if mask.ndim == 3:
        raise MaskMismatch(
            f"{path}: colour PNG; expected a label map (one class index per pixel, greyscale)"
        )
    if mask.dtype != np.uint8:
        if mask.size and int(mask.max()) > 255:
            raise MaskMismatch(f"{path}: class values up to {int(mask.max())}; at most 255 allowed")
        mask = mask.astype(np.uint8)
    return mask


def _read_map(csv_path: Path) -> dict[str, str]:
    """mask file name -> image key (id, SOP Instance UID or path), from a CSV with a header."""
    with open(csv_path, newline="") as fp:
        rows = list(csv.DictReader(fp))
    if not rows or not {"mask", "image"} <= set(rows[0]):
        raise WorkspaceError(f"{csv_path}: the CSV map needs the columns 'mask' and 'image'")
    return {Path(r["mask"]).name: r["image"] for r in rows}


class _ImageNames:
    """Frame-0 images by SOP Instance UID, file name and file name less its last suffix, read
    once per import. Names are compared exactly, case included: a mask file name is no pattern
    (`plai_` or `%` match nothing), and `PLAIN.png` is not taken for `plain.dcm`, which on a
    case-sensitive file system is another file; the error names the near miss instead."""

    def __init__(self, ws: Workspace) -> None:
        self.exact: dict[str, set[int]] = {}  # SOP Instance UID or whole file name
        self.stem: dict[str, set[int]] = {}  # file name less its last suffix
        self.folded: dict[str, set[str]] = {}  # lower-case key -> file names, for the message
        for image_id, path, uid in ws.db.execute(
            "SELECT id, path, sop_instance_uid FROM images WHERE frame = 0"
        ):
            name = Path(path).name
            self.exact.setdefault(uid, set()).add(image_id)
            self.exact.setdefault(name, set()).add(image_id)
            self.stem.setdefault(Path(name).stem, set()).add(image_id)
            for key in (name, Path(name).stem):
                self.folded.setdefault(key.casefold(), set()).add(name)

    def match(self, stem: str) -> int:
        """The one image a mask named `stem`.png belongs to: an exact SOP Instance UID or file
        name first, else a file name with one suffix added (`plain` -> `plain.dcm`)."""
        ids = self.exact.get(stem) or self.stem.get(stem) or set()
        if len(ids) > 1:
            raise UnknownImage(f"{stem!r} matches {len(ids)} images; give a CSV map (--map)")
        if ids:
            return next(iter(ids))
        near = sorted(self.folded.get(stem.casefold(), ()))
        if near:
            raise UnknownImage(
                f"no image whose file name or SOP Instance UID is {stem!r}; it differs only in "
                f"case from {', '.join(near)} (names must match exactly; rename the mask or give "
                "a CSV map, --map)"
            )
        raise UnknownImage(f"no image whose file name or SOP Instance UID is {stem!r}")


def import_masks(
    ws: Workspace,
    folder: Path,
    *,
    author: str,
    model: str | None = None,
    mapping: Path | None = None,
) -> list[MaskImportResult]:
    """Import every PNG, DICOM SEG and NIfTI under `folder` (or that one SEG or NIfTI file); a
    bad file is reported and the others still import. A SEG's author is its Content Creator's
    Name, else `author`; the CSV map is for PNGs (a SEG names its images, a NIfTI its volume by
    geometry)."""
    chosen = None
    if model is not None:
        versions = ws.models.list(model)
        if not versions:
            raise WorkspaceError(f"no model named {model!r} in {ws.root}; register it first")
        chosen = ws.models.active(model) or versions[-1]
    model_ref, num_classes = revision_model(chosen)
    by_name = _read_map(mapping) if mapping else {}
    names = None if by_name else _ImageNames(ws)
    results = []
    pngs = [] if Path(folder).is_file() else Path(folder).rglob("*")
    for path in sorted(p for p in pngs if p.suffix.lower() in MASK_SUFFIXES):
        image_id = None
        try:
            if names is not None:
                image_id = names.match(path.stem)
            elif path.name not in by_name:
                raise UnknownImage(f"not listed in {mapping}")
            else:
                image_id = ws.find_image(by_name[path.name]).id
            mask = read_label_map(path)
            rev = ws.revisions.save_mask(
                image_id,
                mask,
                source="import",
                author=author,
                model=model_ref,
                num_classes=num_classes,
            )
            results.append(MaskImportResult(path, image_id, rev.id))
        except (MaskMismatch, UnknownImage, SaveError) as e:
            results.append(MaskImportResult.failed(path, e, image_id))
    segs = [p for p in seg_files(Path(folder)) if not is_nifti(p)]
    results += import_segs(ws, segs, author=author, model=chosen)
    results += import_niftis(ws, nifti_files(Path(folder)), author=author, model=chosen)
    return results
