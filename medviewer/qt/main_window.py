"""The main window: worklist | image view | labels and models, toolbar, shortcuts, status bar."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QSettings, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QSlider,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from medviewer.imaging.display import PRESETS
from medviewer.qt import click_tool, icons, keymap, team, theme
from medviewer.qt.dialogs.cheat_sheet import CheatSheet
from medviewer.qt.dialogs.pacs_open import PacsOpenDialog
from medviewer.qt.dialogs.pacs_send import PacsSendDialog
from medviewer.qt.dialogs.retrain import JobEvents, RetrainDialog
from medviewer.qt.inference import RunnerHost
from medviewer.qt.kept_measures import MeasureKeeper
from medviewer.qt.panels.class_palette import ClassPalette
from medviewer.qt.panels.labels import LabelsPanel
from medviewer.qt.panels.models import ModelsPanel
from medviewer.qt.panels.worklist import WorklistPanel
from medviewer.qt.review import ReviewController
from medviewer.qt.series_fill import SeriesFill
from medviewer.qt.tools import TOOLS, ToolController
from medviewer.qt.viewer.corners import CornerAnnotations, corner_info
from medviewer.qt.viewer.image_view import ImageView
from medviewer.qt.viewer.layouts import LayoutHost, layout_actions
from medviewer.qt.viewer.mpr_view import MprView
from medviewer.qt.volume import VolumeController
from medviewer.qt.window_reads import WindowReads
from medviewer.qt.workers import Workers
from medviewer.training.jobs import JobManager

ISLAND_PIXELS = 20  # "remove small islands": regions smaller than this many pixels

if TYPE_CHECKING:
    from medviewer.imaging import Image
    from medviewer.workspace import ImageRow, Workspace
    from medviewer.workspace.model_table import ModelVersion
    from medviewer.workspace.review_state import ReviewState
    from medviewer.workspace.revisions import Confirmed


class MainWindow(QMainWindow):
    # A version became active (name, version); emitted from any thread, handled on the GUI's.
    sig_model_activated = Signal(str, str)

    def __init__(
        self, ws: Workspace, author: str, settings: QSettings, device: str = "auto"
    ) -> None:
        super().__init__()
        self.ws = ws
        self.settings = settings
        theme.apply(theme.saved(settings))  # first: icons are drawn in its colours
        self.setWindowTitle(f"medviewer: {ws.root}")
        self.workers = Workers()
        self.host = RunnerHost(ws, self.workers, device)
        self.job_events = JobEvents()
        self.jobs = JobManager(ws, on_event=self.job_events)  # also shows how earlier jobs ended
        self.review = ReviewController(ws, self.workers, self.host, author)
        self.reads = WindowReads(ws, self)  # the window's own queries, off the GUI thread
        self._place = (0, 0, 0, "")  # the last image's place in its series, as read
        self._series: list[int] = []  # that image's series, in order: where the wheel goes
        self._scroll = 0  # wheel steps that came before the series was read
        self._model_list: list[ModelVersion] = []  # as last read, for the labels panel
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
        self.class_palette = ClassPalette()
        self.series_fill = SeriesFill(self.review, self.view)
        self.corners = CornerAnnotations(self.view.viewport())
        self._cheat_sheet: CheatSheet | None = None
        self._heat_for: tuple[int, str | None] | None = None  # (image, label) of the heatmap
        self._pacs_open: PacsOpenDialog | None = None
        self._pacs_send: PacsSendDialog | None = None
        self.setCentralWidget(self.layouts)
        worklist = self._dock("Worklist", self.worklist, Qt.DockWidgetArea.LeftDockWidgetArea)
        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.addWidget(self.class_palette)
        side_layout.addWidget(self.labels)
        side_layout.addWidget(self.models)
        review = self._dock("Review", side, Qt.DockWidgetArea.RightDockWidgetArea)
        self.resizeDocks([worklist, review], [470, 330], Qt.Orientation.Horizontal)
        self._status_widgets()
        self._menus()
        self._toolbar()
        self._shortcuts()
        self._connect()
        self._connect_look()
        self._connect_volume()
        self.measures = MeasureKeeper.install(self)  # kept rulers and ROIs, class sizes
        # After _connect: its view of a reloaded image comes after the window's (issue 15).
        self.click_tool = click_tool.install(self)
        self.team = team.install(self)  # leases and live updates on a PostgreSQL workspace
        self.refresh_worklist()
        self._show_models(ws.models.list())
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
        self.actions_by_command: dict[str, QAction] = {}
        file = self.menuBar().addMenu("&File")
        for text, slot, command in (
            ("Open from PACS\u2026", self.open_from_pacs, "pacs_open"),
            ("Send to PACS\u2026", self.send_to_pacs, "pacs_send"),
        ):
            action = QAction(text, self)
            icons.attach(action, command)
            action.triggered.connect(lambda _=False, s=slot: s())
            file.addAction(action)
        file.addSeparator()
        file.addAction(self._command("save", "Save now"))
        edit = self.menuBar().addMenu("&Edit")
        for command in ("undo", "redo", "fill_between"):
            edit.addAction(self._command(command))
        view = self.menuBar().addMenu("&View")
        themes = view.addMenu("Theme")
        themes.setIcon(icons.icon("theme"))
        group = QActionGroup(self)
        self.theme_actions: dict[str, QAction] = {}
        for name in theme.THEMES:
            action = QAction(name.capitalize(), self, checkable=True)
            action.triggered.connect(lambda _=False, n=name: self.set_theme(n))
            group.addAction(action)
            themes.addAction(action)
            self.theme_actions[name] = action
        self.theme_actions[theme.saved(self.settings)].setChecked(True)
        view.addSeparator()
        self._view_menu = view
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction(self._command("cheat_sheet", "Keyboard and mouse\u2026"))

    def _toolbar(self) -> None:
        """Three toolbars, as reading-room viewers group them: tools, view, review."""

        def toolbar(title: str, style: Qt.ToolButtonStyle) -> QToolBar:
            bar = QToolBar(title)
            bar.setObjectName(title)
            bar.setIconSize(QSize(20, 20))
            bar.setToolButtonStyle(style)
            self.addToolBar(bar)
            return bar

        icon_only = Qt.ToolButtonStyle.ToolButtonIconOnly
        tools = toolbar("Tools", icon_only)
        group = QActionGroup(self)
        self.tool_actions: dict[str, QAction] = {}
        for names in (("brush", "eraser", "polygon", "fill"), ("threshold", "grow", "trace")):
            for name in names:
                action = self._command(name, name.capitalize(), checkable=True)
                group.addAction(action)
                tools.addAction(action)
                self.tool_actions[name] = action
            tools.addSeparator()
        self.tolerance = QSlider(Qt.Orientation.Horizontal)
        self.tolerance.setRange(1, 50)
        self.tolerance.setValue(int(self.settings.value("grow_tolerance", self.tools.tolerance)))
        self.tolerance.setMaximumWidth(90)
        self.tolerance.setToolTip(
            "Region growing tolerance: how far from the seed's intensity a pixel may lie, in "
            "percent of the window width"
        )
        self.tolerance.valueChanged.connect(self._set_tolerance)
        self._set_tolerance(self.tolerance.value())
        tools.addWidget(self.tolerance)
        tools.addSeparator()
        for name in ("ruler", "roi"):
            action = self._command(name, name.capitalize(), checkable=True)
            group.addAction(action)
            tools.addAction(action)
            self.tool_actions[name] = action
        tools.addSeparator()
        tools.addAction(self._command("undo", "Undo"))
        tools.addAction(self._command("redo", "Redo"))
        self.tool_actions["brush"].setChecked(True)

        view = toolbar("View", icon_only)
        presets = QToolButton()
        presets.setIcon(icons.icon("window"))
        presets.setToolTip("Window presets (right-drag adjusts the window)")
        presets.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(presets)
        for name, window in PRESETS.items():
            text = f"{name.capitalize()}  (W {window.width:.0f} L {window.center:.0f})"
            action = menu.addAction(text)
            action.triggered.connect(lambda _=False, w=window: self.view.set_window(w))
        presets.setMenu(menu)
        view.addWidget(presets)
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(int(self.settings.value("opacity", 50)))
        self.opacity.setMaximumWidth(90)
        self.opacity.setToolTip("Mask opacity")
        self.opacity.valueChanged.connect(self._set_opacity)
        view.addWidget(self.opacity)
        self._set_opacity(self.opacity.value())
        self.contour_action = self._command("contours", "Contours", checkable=True)
        self.contour_action.toggled.connect(self._set_contours)
        self.compare_action = self._command("compare", "Show AI proposal", checkable=True)
        self.compare_action.toggled.connect(self._set_compare)
        for command in ("overlays", "heatmap"):
            view.addAction(self._command(command))
        view.addAction(self.contour_action)
        view.addAction(self.compare_action)
        view.addAction(self._command("reset_view", "Fit"))
        layouts = getattr(self, "layout_actions", None)  # the three-plane layouts, if built
        if layouts:
            view.addSeparator()
            for name, action in layouts.items():
                keymap.bind(action, f"layout_{name}")  # the keys of the one table
                self.actions_by_command[f"layout_{name}"] = action
                view.addAction(action)
        for action in view.actions():
            if not action.isSeparator() and action.text():  # not the toolbar's widgets
                self._view_menu.addAction(action)

        review = toolbar("Review", icon_only)
        for text, slot, command in (
            ("Accept AI", self.tools.accept_proposal, "accept_ai"),
            ("Islands", lambda: self.tools.remove_islands(ISLAND_PIXELS), "islands"),
            ("Clear", self.tools.clear, "clear"),
        ):
            action = QAction(text, self)
            icons.attach(action, command)
            action.setToolTip(
                {
                    "accept_ai": "Accept the AI proposal as your mask",
                    "islands": f"Remove islands smaller than {ISLAND_PIXELS} pixels",
                    "clear": "Clear the mask",
                }[command]
            )
            action.triggered.connect(slot)
            review.addAction(action)
        review.addAction(self._command("fill_between", "Fill between"))
        review.addSeparator()
        for command in ("approve", "reject"):  # the verdicts: named, not only drawn
            action = self._command(command, command.capitalize())
            review.addAction(action)
            button = review.widgetForAction(action)
            if isinstance(button, QToolButton):
                button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        review.addSeparator()
        retrain = QAction("Retrain\u2026", self)
        icons.attach(retrain, "retrain")
        retrain.setToolTip("Train a new model version on the confirmed masks")
        retrain.triggered.connect(self.retrain)
        review.addAction(retrain)
        self.tool_label = QLabel("")
        self.measure_label = QLabel("")
        self.statusBar().insertPermanentWidget(0, self.tool_label)
        self.statusBar().insertPermanentWidget(1, self.measure_label)

    def _set_tolerance(self, value: int) -> None:
        self.tools.set_tolerance(value)
        self.settings.setValue("grow_tolerance", value)

    def _shortcuts(self) -> None:
        """Every key of the one table (qt/keymap.py) bound; the toolbars made most already."""
        for s in keymap.SHORTCUTS:
            if s.command == "class":
                for key in s.keys:
                    action = QAction(self)
                    action.setShortcut(QKeySequence(key))
                    action.triggered.connect(lambda _=False, v=int(key): self.tools.set_class(v))
                    self.addAction(action)
            else:
                self._command(s.command)

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
        self.reads.sig_row.connect(self._row_read)  # methods: gone with the window
        self.reads.sig_place.connect(self._place_read)
        self.reads.sig_models.connect(self._show_models)
        self.reads.sig_active.connect(self._active_read)
        self.host.sig_ready.connect(self._models_loaded)
        self.reads.sig_refused.connect(self._error)
        self.reads.sig_error.connect(self._read_failed)
        self.host.sig_ready.connect(self.device_label.setText)
        self.host.sig_error.connect(self._error)
        self.host.sig_jobs_changed.connect(self._show_jobs)  # a method: gone with the window
        self.view.sig_cursor.connect(self.cursor_label.setText)
        self.view.box.sig_scroll.connect(self.scroll_slices)

    # -- actions -----------------------------------------------------------------------

    def _show_jobs(self, n: int) -> None:
        self.jobs_label.setText(f"AI: {n} running" if n else "")

    def refresh_worklist(self) -> None:
        self.worklist.model.set_rows(self.ws.images(self.worklist.query()))

    def _refresh_row(self, image_id: int) -> None:
        state = self.review.state
        self.reads.row(image_id, confirmed=state is not None and state.image.id == image_id)

    def _row_read(self, row: ImageRow, with_truth: bool, confirmed: Confirmed | None) -> None:
        self.worklist.model.update_row(row)
        state = self.review.state
        if with_truth and state is not None and state.image.id == row.id:  # approved or saved
            state.confirmed = confirmed
            self.truth_label.setText(state.truth)

    def _read_failed(self, message: str) -> None:
        self.statusBar().showMessage(message, 10000)

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
        if self._place[0] != state.image.id:  # its series is being read: scrolled once it is
            self._scroll += delta
            return
        series = self._series
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
            for m in self._model_list:
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
        self.reads.activate(name, version)  # heard by _model_activated; a refusal by _error

    def _poll_activations(self) -> None:
        # The model list always (a worker's new version); activations once the runner is up
        # (_active_read: its first load reads the active versions itself).
        self.reads.active_versions()

    def _active_read(self, active: dict[str, str]) -> None:
        if self.host.runner is None:
            return
        for name, version in active.items():
            if self.host.versions.get(name) != version:
                self._model_activated(name, version)

    def _model_activated(self, name: str, version: str) -> None:
        """Whoever activated a version: show it, load it, and propose again on screen."""
        self.reads.models()  # shown when read
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

    # -- the look: palette, corners, theme, cheat sheet --------------------------------

    def _command(self, command: str, text: str | None = None, checkable: bool = False) -> QAction:
        """The window's one action for a command of the shortcut table (qt/keymap.py): made on
        first use, with its keys, icon and tooltip; toolbars and menus share it."""
        action = self.actions_by_command.get(command)
        if action is None:
            action = keymap.action(self, command, self._slots().get(command), text, checkable)
            self.addAction(action)  # its keys work whether or not a toolbar shows it
            self.actions_by_command[command] = action
        return action

    def _slots(self) -> dict[str, Callable[[], object]]:
        return {
            **{t: (lambda t=t: self._choose_tool(t)) for t in TOOLS},
            "smaller": lambda: self.tools.change_radius(-1),
            "larger": lambda: self.tools.change_radius(1),
            "close_polygon": self._return_key,
            "cancel": self._escape_key,
            "undo": self._undo,
            "redo": self.tools.redo,
            "fill_between": self.series_fill.preview,
            "save": self.review.save_now,
            "overlays": lambda: self.set_overlays_visible(not self.view.mask_item.isVisible()),
            "heatmap": self.toggle_heatmap,
            "reset_view": lambda: self.view.box.autoRange(padding=0, items=[self.view.image_item]),
            "cheat_sheet": self.show_cheat_sheet,
            "next_slice": lambda: self.scroll_slices(1),
            "previous_slice": lambda: self.scroll_slices(-1),
            "next": lambda: self.step(1),
            "previous": lambda: self.step(-1),
            "approve": lambda: self.review.set_status("approved"),
            "reject": lambda: self.review.set_status("rejected"),
        }

    def _choose_tool(self, tool: str) -> None:
        self.tools.set_tool(tool)
        self.tool_actions[tool].setChecked(True)

    def _return_key(self) -> None:
        if not self.series_fill.accept() and not self.click_tool.accept():
            self.tools.close_polygon()

    def _escape_key(self) -> None:
        if not self.series_fill.discard() and not self.click_tool.discard():
            self.tools.cancel_polygon()

    def _undo(self) -> None:
        if not self.series_fill.undo():
            self.tools.undo()

    def set_theme(self, name: str) -> None:
        """Dark (default) or light, app-wide; remembered in the settings."""
        theme.apply(name)
        self.settings.setValue(theme.SETTING, name)
        self.theme_actions[name].setChecked(True)
        icons.refresh(self)

    def show_cheat_sheet(self) -> CheatSheet:
        """F1: every shortcut of the table, and what the mouse does."""
        if self._cheat_sheet is None:
            self._cheat_sheet = CheatSheet(self)
        self._cheat_sheet.show()
        self._cheat_sheet.raise_()
        return self._cheat_sheet

    def _connect_look(self) -> None:
        """Palette, corners, brush size and measurements follow what is on screen."""
        self.tools.sig_class_changed.connect(self.class_palette.set_active)
        self.class_palette.sig_class_chosen.connect(self.tools.set_class)
        self.tools.sig_status.connect(self.tool_label.setText)
        self.tools.sig_measured.connect(self._show_measurement)
        self.series_fill.sig_message.connect(self._show_measurement)
        self.review.sig_loaded.connect(self._update_look)
        self.view.sig_window_changed.connect(self.corners.set_window)
        self.view.box.sigRangeChanged.connect(lambda *_: self._update_zoom())
        self.worklist.model.models_for = self.host.models_known  # no query: what was read
        self.worklist.model.ask_models = self.host.read_scope  # the rows drawn, in one read
        self.host.sig_scope_read.connect(self.worklist.model.models_read)
        self.host.sig_ready.connect(lambda _: self.worklist.model.forget_models())
        self.tool_label.setText(self.tools.status_text())

    def _show_measurement(self, text: str) -> None:
        self.measure_label.setText(text)
        self.statusBar().showMessage(text, 8000)

    def _update_look(self, state: ReviewState, image: Image, shown: np.ndarray | None) -> None:
        self.class_palette.show_palette(state.palette)
        self.class_palette.set_active(self.tools.value)
        # This image's patient at once; its place in the series and study date once read
        # (never the previous image's beside this one's name).
        row = state.image
        image_id, k, n, study_date = self._place
        if image_id != row.id:  # the same image shown again (a proposal) keeps its place
            k, n, study_date = 0, 0, ""
        self.corners.set_info(corner_info(row, k, n, study_date, f"{row.columns}x{row.rows}"))
        self.reads.place(row)
        self.corners.set_window(self.view.window)
        self._update_zoom()
        self.tool_label.setText(self.tools.status_text())

    def _place_read(self, image_id: int, k: int, study_date: str, series: list[int]) -> None:
        state = self.review.state
        if state is None or state.image.id != image_id:
            return  # the clinician moved on
        n = len(series)
        self._place, self._series = (image_id, k, n, study_date), series
        row = state.image
        self.corners.set_info(corner_info(row, k, n, study_date, f"{row.columns}x{row.rows}"))
        if self._scroll:
            delta, self._scroll = self._scroll, 0
            self.scroll_slices(delta)

    def _models_loaded(self, _device: str) -> None:
        self.reads.models()  # the runner (re)loaded: a model added meanwhile is listed too

    def _show_models(self, versions: list[ModelVersion]) -> None:
        self._model_list = versions
        self.models.show_models(versions)

    def _update_zoom(self) -> None:
        if self.view.image is None:
            return
        px = self.view.box.viewPixelSize()[0]  # image pixels per screen pixel
        self.corners.set_zoom(1.0 / px if px > 0 else None)

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
        self.reads.close()
        if self.team is not None:
            self.team.close()  # the lease released: others stop seeing this window
        for dialog in (self._pacs_open, self._pacs_send):
            if dialog is not None:
                dialog.shutdown()  # a transfer ends after its instance in flight
        self.host.close()
        self.jobs.close()  # training runs on in its own process; the next start follows it
        self.workers.shutdown()
        super().closeEvent(event)
