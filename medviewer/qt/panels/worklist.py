"""The worklist: one row per image with the model that reads it, its AI finding and review
state, sorted and filtered; in patient order, each patient's name shows on its first row."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import PurePath
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from medviewer.imaging.person_names import display_name
from medviewer.workspace import ImageQuery, ImageRow

# What a reviewer scans for comes first, so a narrow dock still shows it.
COLUMNS = (
    "Patient", "Image", "Model", "AI", "P", "Uncert.", "Status", "Mod", "Study", "Series",
    "Edited by", "When",
)  # fmt: skip
MODEL_COLUMN = COLUMNS.index("Model")
STATUS_FILTERS = {
    "All": None,
    "Unreviewed": ["unreviewed"],
    "In progress": ["in_progress"],
    "To review": ["unreviewed", "in_progress"],
    "Approved": ["approved"],
    "Rejected": ["rejected"],
}
CONFLICTS = "Conflicts"  # the images two clinicians saved at once (`ImageRow.conflict`)
FINDING_FILTERS = {"Any AI result": None, "AI: finding": True, "AI: no finding": False}
ORDERS = {
    "By patient / study": ("study", False),
    "Most uncertain first": ("uncertainty", True),
    "Highest probability first": ("probability", True),
    "Last edited first": ("last_edited", True),
}


def _cell(row: ImageRow, column: int, models: str) -> str:
    finding = {True: "finding", False: "none", None: ""}[row.ai_finding]
    values = (
        display_name(row.patient_name, row.patient_id, row.path),
        f"{row.position + 1}" + (f" f{row.frame + 1}" if row.frame else ""),
        models,
        finding,
        "" if row.ai_probability is None else f"{row.ai_probability:.2f}",
        "" if row.ai_uncertainty is None else f"{row.ai_uncertainty:.2f}",
        row.status.replace("_", " ") + (" \u26a0 conflict" if row.conflict else ""),
        row.modality,
        row.study_description or _uid_label(row.study_uid),
        row.series_description or _uid_label(row.series_uid),
        row.last_author or "",
        time.strftime("%Y-%m-%d %H:%M", time.localtime(row.last_time)) if row.last_time else "",
    )
    return values[column]


def _uid_label(uid: str) -> str:
    """A UID's tail; a study or series that is a folder (raster and NIfTI files) by the
    folder's name, not a tail of its path."""
    if uid.startswith("folder:"):
        return PurePath(uid.removeprefix("folder:")).name
    return uid[-12:]


class WorklistModel(QAbstractTableModel):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[ImageRow] = []
        # Which models read an image: the app's RunnerHost.models_known (models.scope decides;
        # None: not known yet), kept until the models change. The rows drawn and not known are
        # asked for together (`ask_models`, one read off the GUI thread), never one per row;
        # `models_read` redraws them.
        self.models_for: Callable[[int], list[str] | None] = lambda image_id: None
        self.ask_models: Callable[[list[int]], None] = lambda image_ids: None
        self._models: dict[int, str] = {}
        self._unknown: set[int] = set()
        self.group_patients = True  # in patient order: a patient's name on its first row only

    def set_rows(self, rows: list[ImageRow]) -> None:
        self.beginResetModel()
        self.rows = rows
        self.endResetModel()

    def forget_models(self) -> None:
        """The loaded models changed: ask again which apply to each row."""
        self._models.clear()
        if self.rows:
            column = self.index(0, MODEL_COLUMN), self.index(len(self.rows) - 1, MODEL_COLUMN)
            self.dataChanged.emit(*column)

    def models(self, row: ImageRow) -> str:
        text = self._models.get(row.id)
        if text is None:
            names = self.models_for(row.id)
            if names is None:  # the models are still loading, or the row is not read yet
                if not self._unknown:
                    QTimer.singleShot(0, self._ask)  # once the rows being drawn are all named
                self._unknown.add(row.id)
                return ""
            text = self._models[row.id] = ", ".join(names) or "—"
        return text

    def _ask(self) -> None:
        unknown, self._unknown = sorted(self._unknown), set()
        self.ask_models(unknown)

    def models_read(self, image_ids: list[int]) -> None:
        """These rows' file records were read: draw their Model cells again."""
        wanted = set(image_ids)
        for i, row in enumerate(self.rows):
            if row.id in wanted:
                self.dataChanged.emit(self.index(i, MODEL_COLUMN), self.index(i, MODEL_COLUMN))

    def _same_patient_as_above(self, i: int) -> bool:
        if not self.group_patients or i == 0:
            return False
        a, b = self.rows[i - 1], self.rows[i]
        return (a.patient_id, a.patient_name) == (b.patient_id, b.patient_name)

    def update_row(self, row: ImageRow) -> None:
        for i, old in enumerate(self.rows):
            if old.id == row.id:
                self.rows[i] = row
                self.dataChanged.emit(self.index(i, 0), self.index(i, len(COLUMNS) - 1))

    def merge(
        self, order: list[int], fresh: dict[int, ImageRow], changed: set[int], keep: int | None
    ) -> None:
        """Images others changed, against the filter query run again (`order`: the ids it
        returned, in its order; `fresh`: the changed rows it returned): a row that matches now
        is updated, or inserted where the query puts it; one that no longer matches goes,
        except `keep` (the image on screen). Rows not changed stay until the next query."""
        matching = set(order)
        for i in reversed(range(len(self.rows))):
            image_id = self.rows[i].id
            if image_id in changed and image_id not in matching and image_id != keep:
                self.beginRemoveRows(QModelIndex(), i, i)
                del self.rows[i]
                self.endRemoveRows()
                self._regroup(i)
        present = {r.id for r in self.rows}
        for row in fresh.values():
            if row.id in present:
                self.update_row(row)
        for k, image_id in enumerate(order):
            if image_id not in changed or image_id in present or image_id not in fresh:
                continue
            later = next((j for j in order[k + 1 :] if j in present), None)
            at = next((i for i, r in enumerate(self.rows) if r.id == later), len(self.rows))
            self.beginInsertRows(QModelIndex(), at, at)
            self.rows.insert(at, fresh[image_id])
            self.endInsertRows()
            self._regroup(at + 1)
            present.add(image_id)

    def _regroup(self, i: int) -> None:
        """Row i's neighbour above changed: whether it shows its patient's name may too."""
        if 0 <= i < len(self.rows):
            self.dataChanged.emit(self.index(i, 0), self.index(i, 0))

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return len(COLUMNS)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = 0) -> Any:
        if not index.isValid():
            return None
        row, column = self.rows[index.row()], index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            models = self.models(row) if column == MODEL_COLUMN else ""
            return _cell(row, column, models)
        if role == Qt.ItemDataRole.ForegroundRole and column == 0:
            # Grouped by patient: a repeated name is dimmed, so each patient's rows read as one.
            if self._same_patient_as_above(index.row()):
                return QPalette().color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text)
        if role == Qt.ItemDataRole.ToolTipRole and column == 0:
            return f"{row.patient_name or '(no name)'}  ID {row.patient_id or '(none)'}"
        if role == Qt.ItemDataRole.ToolTipRole and column == MODEL_COLUMN:
            return "The model(s) whose scope (applies_to) covers this image"
        return None

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = 0) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return COLUMNS[section]
        return None


class WorklistPanel(QWidget):
    """Filters above a table; emits the id of the image the clinician picks."""

    sig_image_chosen = Signal(int)
    sig_query_changed = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self.model = WorklistModel()
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        rows = self.table.verticalHeader()
        rows.setDefaultSectionSize(self.table.fontMetrics().height() + 6)  # compact: more rows
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.clicked.connect(
            lambda idx: self.sig_image_chosen.emit(self.model.rows[idx.row()].id)
        )
        self.status = QComboBox()
        self.status.addItems([*STATUS_FILTERS, CONFLICTS])
        self.finding = QComboBox()
        self.finding.addItems(list(FINDING_FILTERS))
        self.order = QComboBox()
        self.order.addItems(list(ORDERS))
        filters = QHBoxLayout()
        for combo in (self.status, self.finding, self.order):
            combo.currentIndexChanged.connect(lambda _=0: self.sig_query_changed.emit(self.query()))
            filters.addWidget(combo)
        self.table.setAlternatingRowColors(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(filters)
        layout.addWidget(self.table)

    def query(self) -> ImageQuery:
        order, descending = ORDERS[self.order.currentText()]
        self.model.group_patients = order == "study"
        return ImageQuery(
            status=STATUS_FILTERS.get(self.status.currentText()),
            conflict=True if self.status.currentText() == CONFLICTS else None,
            ai_finding=FINDING_FILTERS[self.finding.currentText()],
            order=order,
            descending=descending,
        )

    def select(self, image_id: int) -> None:
        for i, row in enumerate(self.model.rows):
            if row.id == image_id:
                self.table.selectRow(i)
                self.table.scrollTo(self.model.index(i, 0))
                return

    def neighbour(self, image_id: int | None, step: int) -> int | None:
        """The id `step` rows away in the current order (N / Shift+N)."""
        ids = [r.id for r in self.model.rows]
        if not ids:
            return None
        if image_id not in ids:
            return ids[0]
        k = ids.index(image_id) + step
        return ids[k] if 0 <= k < len(ids) else None

    def following(self, image_id: int | None, count: int) -> list[int]:
        """The next `count` ids after this one: what to prefetch."""
        ids = [r.id for r in self.model.rows]
        k = ids.index(image_id) + 1 if image_id in ids else 0
        return ids[k : k + count]
