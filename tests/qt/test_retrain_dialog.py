"""The Retrain dialog: data summary, live progress from the job, comparison, activation."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import numpy as np

from medviewer.models.spec import ModelSpec
from medviewer.qt.dialogs.retrain import READING
from medviewer.training.jobs import JobManager
from tests.qt.test_window_reads import gui_queries  # noqa: F401 - a fixture used below

SPEC = ModelSpec.from_dict(
    {
        "name": "tiny",
        "task": "segmentation",
        "architecture": "FPN",
        "encoder": "mobilenet_v2",
        "classes": ["background", "finding"],
        "input": {"size": [64, 64]},
    }
)
START = {"epochs": 2, "train_images": 2, "val_images": 1, "negatives": 1, "device": "cpu"}
EVENTS = [
    {"event": "start", **START},
    {"event": "batch", "epoch": 1, "step": 1, "steps": 1, "loss": 0.9},
    {"event": "epoch", "epoch": 1, "epochs": 2, "train_loss": 0.9, "val_loss": 0.8,
     "val_metric": 0.4},
    {"event": "epoch", "epoch": 2, "epochs": 2, "train_loss": 0.5, "val_loss": 0.6,
     "val_metric": 0.6},
    {
        "event": "done", "version": "v2", "activated": False,
        "metrics": {"dice": {"finding": 0.61}}, "active_metrics": {"dice": {"finding": 0.42}},
    },
]  # fmt: skip


def fake_trainer(folder: Path) -> list[str]:
    """A trainer that prints the JSON-lines contract, a little slowly, and exits 0."""
    script = folder / "fake_trainer.py"
    lines = "\n".join(
        f"print({json.dumps(json.dumps(e))}, flush=True); time.sleep(0.1)" for e in EVENTS
    )
    script.write_text(f"import time\n{lines}\n")
    return [sys.executable, str(script)]


def test_retrain_dialog_end_to_end(window, qtbot, tmp_path: Path) -> None:
    from medviewer.models.versions import add_model

    ws = window.ws
    add_model(ws, SPEC, None)  # v1, active
    add_model(ws, SPEC, None, activate=False)  # v2: what the (fake) run registers
    a, b, c = (r.id for r in ws.images())
    mask = np.zeros((64, 80), np.uint8)
    mask[10:20, 10:20] = 1
    ws.revisions.save_mask(a, mask, source="human", author="dr")
    ws.revisions.save_mask(b, mask * 0, source="human", author="dr")
    ws.revisions.set_status(b, "approved", author="dr")
    window.jobs.close()
    window.jobs = JobManager(ws, command=fake_trainer(tmp_path), on_event=window.job_events)
    dialog = window.retrain()
    qtbot.waitUntil(dialog.start_button.isEnabled, timeout=10_000)  # its data read
    assert dialog.data.text().startswith("1 confirmed image(s) with a finding, 1 negative(s); 1 ")
    dialog.epochs.setValue(2)
    dialog.start()
    qtbot.waitUntil(lambda: dialog.outcome is not None, timeout=30_000)
    assert dialog.epoch_bar.value() == 2
    assert dialog.history["val metric"] == [0.4, 0.6]
    cells = {
        dialog.table.item(r, 0).text(): (
            dialog.table.item(r, 1).text(),
            dialog.table.item(r, 2).text(),
        )
        for r in range(dialog.table.rowCount())
    }
    assert cells == {"dice / finding": ("0.610", "0.420")}
    assert dialog.activate_button.isEnabled()
    dialog.activate_button.click()
    assert ws.models.active("tiny").version == "v2"
    qtbot.waitUntil(lambda: window.ws.jobs.list()[-1].state == "finished", timeout=10_000)


def test_the_dialog_reads_its_models_and_data_off_the_gui_thread(
    window,
    qtbot,
    gui_queries,  # noqa: F811
    monkeypatch,
) -> None:
    from medviewer.models.versions import add_model
    from medviewer.qt.dialogs import retrain

    add_model(window.ws, SPEC, None)  # v1, active
    server = threading.Event()  # a slow server: the read answers once this is set
    read = retrain._read
    monkeypatch.setattr(retrain, "_read", lambda ws: server.wait(10) and read(ws))
    with gui_queries() as calls:
        dialog = window.retrain()
        assert dialog.data.text() == READING and not dialog.start_button.isEnabled()
        server.set()
        qtbot.waitUntil(dialog.start_button.isEnabled, timeout=10_000)
    assert calls == []
    assert dialog.model.currentText() == "tiny"
    assert dialog.data.text().startswith("0 confirmed image(s) with a finding, 0 negative(s); ")
