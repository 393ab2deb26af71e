"""Open from PACS: search a node's studies, open one to see its series, and retrieve a study or
one series into the workspace (`pacs.transfer.retrieve_into`); the main window's worklist
fills as each series is imported. The network and the import run on the PACS worker thread."""

from __future__ import annotations

import threading
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from medviewer.pacs import remote
from medviewer.pacs.errors import PacsError
from medviewer.pacs.progress import Cancelled, Progress
from medviewer.pacs.query import SeriesRecord, StudyQuery, StudyRecord, date_range
from medviewer.qt.dialogs.node_picker import NodePicker
from medviewer.qt.dialogs.pacs_worker import BUSY, PacsWorker, describe
from medviewer.workspace import Workspace

if TYPE_CHECKING:
    from collections.abc import Callable

    from medviewer.pacs.nodes import PacsNode
    from medviewer.pacs.transfer import Retrieved

COLUMNS = (
    "Patient ID", "Patient name", "Study date", "Modalities", "Description", "Series / images",
)  # fmt: skip
MODALITIES = ("", "CT", "MR", "CR", "DX", "US", "PT", "NM", "MG", "XA", "RF", "OT")
LIMIT = 200  # studies shown per search; more asks for a narrower search
STUDY_UID = Qt.ItemDataRole.UserRole
SERIES_UID = Qt.ItemDataRole.UserRole + 1


def retrieve_job(
    node: PacsNode,
    root: Path,
    study_uid: str,
    series_uid: str | None,
    progress: Progress,
    imported: Callable[[int], None],
    cancel: threading.Event,
) -> Retrieved:
    """The retrieve as the PACS thread runs it, on a workspace of its own: the window's may
    close (closing its connections) while the instance in flight still arrives."""
    from medviewer.pacs import transfer

    with Workspace.open(root) as ws:
        return transfer.retrieve_into(
            ws,
            remote.connect(node),
            study_uid,
            series_uid,
            progress=progress,
            cancel=cancel,
            on_imported=imported,
        )


def _count(value: int | None) -> str:
    return "" if value is None else str(value)


class PacsOpenDialog(QDialog):
    sig_imported = Signal(int)  # new images now in the workspace (emitted on the PACS thread)

    def __init__(self, ws: Workspace, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Open from PACS")
        self.root = ws.root
        self.added = 0  # new images of the running retrieve
        self._series_shown: set[str] = set()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.worker = PacsWorker(self)
        self.picker = NodePicker(self.worker, self.say)
        self.patient_id = QLineEdit()
        self.patient_name = QLineEdit()
        self.patient_name.setPlaceholderText("Family^Given, or Family*")
        self.date_from = QLineEdit()
        self.date_to = QLineEdit()
        for field in (self.date_from, self.date_to):
            field.setPlaceholderText("YYYYMMDD")
        self.modality = QComboBox()
        self.modality.setEditable(True)
        self.modality.addItems(MODALITIES)
        self.accession = QLineEdit()
        self.search_button = QPushButton("Search")
        self.search_button.setDefault(True)
        self.search_button.clicked.connect(self.search)
        form = QFormLayout()
        form.addRow("Patient ID", self.patient_id)
        form.addRow("Patient name", self.patient_name)
        dates = QHBoxLayout()
        for text, field in (("from", self.date_from), ("to", self.date_to)):
            dates.addWidget(QLabel(text))
            dates.addWidget(field)
        form.addRow("Study date", dates)
        form.addRow("Modality", self.modality)
        form.addRow("Accession", self.accession)
        self.results = QTreeWidget()
        self.results.setColumnCount(len(COLUMNS))
        self.results.setHeaderLabels(list(COLUMNS))
        self.results.header().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.results.itemExpanded.connect(self._expanded)
        self.results.itemSelectionChanged.connect(self._enable)
        self.retrieve_button = QPushButton("Retrieve")
        self.retrieve_button.clicked.connect(self.retrieve)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.bar = QProgressBar()
        buttons = QHBoxLayout()
        for w in (self.search_button, self.retrieve_button, self.cancel_button):
            buttons.addWidget(w)
        layout = QVBoxLayout(self)
        layout.addWidget(self.picker)
        layout.addLayout(form)
        layout.addWidget(self.results, 1)
        layout.addWidget(self.bar)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        self.worker.sig_progress.connect(self._progress)
        self.worker.sig_busy.connect(lambda _busy: self._enable())
        self.sig_imported.connect(self._imported)
        self.resize(900, 600)
        self._enable()

    # -- status --------------------------------------------------------------------------

    def say(self, text: str) -> None:
        self.status.setText(text)

    def _enable(self) -> None:
        busy = self.worker.busy
        for b in (self.search_button, self.picker.test_button):
            b.setEnabled(not busy)
        self.retrieve_button.setEnabled(not busy and self.chosen() is not None)
        self.cancel_button.setEnabled(busy)

    # -- search --------------------------------------------------------------------------

    def query(self) -> StudyQuery:
        """The filters as typed; PacsError for a date that is not YYYYMMDD."""
        start, end = self.date_from.text().strip(), self.date_to.text().strip()

        def text(value: str) -> str | None:
            return value.strip() or None

        return StudyQuery(
            patient_id=text(self.patient_id.text()),
            patient_name=text(self.patient_name.text()),
            dates=date_range(f"{start}-{end}") if start or end else None,
            modality=text(self.modality.currentText()),
            accession=text(self.accession.text()),
        )

    def search(self) -> None:
        node = self.picker.node()
        if node is None:
            return
        try:
            query = self.query()
        except PacsError as e:
            self.say(str(e))
            return
        started = self.worker.run(
            lambda _cancel: remote.connect(node).find_studies(query, limit=LIMIT),
            lambda studies: self._show_studies(node, studies),
            lambda e: self.say(describe(e)),
        )
        self.say(f"searching {node.name}..." if started else BUSY)

    def _show_studies(self, node: PacsNode, studies: list[StudyRecord]) -> None:
        self.results.clear()
        self._series_shown.clear()
        for s in sorted(studies, key=lambda s: (s.patient_id, s.study_date, s.study_uid)):
            counts = f"{_count(s.series)} / {_count(s.instances)}"
            item = QTreeWidgetItem(
                [s.patient_id, s.patient_name, s.study_date, ", ".join(s.modalities),
                 s.description, counts]
            )  # fmt: skip
            item.setData(0, STUDY_UID, s.study_uid)
            item.setToolTip(0, f"Study Instance UID {s.study_uid}; accession {s.accession}")
            item.setChildIndicatorPolicy(QTreeWidgetItem.ChildIndicatorPolicy.ShowIndicator)
            self.results.addTopLevelItem(item)
        more = f" (the first {LIMIT}: narrow the search)" if len(studies) >= LIMIT else ""
        self.say(f"{len(studies)} stud{'y' if len(studies) == 1 else 'ies'} on {node.name}{more}")
        self._enable()

    def _expanded(self, item: QTreeWidgetItem) -> None:
        """A study opened: its series, asked for once."""
        study_uid = item.data(0, STUDY_UID)
        if item.parent() is not None or study_uid in self._series_shown:
            return
        node = self.picker.node()
        if node is None:
            return
        started = self.worker.run(
            lambda _cancel: remote.connect(node).find_series(study_uid),
            lambda series: self._show_series(item, series),
            lambda e: self.say(describe(e)),
        )
        if not started:
            item.setExpanded(False)
        self.say(f"asking {node.name} for the study's series..." if started else BUSY)

    def _show_series(self, item: QTreeWidgetItem, series: list[SeriesRecord]) -> None:
        self._series_shown.add(item.data(0, STUDY_UID))
        for s in sorted(series, key=lambda s: (s.number.zfill(8), s.series_uid)):
            name = " ".join(x for x in (f"#{s.number}" if s.number else "", s.description) if x)
            child = QTreeWidgetItem(["", "", "", s.modality, name, _count(s.instances)])
            child.setData(0, STUDY_UID, s.study_uid)
            child.setData(0, SERIES_UID, s.series_uid)
            child.setToolTip(4, f"Series Instance UID {s.series_uid}")
            item.addChild(child)
        if not series:
            item.setChildIndicatorPolicy(
                QTreeWidgetItem.ChildIndicatorPolicy.DontShowIndicatorWhenChildless
            )
        self.say(f"{len(series)} series in the study")

    # -- retrieve ------------------------------------------------------------------------

    def chosen(self) -> tuple[str, str | None] | None:
        """(study UID, series UID or None for the whole study) of the selected row."""
        items = self.results.selectedItems()
        if not items:
            return None
        return items[0].data(0, STUDY_UID), items[0].data(0, SERIES_UID)

    def retrieve(self) -> None:
        node, chosen = self.picker.node(), self.chosen()
        if node is None or chosen is None:
            if chosen is None:
                self.say("choose a study, or a series of an opened study, first")
            return
        study_uid, series_uid = chosen
        self.added = 0
        self.bar.setRange(0, 0)  # busy until the first instance says how many
        job = partial(
            retrieve_job, node, self.root, study_uid, series_uid, self.worker.progress,
            self.sig_imported.emit,
        )  # fmt: skip
        started = self.worker.run(job, self._retrieved, self._retrieve_failed)
        what = "the series" if series_uid else "the study"
        self.say(f"retrieving {what} from {node.name}..." if started else BUSY)

    def _progress(self, done: int, total: int | None) -> None:
        self.bar.setRange(0, total or 0)
        self.bar.setValue(done)
        self.bar.setFormat(f"{done} of {total} instances" if total else f"{done} instances")

    def _imported(self, added: int) -> None:
        self.added += added
        self.say(f"retrieving: {self.added} new image(s) in the worklist so far")

    def _retrieved(self, r: Retrieved) -> None:
        self.bar.setRange(0, 1)
        self.bar.setValue(0 if r.cancelled else 1)
        text = (
            f"{'cancelled; ' if r.cancelled else ''}retrieved {len(r.transfer.files)} "
            f"instance(s): {r.added} new image(s) in the worklist, {r.already} already there"
        )
        if r.transfer.failed:
            text += f"; {len(r.transfer.failed)} failed: " + "; ".join(r.transfer.failed[:3])
        self.say(text)

    def _retrieve_failed(self, error: BaseException) -> None:
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        if isinstance(error, Cancelled):  # retrieve_into returns `cancelled`; a protocol raises
            self.say(f"cancelled; the {self.added} new image(s) imported so far are kept")
        else:
            self.say(describe(error))

    # -- cancel and close ----------------------------------------------------------------

    def cancel(self) -> None:
        if self.worker.busy:
            self.worker.stop()
            self.say("cancelling after the instance in flight...")

    def reject(self) -> None:
        """Closing the dialog (Esc, the window's close) cancels what runs; nothing waits."""
        self.worker.stop()
        super().reject()

    def shutdown(self) -> None:
        self.worker.shutdown()
