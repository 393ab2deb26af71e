"""PNG export: per image a uint8 label map at native size, optionally a colour overlay."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from medviewer.atomic import atomic_write_bytes
from medviewer.imaging import ImageLoader, ImageLoadError, UnreadableFile, render
from medviewer.workspace.classes import ClassResolver, Palette
from medviewer.workspace.export import (
    ExportError,
    ExportReport,
    UniqueNames,
    chosen_mask,
    describe_image,
    image_stem,
    listing,
    read_chosen,
)

if TYPE_CHECKING:
    from medviewer.deid.profile import Anonymiser
    from medviewer.workspace.store import ImageRow, Workspace

OVERLAY_ALPHA = 0.4  # weight of the class colour; the image stays readable underneath


def export_png(
    ws: Workspace,
    out_dir: Path,
    which: str,
    report: ExportReport,
    *,
    overlay: bool = False,
    rows: Iterable[ImageRow] | None = None,
    names: UniqueNames | None = None,
    anonymiser: Anonymiser | None = None,
) -> dict[int, Path]:
    """Write `<stem>_mask.png` (and `<stem>_overlay.png`) for `rows` (default: all images);
    returns image id -> label map file. Images without a chosen mask are counted as skipped,
    those whose mask cannot be read listed as failed."""
    resolver = ClassResolver(ws)
    loader = ImageLoader() if overlay else None
    names = names or UniqueNames()
    written: dict[int, Path] = {}
    unreadable: list[str] = []
    unnamed: list[str] = []
    for row in ws.images() if rows is None else rows:
        rev = chosen_mask(ws, row.id, which)
        if rev is None:
            report.skipped += 1
            continue
        ref = ws.frame_ref(row.id)
        mask = read_chosen(ws, rev, row, report, ref.instance)
        if mask is None:
            continue
        if anonymiser is None:
            stem = image_stem(row, ref.instance)
        else:
            from medviewer.workspace.export.anonymised import stem as anonymised_stem

            stem = anonymised_stem(row, ref.instance, anonymiser)
        path = out_dir / names.claim(stem, "_mask.png", row.id)
        write_png(path, mask)
        written[row.id] = path
        report.files.append(path)
        report.exported += 1
        if loader is not None:
            try:
                image = render(loader.image(ref))
            except (ImageLoadError, UnreadableFile) as e:
                unreadable.append(f"{describe_image(row, ref.instance)}: {e.reason}")
                continue
            palette = resolver.palette(rev)
            if palette.model is None:
                unnamed.append(describe_image(row, ref.instance))
            over = path.with_name(path.name.removesuffix("_mask.png") + "_overlay.png")
            write_png(over, blend(image, mask, palette))
            report.files.append(over)
    if anonymiser is not None and overlay and written:
        report.notes.append(
            "The overlays show the image pixels: text burned into an image is still there."
        )
    if unreadable:
        report.notes.append(
            f"No overlay for {len(unreadable)} image(s) whose pixels could not be loaded "
            f"(their label maps were written): {listing(unreadable)}."
        )
    if unnamed:
        report.notes.append(
            f"The overlays of {len(unnamed)} image(s) use default class colours, because their "
            f"masks come from no registered model: {listing(unnamed)}."
        )
    return written


def blend(image: np.ndarray, mask: np.ndarray, palette: Palette) -> np.ndarray:
    """RGB uint8: class colours over the rendered image where the mask is not background."""
    rgb = np.repeat(image[..., np.newaxis], 3, axis=2) if image.ndim == 2 else image
    top = int(mask.max()) + 1 if mask.size else 1
    lut = np.array(palette.extended(top).colors, dtype=np.float32)
    coloured = (1 - OVERLAY_ALPHA) * rgb.astype(np.float32) + OVERLAY_ALPHA * lut[mask]
    out = np.where((mask > 0)[..., np.newaxis], np.rint(coloured), rgb)
    return out.astype(np.uint8)


def write_png(path: Path, pixels: np.ndarray) -> None:
    """Encode in memory and write with Python: cv2.imwrite fails silently and cannot write
    non-ASCII paths on Windows."""
    if pixels.ndim == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".png", pixels)
    if not ok:
        raise ExportError(f"{path}: could not encode the PNG")
    try:
        atomic_write_bytes(path, data.tobytes())
    except OSError as e:
        raise ExportError(f"{path}: cannot write: {e.strerror}") from e
