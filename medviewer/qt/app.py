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
) -> int:
    """Open the workspace (the last one when not given) and show the main window.

    With `screenshot`, render the window once the first image is on screen, save it and exit.
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
    if start is not None:
        window.open_image(start)  # after a crash: back at the same image, autosaves and all
        print(f"opened image {start} of {len(ids)} in {ws.root}")
    if screenshot is not None:
        _screenshot_when_ready(window, screenshot, app)
    code = app.exec()
    ws.close()
    return code


def _screenshot_when_ready(window, path: Path, app: QApplication) -> None:
    """Grab the window once the image is shown (or after 30 s), write the PNG and quit."""
    waited = {"ms": 0}

    def poll() -> None:
        waited["ms"] += 100
        ready = window.review.state is not None or not window.worklist.model.rows
        if ready or waited["ms"] > 30_000:
            app.processEvents()
            window.grab().save(str(path))
            print(f"wrote {path}")
            window.close()
            app.quit()
        else:
            QTimer.singleShot(100, poll)

    QTimer.singleShot(100, poll)
