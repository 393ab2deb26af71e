"""Which class value a DICOM SEG segment is, by its label: a model's class names (import with
`--model`), else the workspace's (every registered model's, and the "Class N" our exports write
for masks without a model). Labels compare without case or surrounding blanks: a label is a
name a person typed, not a file name."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from medviewer.workspace.classes import palette_of
from medviewer.workspace.errors import UnmappedSegment

if TYPE_CHECKING:
    from medviewer.workspace.model_table import ModelVersion
    from medviewer.workspace.store import Workspace

# "Class 3": the name our exports give a class no model names (classes.Palette.extended).
_CLASS_N = re.compile(r"class (\d{1,3})")
_SHOWN = 12  # class names listed in a message


def _key(label: str) -> str:
    return " ".join(label.split()).casefold()


@dataclass(frozen=True)
class SegmentClasses:
    """Label -> class values; a label with several values is ambiguous (two models disagree)."""

    values: dict[str, frozenset[int]]
    source: str  # what the classes are, for messages: "model organs 2", "this workspace"
    class_n: bool  # "Class N" means class N (no model given)

    @classmethod
    def of_model(cls, model: ModelVersion) -> SegmentClasses:
        values: dict[str, set[int]] = {}
        for value, name in enumerate(palette_of(model).names):
            if value:  # background is no segment
                values.setdefault(_key(name), set()).add(value)
        frozen = {k: frozenset(v) for k, v in values.items()}
        return cls(frozen, f"model {model.name} {model.version}", class_n=False)

    @classmethod
    def of_workspace(cls, ws: Workspace) -> SegmentClasses:
        """The classes of each registered model's active version (else its newest)."""
        values: dict[str, set[int]] = {}
        newest: dict[str, ModelVersion] = {}
        for version in ws.models.list():
            newest[version.name] = version  # listed oldest first
        for name, version in newest.items():
            chosen = ws.models.active(name) or version
            for label, found in cls.of_model(chosen).values.items():
                values.setdefault(label, set()).update(found)
        frozen = {k: frozenset(v) for k, v in values.items()}
        return cls(frozen, "this workspace", class_n=True)

    def value(self, number: int, label: str) -> int:
        """The class value of segment `number` labelled `label`; UnmappedSegment if none."""
        key = _key(label)
        found = self.values.get(key, frozenset())
        if len(found) == 1:
            return next(iter(found))
        if len(found) > 1:
            raise UnmappedSegment(
                f"segment {number} {label!r} is class {', '.join(map(str, sorted(found)))} in "
                "different registered models; give the model with --model"
            )
        match = _CLASS_N.fullmatch(key) if self.class_n else None
        if match and 0 < int(match[1]) < 256:
            return int(match[1])
        names = sorted(self.values)
        known = ", ".join(names[:_SHOWN]) + (" ..." if len(names) > _SHOWN else "")
        classes = f"its classes: {known}" if known else "no named classes"
        hint = "; register a model whose classes name it" if self.class_n else ""
        raise UnmappedSegment(
            f"segment {number} {label!r} names no class of {self.source} ({classes}){hint}"
        )
