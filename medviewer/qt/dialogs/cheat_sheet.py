"""The keyboard and mouse cheat sheet (F1), listed from the one shortcut table (qt/keymap.py)."""

from __future__ import annotations

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTableWidget, QTableWidgetItem, QVBoxLayout

from medviewer.qt import keymap


def rows() -> list[tuple[str, str, str]]:
    """(group, keys, what it does) for every shortcut, then the mouse."""
    out = [(s.group, keymap.key_text(s.command), s.text) for s in keymap.SHORTCUTS]
    out += [("Mouse", what, does) for what, does in keymap.MOUSE]
    return out


class CheatSheet(QDialog):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard and mouse")
        entries = rows()
        self.table = QTableWidget(len(entries), 3)
        self.table.setHorizontalHeaderLabels(["", "Keys", "Does"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        last = None
        for i, (group, keys, text) in enumerate(entries):
            self.table.setItem(i, 0, QTableWidgetItem(group if group != last else ""))
            self.table.setItem(i, 1, QTableWidgetItem(keys))
            self.table.setItem(i, 2, QTableWidgetItem(text))
            last = group
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setStretchLastSection(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addWidget(buttons)
        self.resize(620, 700)

    def texts(self) -> list[tuple[str, str]]:
        """(keys, does) as the table shows them: what the tests read."""
        return [
            (self.table.item(i, 1).text(), self.table.item(i, 2).text())
            for i in range(self.table.rowCount())
        ]
