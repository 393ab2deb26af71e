"""Start the app: QApplication, settings, the workspace (with its one-window lock), the window."""

from __future__ import annotations

import getpass
import sys
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QApplication

from medviewer.config import default_workspace
from medviewer.workspace import Workspace


def settings() -> QSettings:
    return QSettings("medviewer", "medviewer")


def run_app(
    workspace: Path | None,
    paths: Sequence[Path] = (),
    screenshot: Path | None = None,
    device: str = "auto",
    image: int | None = None,
    layout: str = "single",
) -> int:
    """Open the workspace (the last one when not given) and show the main window.

    With `screenshot`, render the window once the first image is on screen, save it and exit.
    `layout` ("single", "mpr", "2x2") is set once that image is on screen.
    """
    app = QApplication.instance() or QApplication(sys.argv[:1])
    store = settings()
    last = str(store.value("last_workspace", "") or "")
    root = workspace or (Path(last) if last else default_workspace())
    ws = Workspace.open(root, app_lock=True)
    store.setValue("last_workspace", str(ws.root))
    if paths:
        ws.import_paths(paths)
    from medviewer.qt.main_window import MainWindow

    author = str(store.value("author", getpass.getuser()))
    window = MainWindow(ws, author, store, device)
    window.resize(1400, 900)
    window.show()
    last = store.value("last_image")
    ids = [r.id for r in window.worklist.model.rows]
    if image is not None and image in ids:
        start: int | None = image
    else:
        start = int(last) if last is not None and int(last) in ids else (ids[0] if ids else None)
        series = window.ws.image(start).series_uid if start is not None else None
        slices = [r.id for r in window.worklist.model.rows if r.series_uid == series]
        if layout != "single" and slices and start == slices[0]:
            # Three planes through the volume's middle, not its first (often empty) slice.
            start = slices[len(slices) // 2]
    if start is not None:
        window.open_image(start)  # after a crash: back at the same image, autosaves and all
        print(f"opened image {start} of {len(ids)} in {ws.root}")
    if layout != "single" or screenshot is not None:
        _when_ready(window, layout, screenshot, app)
    code = app.exec()
    ws.close()
    return code


def _when_ready(window, layout: str, path: Path | None, app: QApplication) -> None:
    """Once the image is shown: set the layout; once its planes are loaded too (or after 30
    s), grab the window, write the PNG and quit when `path` is given."""
    waited = {"ms": 0}
    asked = {"layout": layout == "single"}

    def poll() -> None:
        waited["ms"] += 100
        ready = window.review.state is not None or not window.worklist.model.rows
        if ready and not asked["layout"]:
            asked["layout"] = True
            if window.review.state is not None:
                window.set_layout(layout)
        planes = window.layouts.name == "single" or window.volume.review is not None
        if path is None:  # no screenshot: only the layout to set
            if not asked["layout"] and waited["ms"] <= 30_000:
                QTimer.singleShot(100, poll)
            return
        done = ready and asked["layout"] and planes
        asked["settled"] = asked.get("settled", -1) + 1 if done else -1
        # One more tick once the planes are in: their panes are arranged and fitted after.
        if asked["settled"] >= 1 or waited["ms"] > 30_000:
            app.processEvents()
            window.grab().save(str(path))
            print(f"wrote {path}")
            window.close()
            app.quit()
        else:
            QTimer.singleShot(100, poll)

    QTimer.singleShot(100, poll)
