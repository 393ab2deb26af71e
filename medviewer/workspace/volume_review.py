"""What the three-plane viewer shows and edits for one volume: its pixels, a label volume made of
each slice's current mask, and how to save the slices an edit changed.

The volume is the one of `workspace.volumes` that holds the image asked for; each slice's mask
is what `review_state.load_review` gives the 2D viewer (the one rule of which mask is shown);
saving goes through `review_state.save_mask_edits` (one transaction). Qt-free: the app runs
`load_volume_review` on its loader pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from medviewer.imaging.display import Image, Window, default_window, modality_values, render
from medviewer.imaging.geometry import stack
from medviewer.imaging.loading import ImageLoader, load_volume
from medviewer.imaging.reslice import GeometryError, PlaneName, Reslicer, VolumeAxes, Voxel
from medviewer.workspace.classes import ClassResolver, Palette
from medviewer.workspace.errors import WorkspaceError
from medviewer.workspace.review_state import ReviewState, load_review, save_mask_edits
from medviewer.workspace.volumes import Slice, series_volumes, volume_stack

if TYPE_CHECKING:
    from medviewer.workspace.revisions import Revision
    from medviewer.workspace.store import Workspace


class NotAVolume(WorkspaceError):
    """The image cannot be shown in three planes: the message names it and says why."""


@dataclass
class VolumeReview:
    """One volume under review: `stored` pixels and `labels` (slices, rows, columns) in stack
    order, `states[k]` the review state of slice k (whose mask `labels[k]` started from)."""

    states: list[ReviewState]
    images: list[Image]  # per slice: display info (modality LUT, windows); pixels of slice k
    stored: np.ndarray
    labels: np.ndarray  # uint8, C-contiguous: edited in place, undo over `stacked(labels)`
    reslicer: Reslicer
    window: Window | None  # the first slice's default; None for colour images
    palette: Palette

    @property
    def image_ids(self) -> list[int]:
        return [s.image.id for s in self.states]

    def slice_of(self, image_id: int) -> int:
        return self.image_ids.index(image_id)

    def value_at(self, voxel: Voxel) -> float:
        """The voxel's modality value (HU for CT), for the cursor readout."""
        first = self.images[0]
        one = Image(self.stored[voxel].reshape(1, 1), first.info)
        return float(modality_values(one)[0, 0])

    def render_plane(self, plane: PlaneName, crosshair: Voxel, window: Window | None) -> np.ndarray:
        """The plane through `crosshair` as uint8 grey through the display pipeline (`render`)
        with the first slice's display info: one window for the three planes."""
        pixels = np.ascontiguousarray(self.reslicer.plane(self.stored, plane, crosshair).pixels)
        first = self.images[0]
        return render(Image(pixels, first.info, first.pixel_spacing, first.source), window)


def load_volume_review(
    ws: Workspace, image_id: int, loader: ImageLoader, resolver: ClassResolver | None = None
) -> VolumeReview:
    """The volume holding `image_id`, its pixels and its label volume (slow: run off the GUI
    thread). NotAVolume when the image is alone in its volume or its geometry cannot be
    resliced."""
    volume = _volume_of(ws, image_id)
    name = f"image {image_id} ({volume[0].row.path})"
    if len(volume) < 2:
        raise NotAVolume(f"{name} is a single slice, not part of a volume: no three planes")
    geometry = volume_stack(volume)
    if geometry.source_order is not None:
        # A NIfTI source's voxel order is for export; the viewer reslices in ours.
        geometry = stack([s.plane for s in volume])
    ordered = [volume[i] for i in geometry.order]
    try:
        axes = VolumeAxes.from_stack(geometry)
    except GeometryError as e:
        raise NotAVolume(f"{name}: {e}") from None
    stored = _pixels(ordered, loader)
    if stored.ndim != 3:
        raise NotAVolume(f"{name} is a colour image: three planes show greyscale volumes")
    resolver = resolver or ClassResolver(ws)
    states = [load_review(ws, s.row.id, resolver) for s in ordered]
    labels = np.ascontiguousarray(np.stack([s.mask for s in states]), dtype=np.uint8)
    images = [loader.image(s.ref) for s in ordered[:1]]
    here = next((s for s in states if s.image.id == image_id), states[0])
    first = images[0]
    # The window of the header, else of the middle slice: the first is often empty (air, or a
    # NIfTI brain's bottom), and its percentile window would wash the rest out.
    middle = Image(stored[len(stored) // 2], first.info, first.pixel_spacing, first.source)
    return VolumeReview(
        states,
        images,
        stored,
        labels,
        Reslicer(stored.shape, axes),
        default_window(middle),
        here.palette,
    )


def save_volume_edit(
    ws: Workspace, review: VolumeReview, slices: list[int], labels: np.ndarray, author: str
) -> list[Revision]:
    """Save `labels[k]` of each changed slice k (a snapshot taken on the GUI thread) as a human
    revision of slice k's image, all in one transaction."""
    return save_mask_edits(
        ws, [(review.states[k], labels[i]) for i, k in enumerate(slices)], author
    )


def _volume_of(ws: Workspace, image_id: int) -> list[Slice]:
    for volume in series_volumes(ws)[0]:
        if any(s.row.id == image_id for s in volume):
            return volume
    raise NotAVolume(f"image {image_id}: no such image in {ws.root}")


def _pixels(ordered: list[Slice], loader: ImageLoader) -> np.ndarray:
    """The stored pixels in stack order: one native read per file for single-frame slices
    (`load_volume`), else the frames of their files through the loader's cache."""
    instances = [s.ref.instance for s in ordered]
    if all(i.frames == 1 for i in instances):
        return load_volume(instances, loader.budget)
    return np.stack([loader.frames(s.ref.instance)[s.ref.frame] for s in ordered])
