"""What importing one mask file gave: an `import` revision on an image, or why not."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medviewer.workspace.model_table import ModelVersion


@dataclass(frozen=True)
class MaskImportResult:
    """One image's mask from `path` (a PNG, or one of a SEG's images), or the file's error."""

    path: Path
    image_id: int | None
    revision_id: int | None
    error: str | None = None
    already: bool = False  # the same file was imported onto this image before: no new revision

    def describe(self) -> str:
        """One line for an imported mask: the file, its image and revision."""
        again = ", imported before" if self.already else ""
        return f"{self.path.name} -> image {self.image_id} (revision {self.revision_id}{again})"

    @classmethod
    def failed(cls, path: Path, error: Exception, image_id: int | None = None) -> MaskImportResult:
        """The file's error, its message starting with the file's path (once)."""
        reason = str(error)
        if not reason.startswith(str(path)):
            reason = f"{path}: {reason}"
        return cls(path, image_id, None, reason)


def revision_model(model: ModelVersion | None) -> tuple[tuple[str, str] | None, int | None]:
    """The model an imported revision names, and its class count (None: any class value)."""
    if model is None:
        return None, None
    return (model.name, model.version), len(model.classes) or None
