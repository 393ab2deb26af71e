"""Class names and colours of a mask: from the model that produced it (or the AI proposal a
human correction descends from), else "Class N" in default colours."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from medviewer.imaging.palette import DEFAULT_COLOURS, class_colour
from medviewer.workspace.errors import WorkspaceError

if TYPE_CHECKING:
    from medviewer.workspace.model_table import ModelVersion
    from medviewer.workspace.revisions import Revision
    from medviewer.workspace.store import Workspace


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
