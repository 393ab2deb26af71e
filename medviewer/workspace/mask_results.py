"""What importing one mask file gave: an `import` revision on an image, or why not."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class MaskImportResult:
    """One image's mask from `path` (a PNG, or one of a SEG's images), or the file's error."""

    path: Path
    image_id: int | None
    revision_id: int | None
    error: str | None = None
