"""The main window: worklist | image view | labels and models, toolbar, shortcuts, status bar."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QLabel,
    QMainWindow,
    QMessageBox,
    QSlider,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from medviewer.imaging.display import PRESETS
from medviewer.qt.dialogs.pacs_open import PacsOpenDialog
from medviewer.qt.dialogs.pacs_send import PacsSendDialog
from medviewer.qt.dialogs.retrain import JobEvents, RetrainDialog
from medviewer.qt.inference import RunnerHost
from medviewer.qt.panels.labels import LabelsPanel
from medviewer.qt.panels.models import ModelsPanel
from medviewer.qt.panels.worklist import WorklistPanel
from medviewer.qt.review import ReviewController
from medviewer.qt.tools import ToolController
from medviewer.qt.viewer.image_view import ImageView
from medviewer.qt.viewer.layouts import LayoutHost, layout_actions
from medviewer.qt.viewer.mpr_view import MprView
from medviewer.qt.volume import VolumeController
from medviewer.qt.workers import Workers
from medviewer.training.jobs import JobManager
from medviewer.workspace import ImageQuery

ISLAND_PIXELS = 20  # "remove small islands": regions smaller than this many pixels

if TYPE_CHECKING:
    from medviewer.imaging import Image
    from medviewer.workspace import Workspace
    from medviewer.workspace.review_state import ReviewState


class MainWindow(QMainWindow):
    # A version became active (name, version); emitted from any thread, handled on the GUI's.
    sig_model_activated = Signal(str, str)

    def __init__(
        self, ws: Workspace, author: str, settings: QSettings, device: str = "auto"
    ) -> None:
        super().__init__()
        self.ws = ws
        self.settings = settings
        self.setWindowTitle(f"medviewer: {ws.root}")
        self.workers = Workers()
        self.host = RunnerHost(ws, self.workers, device)
        self.job_events = JobEvents()
        self.jobs = JobManager(ws, on_event=self.job_events)  # also shows how earlier jobs ended
        self.review = ReviewController(ws, self.workers, self.host, author)
        self.view = ImageView()
        self.tools = ToolController(self.view, self.review)
        # Three planes of the volume the current image belongs to (issue 14).
        self.volume = VolumeController(ws, self.workers, self.host.loader, author)
        self.mpr = MprView(self.volume, self.tools)
        self.layouts = LayoutHost(self.view, self.mpr)
        self.layout_actions = layout_actions(self, self.set_layout)  # for a toolbar to place
        self.addActions(list(self.layout_actions.values()))
        self.worklist = WorklistPanel()
        self.labels = LabelsPanel()
        self.models = ModelsPanel()
        self._heat_for: tuple[int, str | None] | None = None  # (image, label) of the heatmap
        self._pacs_open: PacsOpenDialog | None = None
        self._pacs_send: PacsSendDialog | None = None
        self.setCentralWidget(self.layouts)
        worklist = self._dock("Worklist", self.worklist, Qt.DockWidgetArea.LeftDockWidgetArea)
        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.addWidget(self.labels)
        side_layout.addWidget(self.models)
        review = self._dock("Review", side, Qt.DockWidgetArea.RightDockWidgetArea)
        self.resizeDocks([worklist, review], [470, 330], Qt.Orientation.Horizontal)
        self._status_widgets()
        self._menus()
        self._toolbar()
        self._shortcuts()
        self._connect()
        self._connect_volume()
        self.refresh_worklist()
        self.models.show_models(ws.models.list())
        self.host.start()
        # Activation has one owner (ws.models.activate): hear it in this process at once, and
        # poll for activations by other processes (a training job, the CLI).
        self._stop_hearing = ws.models.on_activated(
            lambda mv: self.sig_model_activated.emit(mv.name, mv.version)
        )
        self.sig_model_activated.connect(self._model_activated)
        self._activation_clock = QTimer(self)
        self._activation_clock.timeout.connect(self._poll_activations)
        self._activation_clock.start(2000)
        geometry = settings.value("geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        docks = settings.value("window_state")  # dock sizes and places, as the user left them
        if docks is not None:
            self.restoreState(docks)

    # -- layout ------------------------------------------------------------------------

    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(title)
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _status_widgets(self) -> None:
        self.device_label = QLabel("loading models...")
        self.jobs_label = QLabel("")
        self.save_label = QLabel("")
        self.cursor_label = QLabel("")
        self.truth_label = QLabel("")
        bar = self.statusBar()
        labels = (self.cursor_label, self.truth_label, self.jobs_label, self.save_label)
        for w in (*labels, self.device_label):
            bar.addPermanentWidget(w)
        self._save_clock = QTimer(self)
        self._save_clock.timeout.connect(self._show_save_state)
        self._save_clock.start(1000)

    def _menus(self) -> None:
        file = self.menuBar().addMenu("&File")
        for text, slot in (
            ("Open from PACS\u2026", self.open_from_pacs),
            ("Send to PACS\u2026", self.send_to_pacs),
        ):
            action = QAction(text, self)
            action.triggered.connect(lambda _=False, s=slot: s())
            file.addAction(action)

    def _toolbar(self) -> None:
        bar = QToolBar("Tools")
        bar.setObjectName("Tools")
        self.addToolBar(bar)
        group = QActionGroup(self)
        self.tool_actions: dict[str, QAction] = {}
        for name, key in (("brush", "B"), ("eraser", "E"), ("polygon", "P"), ("fill", "F")):
            action = QAction(name.capitalize(), self, checkable=True)
            action.setShortcut(QKeySequence(key))
            action.triggered.connect(lambda _=False, n=name: self.tools.set_tool(n))
            group.addAction(action)
            bar.addAction(action)
            self.tool_actions[name] = action
        self.tool_actions["brush"].setChecked(True)
        bar.addSeparator()
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(int(self.settings.value("opacity", 50)))
        self.opacity.setMaximumWidth(120)
        self.opacity.valueChanged.connect(self._set_opacity)
        bar.addWidget(QLabel(" Opacity "))
        bar.addWidget(self.opacity)
        self._set_opacity(self.opacity.value())
        self.contour_action = QAction("Contours", self, checkable=True)
        self.contour_action.toggled.connect(self._set_contours)
        self.compare_action = QAction("Show AI proposal", self, checkable=True)
        self.compare_action.toggled.connect(self._set_compare)
        for action in (self.contour_action, self.compare_action):
            bar.addAction(action)
        bar.addSeparator()
        for name, window in PRESETS.items():
            action = QAction(name.capitalize(), self)
            action.triggered.connect(lambda _=False, w=window: self.view.set_window(w))
            bar.addAction(action)
        bar.addSeparator()
        for text, slot in (
            ("Accept AI", self.tools.accept_proposal),
            ("Remove islands", lambda: self.tools.remove_islands(ISLAND_PIXELS)),
            ("Clear", self.tools.clear),
        ):
            action = QAction(text, self)
            action.triggered.connect(slot)
            bar.addAction(action)
        bar.addSeparator()
        retrain = QAction("Retrain...", self)
        retrain.triggered.connect(self.retrain)
        bar.addAction(retrain)
        bar.addSeparator()
        for text, status in (("Approve", "approved"), ("Reject", "rejected")):
            action = QAction(text, self)
            action.setShortcut(QKeySequence(text[0]))
            action.triggered.connect(lambda _=False, s=status: self.review.set_status(s))
            bar.addAction(action)

    def _shortcuts(self) -> None:
        def add(key: str, slot) -> None:
            action = QAction(self)
            action.setShortcut(QKeySequence(key))
            action.triggered.connect(slot)
            self.addAction(action)

        add("Ctrl+Z", self.tools.undo)
        add("Ctrl+Shift+Z", self.tools.redo)
        add("Ctrl+S", self.review.save_now)
        add("Space", lambda: self.set_overlays_visible(not self.view.mask_item.isVisible()))
        add("H", self.toggle_heatmap)
        add("N", lambda: self.step(1))
        add("Shift+N", lambda: self.step(-1))
        add("[", lambda: self.tools.change_radius(-1))
        add("]", lambda: self.tools.change_radius(1))
        add("Return", self.tools.close_polygon)
        add("Escape", self.tools.cancel_polygon)
        for k in range(1, 10):
            add(str(k), lambda _=False, v=k: self.tools.set_class(v))

    def _connect(self) -> None:
        self.worklist.sig_image_chosen.connect(self.open_image)
        self.worklist.sig_query_changed.connect(lambda _: self.refresh_worklist())
        self.review.sig_loaded.connect(self._show_review)
        self.review.sig_mask_changed.connect(self.view.mask_item.update_rect)
        self.review.sig_row_changed.connect(self._refresh_row)
        self.review.sig_save_failed.connect(self._save_failed)
        self.review.sig_saved.connect(lambda _: self._show_save_state())
        self.review.sig_error.connect(self._error)
        self.labels.sig_labels_changed.connect(self.review.set_labels)
        self.models.sig_activate.connect(self._activate_model)
        self.host.sig_ready.connect(self.device_label.setText)
        self.host.sig_error.connect(self._error)
        self.host.sig_jobs_changed.connect(
            lambda n: self.jobs_label.setText(f"AI: {n} running" if n else "")
        )
        self.view.sig_cursor.connect(self.cursor_label.setText)
        self.view.box.sig_scroll.connect(self.scroll_slices)

    # -- actions -----------------------------------------------------------------------

    def refresh_worklist(self) -> None:
        self.worklist.model.set_rows(self.ws.images(self.worklist.query()))

    def _refresh_row(self, image_id: int) -> None:
        self.worklist.model.update_row(self.ws.image(image_id))
        state = self.review.state
        if state is not None and state.image.id == image_id:  # approved or saved just now
            state.confirmed = self.ws.revisions.confirmed(image_id)
            self.truth_label.setText(state.truth)

    def open_image(self, image_id: int) -> None:
        self.settings.setValue("last_image", image_id)
        self.worklist.select(image_id)
        self.review.open_image(image_id)
        self.review.prefetch(self.worklist.following(image_id, 2))

    def step(self, delta: int) -> None:
        current = self.review.pending_id
        nxt = self.worklist.neighbour(current, delta)
        if nxt is not None and nxt != current:
            self.open_image(nxt)

    def scroll_slices(self, delta: int) -> None:
        """Mouse wheel: the neighbouring slice of the same series, whatever the worklist order."""
        state = self.review.state
        if state is None:
            return
        series = [r.id for r in self.ws.images(ImageQuery(series_uid=state.image.series_uid))]
        k = series.index(state.image.id) + delta if state.image.id in series else -1
        if 0 <= k < len(series):
            self.open_image(series[k])

    def _show_review(self, state: ReviewState, image: Image, shown: np.ndarray | None) -> None:
        same = self.view.image is not None and self.view.image.source == image.source
        self.view.set_image(image, self.view.window if same else None, keep_view=same, shown=shown)
        colours = list(state.palette.extended(256).colors)  # any class value gets a colour
        self.view.mask_item.set_mask(state.mask, colours)
        self.view.proposal_item.set_mask(state.proposal, colours)
        if self._heat_for is None or self._heat_for[0] != state.image.id:
            self.view.set_heatmap(None)
            self._heat_for = None
        self.labels.show_labels(
            self._label_names(state), state.labels, state.probabilities, state.gate
        )
        self.tools.reset()
        title = (
            f"{state.image.patient_name} | {state.image.series_description} | {state.image.path}"
        )
        self.setWindowTitle(f"medviewer: {title}")
        self.truth_label.setText(state.truth)

    def _label_names(self, state: ReviewState) -> list[str]:
        names = list(state.probabilities) + [
            k for k in state.labels if k not in state.probabilities
        ]
        if not names:
            for m in self.ws.models.list():
                if m.active and m.name in self.host.models_for(state.image.id):
                    names += [label for label in m.spec.get("labels", []) if label not in names]
        return names

    def set_overlays_visible(self, on: bool) -> None:
        self.view.mask_item.setVisible(on)
        self.view.proposal_item.setVisible(on and self.compare_action.isChecked())

    def toggle_heatmap(self) -> None:
        """H: show the Grad-CAM of the label chosen in the labels panel (computed on demand)."""
        if self.view.heat_item.isVisible() and self._heat_for is not None:
            self.view.heat_item.setVisible(False)
            return
        state = self.review.state
        if state is None:
            return
        label = self.labels.heat_label()
        if self._heat_for == (state.image.id, label):
            self.view.heat_item.setVisible(True)
        elif not self.host.heatmap(state.image.id, label, self._show_heatmap):
            self.statusBar().showMessage("no classification model for this image: no heatmap", 5000)

    def _show_heatmap(self, image_id: int, label: str, heat: np.ndarray) -> None:
        if self.review.state is None or self.review.state.image.id != image_id:
            return
        self._heat_for = (image_id, label)
        self.view.set_heatmap(heat)
        self.view.heat_item.setVisible(True)
        self.statusBar().showMessage(f"Grad-CAM: where the classifier looked for {label}", 5000)

    def _set_opacity(self, value: int) -> None:
        self.view.mask_item.setOpacity(value / 100)
        self.view.proposal_item.setOpacity(value / 100)
        self.settings.setValue("opacity", value)

    def _set_contours(self, on: bool) -> None:
        self.view.mask_item.set_contours(on)
        self.view.proposal_item.set_contours(True)

    def _set_compare(self, on: bool) -> None:
        self.view.proposal_item.set_contours(True)
        self.view.proposal_item.setVisible(on and self.view.mask_item.isVisible())

    def _activate_model(self, name: str, version: str) -> None:
        self.ws.models.activate(name, version)  # heard by _model_activated

    def _poll_activations(self) -> None:
        if self.host.runner is None:
            return  # the first load reads the active versions itself
        try:
            active = self.ws.models.active_versions()
        except Exception:  # noqa: BLE001 - a busy database: look again next time
            return
        for name, version in active.items():
            if self.host.versions.get(name) != version:
                self._model_activated(name, version)

    def _model_activated(self, name: str, version: str) -> None:
        """Whoever activated a version: show it, load it, and propose again on screen."""
        self.models.show_models(self.ws.models.list())
        if self.host.runner is None or self.host.versions.get(name) == version:
            return
        self.host.versions[name] = version  # claimed now, so the poll does not load it twice
        future = self.host.reload(name)
        if self.review.state is not None:
            image_id = self.review.state.image.id
            self.workers.bridge.watch(
                future, lambda f: self.host.propose(image_id, True, self.review._proposal_ready)
            )

    def retrain(self) -> RetrainDialog:
        """The Retrain dialog (non-modal: reviewing goes on while the model trains)."""
        self.review.save_now()  # train on what is on screen
        dialog = RetrainDialog(self.ws, self.jobs, self.job_events, self)
        dialog.show()
        self._retrain_dialog = dialog
        return dialog

    def open_from_pacs(self) -> PacsOpenDialog:
        """Open from PACS (non-modal; the worklist fills as each series is imported)."""
        if self._pacs_open is None:
            self._pacs_open = PacsOpenDialog(self.ws, self)
            self._pacs_open.sig_imported.connect(self._pacs_imported)
        else:
            self._pacs_open.picker.reload()
        self._pacs_open.show()
        self._pacs_open.raise_()
        return self._pacs_open

    def _pacs_imported(self, added: int) -> None:
        if added:
            self.refresh_worklist()

    def send_to_pacs(self) -> PacsSendDialog:
        """Send to PACS: the approved results, as they are now."""
        self.review.save_now()
        if self._pacs_send is None:
            self._pacs_send = PacsSendDialog(self.ws, self)
        else:
            self._pacs_send.picker.reload()
            self._pacs_send.refresh()
        self._pacs_send.show()
        self._pacs_send.raise_()
        return self._pacs_send

    def _connect_volume(self) -> None:
        self.volume.sig_failed.connect(self._volume_failed)
        self.volume.sig_loaded.connect(self._volume_loaded)
        self.volume.sig_save_failed.connect(self._save_failed)
        self.volume.sig_saved.connect(lambda _: self.save_label.setText("saved"))
        for pane in self.mpr.panes.values():
            pane.sig_cursor.connect(self.cursor_label.setText)

    def set_layout(self, name: str) -> None:
        """1 view ("single"), three planes ("mpr") or "2x2" of the current image's volume."""
        self.layout_actions[name].setChecked(True)
        if name == "single":
            if self.layouts.name != "single":
                self.volume.close()  # saved and waited for: the 2D view reloads the slices
                if self.review.state is not None:
                    self.open_image(self.review.state.image.id)
            self.layouts.show_layout("single")
            return
        state = self.review.state
        if state is None:
            self._volume_failed("open an image of a CT or MR series first")
            return
        if self.volume.review is None or state.image.id not in self.volume.review.image_ids:
            self.review.flush()  # the volume's masks include the 2D view's last edits
            self.volume.open(state.image.id)
            self.layouts.info.setText(f"loading the volume of {state.image.series_description}")
        slider = getattr(self, "opacity", None)
        if slider is not None:
            self.mpr.set_opacity(slider.value() / 100)
        self.layouts.show_layout(name)

    def _volume_loaded(self, review) -> None:
        shape = "x".join(str(n) for n in review.stored.shape[::-1])
        mm = " x ".join(f"{v:.2f}" for v in review.reslicer.axes.spacing[::-1])
        image = review.states[0].image
        self.layouts.info.setText(
            f"{image.patient_name}\n{image.series_description}\n{shape} voxels, {mm} mm\n\n"
            "Left: brush / eraser (Shift: crosshair); right-drag: window; wheel: slice"
        )

    def _volume_failed(self, message: str) -> None:
        self._error(f"Three planes: {message}")
        if self.layouts.name != "single":
            self.set_layout("single")

    def _show_save_state(self) -> None:
        if self.review.save_error:
            self.save_label.setText("<b style='color:#c00'>NOT SAVED</b>")
        elif self.review.session is not None and self.review.session.dirty:
            self.save_label.setText("unsaved changes")
        elif self.review.last_saved:
            self.save_label.setText(f"saved {int(time.time() - self.review.last_saved)} s ago")

    def _save_failed(self, message: str) -> None:
        self._show_save_state()
        self.statusBar().showMessage(
            f"Save failed, will retry; your edit is kept: {message}", 10000
        )

    def _error(self, message: str) -> None:
        self.statusBar().showMessage(message, 15000)
        if self.isVisible() and not self.settings.value("quiet_errors", False, type=bool):
            box = QMessageBox(QMessageBox.Icon.Warning, "medviewer", message, parent=self)
            box.setModal(False)
            box.show()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.review.flush()
        self.volume.flush()
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("window_state", self.saveState())
        self._activation_clock.stop()
        self._stop_hearing()
        for dialog in (self._pacs_open, self._pacs_send):
            if dialog is not None:
                dialog.shutdown()  # a transfer ends after its instance in flight
        self.host.close()
        self.jobs.close()  # training runs on in its own process; the next start follows it
        self.workers.shutdown()
        super().closeEvent(event)
