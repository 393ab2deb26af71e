"""What the labels side shows about sizes and keeps of measurements for the image on screen:
the rulers and ROIs kept with it (loaded when it opens, saved as a `measurements` revision when
one is drawn or they are deleted, `workspace.measurements`), each class's area on the slice and
volume over the series (`imaging.measure`'s units) in the class palette, and no made-up class
for an image whose models only classify."""

from __future__ import annotations

from concurrent.futures import Future
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction

from medviewer.imaging.measure import MeasureError, Measurement, class_areas
from medviewer.qt.viewer.brush_cursor import KeptMeasures
from medviewer.workspace import measurements

if TYPE_CHECKING:
    from medviewer.qt.main_window import MainWindow


class MeasureKeeper(QObject):
    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.ws = window.ws
        self.review = window.review
        self.workers = window.workers
        self.palette = window.class_palette
        self.drawn = KeptMeasures(window.view.box)
        self.image_id: int | None = None
        self.found: list[Measurement] = []
        self.volumes: dict[int, float] | None = None
        self.review.sig_loaded.connect(self._loaded)
        self.review.sig_saved.connect(lambda _: self._sizes_changed())
        window.volume.sig_saved.connect(lambda _: self._sizes_changed())  # three-plane edits
        window.tools.sig_measurement.connect(self.add)
        window.host.sig_ready.connect(lambda _: self._classes())
        self.delete_action = QAction("Delete the image's measurements", window)
        self.delete_action.triggered.connect(self.delete_all)

    @classmethod
    def install(cls, window: MainWindow) -> MeasureKeeper:
        """The keeper, wired to the window; its delete action in the Edit menu."""
        keeper = cls(window)
        for action in window.menuBar().actions():
            if action.menu() is not None and action.text().replace("&", "") == "Edit":
                action.menu().addAction(keeper.delete_action)
        return keeper

    # -- measurements ------------------------------------------------------------------

    def _loaded(self, state, image, shown) -> None:
        image_id = state.image.id
        if image_id != self.image_id:  # a new image (not a proposal for this one)
            self.image_id, self.found, self.volumes = image_id, [], None
            self.drawn.clear()
            self.workers.load(
                measurements.latest, self.ws, image_id, then=lambda f: self._found(f, image_id)
            )
            self._sizes_changed()
        else:
            self.drawn.show(self.found)  # the window redraws the image on a proposal
        self._classes()

    def _found(self, future: Future, image_id: int) -> None:
        if image_id != self.image_id:
            return
        try:
            _, found, problems = future.result()
        except Exception as e:  # noqa: BLE001 - shown; the image is still reviewed
            self.window.statusBar().showMessage(f"Measurements not read: {e}", 8000)
            return
        if problems:
            self.window.statusBar().showMessage("; ".join(problems), 8000)
        self.found = found + self.found  # any drawn meanwhile come after
        self.drawn.show(self.found)

    def add(self, m: Measurement) -> None:
        """A finished ruler or ROI: drawn, and the image's list saved with it."""
        if self.image_id is None:
            return
        self.found.append(m)
        self.window.tools.marks.hide()
        self.drawn.show(self.found)
        self._save()

    def delete_all(self) -> None:
        if self.image_id is None or not self.found:
            return
        self.found = []
        self.drawn.clear()
        self._save()

    def _save(self) -> None:
        image_id, found = self.image_id, list(self.found)
        self.workers.save(
            measurements.save, self.ws, image_id, found, self.review.author,
            then=lambda f: self.review._after_save(f, image_id),
        )  # fmt: skip

    # -- sizes and classes -------------------------------------------------------------

    def _sizes_changed(self) -> None:
        """Areas on the slice now; the series' volumes from the saved masks, off the GUI."""
        image_id = self.image_id
        if image_id is None:
            return
        self._show_sizes()
        try:
            self.workers.load(
                measurements.series_class_volumes, self.ws, image_id,
                then=lambda f: self._volumes(f, image_id),
            )  # fmt: skip
        except RuntimeError:  # the window is closing: its last save landed after the loaders
            return

    def _volumes(self, future: Future, image_id: int) -> None:
        if image_id != self.image_id:
            return
        try:
            self.volumes = future.result()
        except Exception:  # noqa: BLE001 - no volume to state; the areas still show
            self.volumes = None
        self._show_sizes()

    def _show_sizes(self) -> None:
        session, image = self.review.session, self.review.image
        if session is None or image is None:
            return
        try:
            areas, _ = class_areas(session.mask, image.pixel_spacing)
        except MeasureError:
            return
        unit = "mm2" if image.pixel_spacing else "px"
        self.palette.show_sizes(areas, unit, self.volumes)

    def _classes(self) -> None:
        """An image whose applicable models all classify has no classes to paint."""
        state, host = self.review.state, self.window.host
        if state is None or host.runner is None or state.mask_revision is not None:
            return
        names = set(host.models_for(state.image.id))
        specs = [m.spec for m in self.ws.models.list() if m.active and m.name in names]
        if specs and all(s.get("task") == "classification" for s in specs):
            labels = sorted({label for s in specs for label in s.get("labels", [])})
            self.palette.show_no_classes(
                "No segmentation classes: this image's model only classifies"
                + (f" ({', '.join(labels)}; see Labels)" if labels else "")
            )
