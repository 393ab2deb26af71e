"""Export reviewed masks: DICOM SEG, PNG label maps (optionally with overlays) or a CSV table.

`export_workspace` picks one mask revision per image ("final": the latest human/import one,
"original": the latest AI one); images without one are skipped and counted. The format
modules are imported on use so that a PNG or CSV export never loads highdicom.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from medviewer.imaging.palette import DEFAULT_COLOURS, class_colour
from medviewer.workspace.errors import WorkspaceError

if TYPE_CHECKING:
    from medviewer.imaging import Instance
    from medviewer.workspace.models import ModelVersion
    from medviewer.workspace.revisions import Revision
    from medviewer.workspace.store import ImageRow, Workspace

FORMATS = ("dicom-seg", "png", "csv")
WHICH = ("final", "original")


class ExportError(WorkspaceError):
    """An export could not write its output (the message names the file and why)."""


@dataclass
class ExportReport:
    fmt: str
    which: str
    out_dir: Path
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    exported: int = 0  # images whose mask went into the output
    skipped: int = 0  # images without a mask revision of the chosen kind


def export_workspace(
    ws: Workspace, out_dir: Path | str, fmt: str, which: str = "final", *, overlay: bool = False
) -> ExportReport:
    """Write every image's chosen mask to `out_dir` as `fmt` (see FORMATS)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; valid: {', '.join(FORMATS)}")
    if which not in WHICH:
        raise ValueError(f"unknown mask choice {which!r}; valid: {', '.join(WHICH)}")
    out = Path(out_dir).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExportError(f"{out}: cannot create the export folder: {e.strerror}") from e
    report = ExportReport(fmt, which, out)
    if fmt == "dicom-seg":
        from medviewer.workspace.export.dicom_seg import export_dicom_seg

        export_dicom_seg(ws, out, which, report)
    elif fmt == "png":
        from medviewer.workspace.export.png import export_png

        export_png(ws, out, which, report, overlay=overlay)
    else:
        from medviewer.workspace.export.csv_table import export_csv

        export_csv(ws, out, which, report)
    if report.skipped and fmt != "csv":  # the CSV keeps a row for them and says so itself
        report.notes.append(
            f"{report.skipped} image(s) have no {which} mask and were not exported."
        )
    return report


def chosen_mask(ws: Workspace, image_id: int, which: str, kind: str = "mask") -> Revision | None:
    if which == "final":
        return ws.revisions.final(image_id, kind)
    return ws.revisions.original(image_id, kind)


# -- classes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Palette:
    """Class names and RGB colours, index = class value; `model` is None when unknown."""

    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    model: str | None = None  # "name version" of the model the classes come from

    def extended(self, count: int) -> Palette:
        """At least `count` classes, the missing ones named "Class N" in default colours."""
        names, colors = list(self.names), list(self.colors)
        for value in range(len(names), count):
            names.append(f"Class {value}")
            colors.append(class_colour(value))
        return Palette(tuple(names), tuple(colors), self.model)


UNKNOWN = Palette(("background",), (DEFAULT_COLOURS[0],))


def _color(value: object) -> tuple[int, int, int] | None:
    if isinstance(value, (list, tuple)) and len(value) == 3:
        try:
            rgb = tuple(int(c) for c in value)
        except (TypeError, ValueError):
            return None
        if all(0 <= c <= 255 for c in rgb):
            return rgb  # type: ignore[return-value]
    return None


def palette_of(model: ModelVersion) -> Palette:
    names: list[str] = []
    colors: list[tuple[int, int, int]] = []
    for value, spec in enumerate(model.classes):
        spec = spec if isinstance(spec, dict) else {}
        name = str(spec.get("name") or "").strip() or f"Class {value}"
        # Two classes of one name would be indistinguishable in a SEG or a CSV header.
        names.append(f"{name} ({value})" if name in names else name)
        colors.append(_color(spec.get("color")) or class_colour(value))
    if not names:
        return Palette(UNKNOWN.names, UNKNOWN.colors, f"{model.name} {model.version}")
    return Palette(tuple(names), tuple(colors), f"{model.name} {model.version}")


class ClassResolver:
    """The classes of the model that produced a mask, cached per model and revision."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._models: dict[tuple[str, str | None], ModelVersion | None] = {}
        self._origin: dict[int, tuple[str, str | None] | None] = {}

    def origin(self, rev: Revision) -> tuple[str, str | None] | None:
        """(model name, version) of the revision, else of the nearest ancestor that has one:
        a human correction inherits the classes of the AI proposal it corrects."""
        chain: list[int] = []
        found: tuple[str, str | None] | None = None
        current: Revision | None = rev
        while current is not None:
            if current.id in self._origin:
                found = self._origin[current.id]
                break
            chain.append(current.id)
            if current.model_name:
                found = (current.model_name, current.model_version)
                break
            current = self.ws.revisions.get(current.parent_id) if current.parent_id else None
        for rev_id in chain:
            self._origin[rev_id] = found
        return found

    def model(self, name: str, version: str | None) -> ModelVersion | None:
        """That version if registered, else the active one, else the newest registered."""
        key = (name, version)
        if key not in self._models:
            found = None
            if version is not None:
                try:
                    found = self.ws.models.get(name, version)
                except WorkspaceError:
                    found = None
            found = found or self.ws.models.active(name)
            if found is None:
                versions = self.ws.models.list(name)
                found = versions[-1] if versions else None
            self._models[key] = found
        return self._models[key]

    def palette(self, rev: Revision) -> Palette:
        origin = self.origin(rev)
        model = self.model(*origin) if origin else None
        return palette_of(model) if model else UNKNOWN


# -- names and notes -------------------------------------------------------------------


def safe_name(text: str, limit: int = 120) -> str:
    """Letters, digits, '.', '_' and '-' only, so the name is valid on every file system."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")
    return name[:limit].rstrip("._-") or "image"


def image_stem(row: ImageRow, inst: Instance) -> str:
    """Series description and SOP Instance UID (file name for raster files) and frame."""
    if inst.kind == "raster":
        stem = f"{row.series_description}_{inst.path.stem}"
    else:
        stem = f"{row.series_description or row.modality or 'series'}_{inst.sop_instance_uid}"
    if inst.frames > 1:
        stem += f"_f{row.frame + 1:04d}"
    return safe_name(stem)


class UniqueNames:
    """File names unique within one export: a clash gets the image id appended."""

    def __init__(self) -> None:
        self._used: set[str] = set()

    def claim(self, name: str, suffix: str, image_id: int) -> str:
        candidate = name + suffix
        if candidate.lower() in self._used:  # case-insensitive file systems
            candidate = f"{name}_{image_id}{suffix}"
        self._used.add(candidate.lower())
        return candidate


def describe_image(row: ImageRow, inst: Instance | None = None) -> str:
    multi = row.frame > 0 or (inst is not None and inst.frames > 1)
    frame = f" frame {row.frame + 1}" if multi else ""
    return f"image {row.id} ({Path(row.path).name}{frame})"


def listing(items: Iterable[str], limit: int = 5) -> str:
    """'a, b, c' or 'a, b, c, d, e and 7 more'."""
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
