"""Send to PACS: the approved results (`pacs.transfer.approved_images`) go to a node as DICOM
SEG (`pacs.transfer.send_results`), de-identified on request with the workspace's own mapping
(`export.anonymised.anonymiser_for`, as `export --anonymise`). The export and the network run
on the PACS worker thread; the summary says what was sent and what failed, and why."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from medviewer.pacs import remote
from medviewer.pacs.progress import Cancelled, Progress
from medviewer.qt.dialogs.node_picker import NodePicker
from medviewer.qt.dialogs.pacs_worker import BUSY, PacsWorker, describe
from medviewer.workspace import Workspace
from medviewer.workspace.export.anonymised import MAPPING, anonymiser_for

if TYPE_CHECKING:
    from medviewer.pacs.nodes import PacsNode
    from medviewer.pacs.transfer import Sent

IMAGE_ID = Qt.ItemDataRole.UserRole


def send_job(
    node: PacsNode,
    root: Path,
    image_ids: Sequence[int],
    anonymise: bool,
    progress: Progress,
    cancel: threading.Event,
) -> Sent:
    """The send as the PACS thread runs it, on a workspace of its own (see pacs_open)."""
    from medviewer.pacs import transfer

    with Workspace.open(root) as ws:
        anonymiser = anonymiser_for(root) if anonymise else None
        return transfer.send_results(
            ws,
            remote.connect(node),
            image_ids,
            anonymiser=anonymiser,
            progress=progress,
            cancel=cancel,
        )


class PacsSendDialog(QDialog):
    def __init__(self, ws: Workspace, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Send to PACS")
        self.ws = ws
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.worker = PacsWorker(self)
        self.picker = NodePicker(self.worker, self.say)
        self.count = QLabel("")
        self.images = QListWidget()
        self.anonymise = QCheckBox("Anonymise (DICOM PS3.15 basic profile)")
        self.anonymise.setToolTip(
            f"Pseudonyms, shifted dates and new UIDs; the mapping that re-identifies them stays "
            f"here, at {ws.root / MAPPING}, reused by every export and send"
        )
        self.send_button = QPushButton("Send")
        self.send_button.setDefault(True)
        self.send_button.clicked.connect(self.send)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.bar = QProgressBar()
        self.summary = QPlainTextEdit()
        self.summary.setReadOnly(True)
        self.summary.setMaximumBlockCount(2000)
        buttons = QHBoxLayout()
        for b in (self.send_button, self.cancel_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addWidget(self.picker)
        layout.addWidget(self.count)
        layout.addWidget(self.images, 1)
        layout.addWidget(self.anonymise)
        layout.addWidget(self.bar)
        layout.addLayout(buttons)
        layout.addWidget(self.summary, 1)
        layout.addWidget(self.status)
        self.worker.sig_progress.connect(self._progress)
        self.worker.sig_busy.connect(lambda _busy: self._enable())
        self.resize(700, 600)
        self.refresh()

    def say(self, text: str) -> None:
        self.status.setText(text)

    def _enable(self) -> None:
        busy = self.worker.busy
        for w in (self.send_button, self.picker.test_button, self.anonymise, self.images):
            w.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)

    def refresh(self) -> None:
        """The approved images now (each checked: unchecked ones stay here)."""
        if self.worker.busy:
            return
        from medviewer.pacs.transfer import approved_images

        ids = approved_images(self.ws)
        self.images.clear()
        for image_id in ids:
            row = self.ws.image(image_id)
            where = " | ".join(
                x
                for x in (
                    row.patient_name or row.patient_id,
                    row.study_description or row.study_uid[-12:],
                    row.series_description or row.series_uid[-12:],
                    f"image {row.position + 1}",
                )
                if x
            )
            item = QListWidgetItem(f"{image_id}: {where}")
            item.setData(IMAGE_ID, image_id)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked)
            self.images.addItem(item)
        self.count.setText(f"{len(ids)} approved result(s)")
        self._enable()

    def chosen(self) -> list[int]:
        items = (self.images.item(k) for k in range(self.images.count()))
        return [i.data(IMAGE_ID) for i in items if i.checkState() == Qt.CheckState.Checked]

    def send(self) -> None:
        node, ids = self.picker.node(), self.chosen()
        if node is None:
            return
        if not ids:
            self.say("no approved result chosen: approve an image (A) or check one above")
            return
        self.bar.setRange(0, 0)
        job = partial(
            send_job, node, self.ws.root, ids, self.anonymise.isChecked(), self.worker.progress
        )
        started = self.worker.run(job, lambda sent: self._sent(node, sent), self._send_failed)
        self.say(f"sending {len(ids)} result(s) to {node.name}..." if started else BUSY)

    def _progress(self, done: int, total: int | None) -> None:
        self.bar.setRange(0, total or 0)
        self.bar.setValue(done)
        self.bar.setFormat(f"{done} of {total} objects" if total else f"{done} objects")

    def _sent(self, node: PacsNode, sent: Sent) -> None:
        self.bar.setRange(0, 1)
        self.bar.setValue(1)
        objects = len(sent.transfer.sop_uids) or len(sent.transfer.files)
        failed = len(sent.transfer.failed) + len(sent.failed)
        headline = f"sent {objects} object(s) for {len(sent.image_ids)} image(s) to {node.name}" + (
            f"; {failed} failed (see the summary)" if failed else ""
        )
        lines = [headline]
        lines += [f"failed: {f}" for f in sent.transfer.failed]
        lines += [f"not exported: {f}" for f in sent.failed]
        lines += [f"note: {n}" for n in (*sent.transfer.notes, *sent.notes)]
        self.summary.setPlainText("\n".join(lines))
        self.say(headline)

    def _send_failed(self, error: BaseException) -> None:
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        if isinstance(error, Cancelled):
            self.say(f"cancelled: {error}")
        else:
            self.say(describe(error))

    def cancel(self) -> None:
        if self.worker.busy:
            self.worker.stop()
            self.say("cancelling after the object in flight...")

    def reject(self) -> None:
        """Closing the dialog (Esc, the window's close) cancels what runs; nothing waits."""
        self.worker.stop()
        super().reject()

    def shutdown(self) -> None:
        self.worker.shutdown()
