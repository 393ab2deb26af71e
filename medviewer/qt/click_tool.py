"""The "AI click" tool (issue 15): left click says "this is in", right click or Ctrl+click
"this is out", for the active class; a click-guided model answers with a corrected mask.

Each click re-runs the model (`inference.guided.propose_with_clicks`, the core's crop around
the clicks) on its inference worker through `InferenceRunner.call`, never on the GUI thread. A
click that arrives while a run is in flight only marks the newest clicks as wanted: when the
run ends, one run of the newest clicks follows (no backlog). The answer is shown as a working
mask beside the edit session, not in it: Backspace removes the last click, Escape goes back to
the mask before the first click, Enter writes the answer into the session as one undo step and
saves it at once as a human revision whose summary records the clicks and the model version
(`review_state.save_mask_edit`); a human revision is training data like any correction.

Which model: the loaded models that apply to the image (`RunnerHost.models_for`, owner
`models.scope`) whose spec takes clicks (`ModelSpec.guided`); the one that made the proposal on
screen first. Classes: a multi-class model reads the active class as its own class index; a
binary model outlines one class, the active one, whatever its value in the label map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QToolBar

from medviewer.editing import label_ops
from medviewer.inference.clicks import Click
from medviewer.qt import keymap

if TYPE_CHECKING:
    from concurrent.futures import Future

    from medviewer.models.spec import ModelSpec
    from medviewer.qt.inference import RunnerHost
    from medviewer.qt.main_window import MainWindow
    from medviewer.qt.review import ReviewController
    from medviewer.qt.tools import ToolController
    from medviewer.qt.viewer.image_view import ImageView

TOOL = "click"  # ToolController's name for it, and the shortcut table's command
INSIDE, OUTSIDE = "#3fb950", "#f85149"  # the review verdicts' green and red (qt.icons)
DOT_PX = 9  # on screen, whatever the zoom
LABEL = "AI click"


@dataclass
class _Clicking:
    """One image's clicks from the first to Enter or Escape."""

    image_id: int
    session: Any  # the EditSession the answer goes into
    base: np.ndarray  # the session's mask at the first click (Escape returns to it)
    model: str
    version: str
    spec: ModelSpec
    clicks: list[Click]  # in image pixels, class = the label map's value
    answers: dict[tuple[Click, ...], np.ndarray]  # the model's label maps (its class indices)
    shown: tuple[Click, ...] = ()  # the clicks whose answer is on screen
    working: np.ndarray | None = None  # the label map on screen (None: base)


class ClickTool(QObject):
    sig_available = Signal(bool, str)  # whether a guided model applies here, and why not
    sig_message = Signal(str)  # for the status bar
    sig_answered = Signal()  # a run's answer is on screen (tests, the bench)

    def __init__(
        self,
        view: ImageView,
        review: ReviewController,
        tools: ToolController,
        host: RunnerHost,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)  # the window: gone with it, and its connections with it
        self.view = view
        self.review = review
        self.tools = tools
        self.host = host
        self.active = False
        self.state: _Clicking | None = None
        self.runs = 0  # runs started (each one forward pass on the worker)
        self._running: Future | None = None
        self._want_run = False  # clicks changed while a run was in flight
        self._accept_when_done = False  # Enter pressed while the model was still answering
        self.dots = pg.ScatterPlotItem(pxMode=True, size=DOT_PX, pen=pg.mkPen("w", width=1))
        self.dots.setZValue(10)  # above the image, the overlays and the polygon
        view.box.addItem(self.dots)
        view.scene().sigMouseClicked.connect(self._scene_click)
        tools.sig_tool_changed.connect(self._tool_changed)
        review.sig_loaded.connect(self._loaded)
        host.sig_ready.connect(self._ready)

    # -- which model -------------------------------------------------------------------

    def guided_models(self) -> list[str]:
        """Loaded click-guided models that apply to the image on screen; the one that made
        the proposal on screen first."""
        state, runner = self.review.state, self.host.runner
        if state is None or runner is None:
            return []
        names = [n for n in self.host.models_for(state.image.id) if runner.spec(n).guided]
        made = state.proposal_revision.model_name if state.proposal_revision else None
        return sorted(names, key=lambda n: n != made)

    def why_unavailable(self) -> str | None:
        if self.review.state is None:
            return "open an image first"
        if self.host.runner is None:
            return "the models are still loading"
        if not self.guided_models():
            return "no click-guided model applies to this image"
        return None

    def _ready(self, device: str) -> None:
        self.update_available()

    def update_available(self) -> None:
        reason = self.why_unavailable()
        self.sig_available.emit(reason is None, reason or "")

    # -- tool on / off -----------------------------------------------------------------

    def _tool_changed(self, tool: str) -> None:
        self.active = tool == TOOL
        if self.active:
            self.sig_message.emit(
                f"{LABEL}: left click inside, right or Ctrl+click outside; "
                "Backspace: last click off, Enter: accept, Escape: discard"
            )
        elif self.state is not None:
            self.accept(now=True)  # another tool: keep what is on screen, as brushing would

    def _loaded(self, state, image, shown) -> None:
        """A new image, or the same one again (a proposal arrived, the same session kept)."""
        c = self.state
        if c is not None:
            if state.image.id == c.image_id and self.review.session is c.session:
                self._show()  # _show_review put the session's mask back on screen
            else:
                n = len(c.clicks)
                self._end()
                self.sig_message.emit(f"{LABEL}: {n} click(s) not accepted, discarded")
        self.update_available()

    # -- clicks ------------------------------------------------------------------------

    def _scene_click(self, ev) -> None:
        buttons = (Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton)
        if not self.active or ev.button() not in buttons:
            return
        p = self.view.box.mapSceneToView(ev.scenePos())
        ctrl = bool(ev.modifiers() & Qt.KeyboardModifier.ControlModifier)
        positive = ev.button() == Qt.MouseButton.LeftButton and not ctrl
        self.add_click(math.floor(p.y()), math.floor(p.x()), positive)  # the pixel clicked

    def add_click(self, row: int, col: int, positive: bool) -> bool:
        """One click on image pixel (row, col) for the active class; False (and a message)
        when it cannot be used."""
        image = self.view.image
        session = self.review.session
        state = self.review.state
        if image is None or session is None or state is None:
            return False
        h, w = image.pixels.shape[:2]
        if not (0 <= row < h and 0 <= col < w):
            self.sig_message.emit(f"{LABEL}: click on the image ({w}x{h}), not beside it")
            return False
        c = self.state
        if c is None:
            names = self.guided_models()
            if not names:
                self.sig_message.emit(f"{LABEL}: {self.why_unavailable()}")
                return False
            runner = self.host.runner
            assert runner is not None
            name = names[0]
            c = _Clicking(
                state.image.id, session, session.mask.copy(), name,
                runner.models[name], runner.spec(name), [], {},
            )  # fmt: skip
        value = int(self.tools.value)
        problem = _class_problem(c, value)
        if problem:
            self.sig_message.emit(f"{LABEL}: {problem}")
            return False
        self.state = c
        c.clicks.append(Click(int(row), int(col), positive, value))
        self._draw_dots()
        self._run()
        return True

    def remove_last(self) -> bool:
        """Backspace: the last click off; the model answers the clicks left (none: the mask
        before the first click)."""
        c = self.state
        if c is None or not c.clicks:
            return False
        c.clicks.pop()
        self._draw_dots()
        if c.clicks:
            self._run()
        else:
            c.working, c.shown = None, ()
            self._want_run = False
            self._show()
        return True

    # -- running the model -------------------------------------------------------------

    def _run(self) -> None:
        """Run the newest clicks now, or once the run in flight ends."""
        c = self.state
        if c is None or not c.clicks:
            return
        if self._running is not None:
            self._want_run = True
            return
        runner = self.host.runner
        if runner is None or c.model not in runner.models:
            self.sig_message.emit(f"{LABEL}: model {c.model} is no longer loaded")
            return
        self._want_run = False
        wanted = tuple(c.clicks)
        if wanted in c.answers:  # answered before (Backspace back to it): shown at once
            self._answered(c, wanted)
            return
        prev = self._prev(c, wanted)
        clicks = [_model_click(k, c.spec) for k in wanted]
        image, version = self.view.image, c.version

        def run(engine) -> np.ndarray:
            # Looked up at call time: tests wrap the core function to see where it runs.
            from medviewer.inference import guided

            proposal = guided.propose_with_clicks(engine, image, version, clicks, prev)
            return proposal.mask if proposal.mask is not None else np.zeros_like(prev)

        self.runs += 1
        self._running = self.host.call(c.model, run, lambda f: self._ran(f, c, wanted))

    def _prev(self, c: _Clicking, wanted: tuple[Click, ...]) -> np.ndarray:
        """The mask the model corrects: its answer to the longest earlier prefix of these
        clicks (what the clinician saw before clicking again), else the mask at the first."""
        for n in range(len(wanted) - 1, 0, -1):
            answer = c.answers.get(wanted[:n])
            if answer is not None:
                return answer
        return _to_model(c.base, c)

    def _ran(self, future: Future, c: _Clicking, clicks: tuple[Click, ...]) -> None:
        if future is self._running:
            self._running = None
        if c is not self.state:  # discarded or accepted meanwhile
            if self._want_run:
                self._run()  # clicks of a new start waited for this run
            return
        try:
            answer = future.result()
        except Exception as e:  # noqa: BLE001 - a message; the clicks stay to retry or undo
            self._accept_when_done = False
            self.sig_message.emit(f"{LABEL}: {c.model} failed: {e}")
            return
        c.answers[clicks] = answer
        if self._want_run or clicks != tuple(c.clicks):
            self._run()  # the newest clicks
        else:
            self._answered(c, clicks)

    def _answered(self, c: _Clicking, clicks: tuple[Click, ...]) -> None:
        """The answer to the newest clicks on screen (and accepted, if Enter waited for it)."""
        c.shown, c.working = clicks, _from_model(c.base, c.answers[clicks], c)
        self._show()
        self.sig_answered.emit()
        if self._accept_when_done:
            self.accept(now=True)

    # -- showing -----------------------------------------------------------------------

    def _show(self) -> None:
        """The working mask (or the session's, when there is none) in the mask overlay."""
        state, session = self.review.state, self.review.session
        if state is None or session is None:
            return
        c = self.state
        mask = c.working if c is not None and c.working is not None else session.mask
        colours = list(state.palette.extended(256).colors)
        self.view.mask_item.set_mask(mask, colours)

    def _draw_dots(self) -> None:
        clicks = self.state.clicks if self.state is not None else []
        self.dots.setData(
            [k.col + 0.5 for k in clicks],  # pixel centres
            [k.row + 0.5 for k in clicks],
            brush=[pg.mkBrush(INSIDE if k.positive else OUTSIDE) for k in clicks],
        )

    # -- Enter / Escape ----------------------------------------------------------------

    def accept(self, now: bool = False) -> bool:
        """Enter: the answer on screen becomes the mask (one undo step), saved at once as a
        human revision recording the clicks and the model. While the model is still answering
        the newest clicks, Enter waits for that answer (`now`: take what is on screen)."""
        c = self.state
        if c is None:
            return False
        if not now and (self._running is not None or c.shown != tuple(c.clicks)):
            self._accept_when_done = True
            self.sig_message.emit(f"{LABEL}: accepting when {c.model} has answered")
            return True
        working, clicks = c.working, c.shown
        self._end()
        if working is None or not clicks:
            return True
        session = c.session
        # Only the pixels the clicks changed: whatever else happened to the session meanwhile
        # (an undo, fill between slices) stays.
        changed = working != c.base
        target = session.mask.copy()
        target[changed] = working[changed]
        rect = session.edit(lambda m, rec: label_ops.accept(m, target, rec))
        if self.review.session is session:
            self.review.sig_mask_changed.emit(rect)
        summary = {
            "clicks": [
                {"row": k.row, "col": k.col, "positive": k.positive, "class": k.class_value}
                for k in clicks
            ],
            "click_model": {"name": c.model, "version": c.version},
        }
        self.review.save_now(summary=summary)
        self.sig_message.emit(f"{LABEL}: {len(clicks)} click(s) of {c.model} {c.version} accepted")
        return True

    def discard(self) -> bool:
        """Escape: back to the mask before the first click."""
        if self.state is None:
            return False
        n = len(self.state.clicks)
        self._end()
        self.sig_message.emit(f"{LABEL}: {n} click(s) discarded")
        return True

    def _end(self) -> None:
        self.state = None
        self._want_run = self._accept_when_done = False
        self._draw_dots()
        self._show()


def _class_problem(c: _Clicking, value: int) -> str | None:
    """Why the active class cannot be clicked with this model, if it cannot."""
    if value < 1:
        return "choose a class to outline (1-9)"
    if c.spec.num_classes > 2:
        if value >= c.spec.num_classes:
            return f"class {value} is not one of {c.model}'s (1-{c.spec.num_classes - 1})"
    elif c.clicks and value != c.clicks[0].class_value:
        first = c.clicks[0].class_value
        return f"{c.model} outlines one class: Enter or Escape the clicks for class {first} first"
    return None


def _model_click(k: Click, spec: ModelSpec) -> Click:
    """A click in the model's classes: a binary model's foreground is 1."""
    return k if spec.num_classes > 2 else Click(k.row, k.col, k.positive, 1)


def _to_model(mask: np.ndarray, c: _Clicking) -> np.ndarray:
    """The label map as the model reads it: a binary model sees the clicked class as 1, a
    multi-class model its own classes (values it does not know as background)."""
    if c.spec.num_classes > 2:
        return np.where(mask < c.spec.num_classes, mask, 0).astype(np.uint8)
    return (mask == c.clicks[0].class_value).astype(np.uint8)


def _from_model(base: np.ndarray, answer: np.ndarray, c: _Clicking) -> np.ndarray:
    """The base with the clicked classes replaced by the model's answer for them; the other
    classes stay as they were, except where a clicked class now lies."""
    out = base.copy()
    values = sorted({k.class_value for k in c.clicks})
    for v in values:
        out[base == v] = 0
    for v in values:
        out[answer == (v if c.spec.num_classes > 2 else 1)] = v
    return out


def install(window: MainWindow) -> ClickTool:
    """Put the tool in the window: its action (the shortcut table's key, icon, tooltip) in the
    Tools toolbar beside the smart tools, enabled only where a guided model applies."""
    tool = ClickTool(window.view, window.review, window.tools, window.host, window)
    action = window._command(TOOL, LABEL, checkable=True)
    action.setCheckable(True)
    action.setText(LABEL)
    brush = window.tool_actions["brush"]
    if brush.actionGroup() is not None:
        brush.actionGroup().addAction(action)
    window.tool_actions[TOOL] = action
    bar = window.findChild(QToolBar, "Tools")
    trace = window.tool_actions.get("trace")
    if bar is not None:
        after = bar.actions()
        k = after.index(trace) + 1 if trace in after else len(after)
        bar.insertAction(after[k] if k < len(after) else None, action)
    window._command("click_undo").triggered.connect(lambda _=False: tool.remove_last())

    def available(ok: bool, reason: str) -> None:
        action.setEnabled(ok)
        action.setToolTip(keymap.tooltip(TOOL, LABEL if ok else f"{LABEL}: {reason}"))
        if not ok and window.tools.tool == TOOL:
            window._choose_tool("brush")

    tool.sig_available.connect(available)
    tool.sig_message.connect(window._show_measurement)
    tool.update_available()
    return tool
