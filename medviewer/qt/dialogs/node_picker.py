"""The saved PACS nodes (`pacs.nodes.NodeBook`) to choose from, and "Test connection" (echo)."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QWidget

from medviewer.pacs import remote
from medviewer.pacs.errors import PacsError
from medviewer.pacs.nodes import NodeBook, PacsNode
from medviewer.qt.dialogs.pacs_worker import BUSY, PacsWorker, describe

NO_NODES = "no PACS node saved: add one with `medviewer pacs add-node`"


class NodePicker(QWidget):
    def __init__(
        self, worker: PacsWorker, say: Callable[[str], None], parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.worker, self.say = worker, say
        self.combo = QComboBox()
        self.combo.setMinimumContentsLength(24)
        self.test_button = QPushButton("Test connection")
        self.test_button.clicked.connect(self.test)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("PACS node"))
        layout.addWidget(self.combo, 1)
        layout.addWidget(self.test_button)
        self._nodes: dict[str, PacsNode] = {}
        self._problem = NO_NODES  # what to say when no node can be chosen
        self.reload()

    def reload(self) -> None:
        """Read the saved nodes again (the CLI may have added one), keeping the choice."""
        chosen = self.combo.currentText()
        try:
            nodes = NodeBook().nodes()
        except PacsError as e:  # unreadable settings: said, and no node to choose
            self._nodes, self._problem = {}, str(e)
            self.combo.clear()
            self.say(self._problem)
            return
        self._problem = NO_NODES
        self._nodes = {n.name: n for n in nodes}
        self.combo.clear()
        for node in nodes:
            self.combo.addItem(node.name)
            where = node.url or f"DIMSE {node.dimse}"
            self.combo.setItemData(self.combo.count() - 1, where, Qt.ItemDataRole.ToolTipRole)
        if chosen in self._nodes:
            self.combo.setCurrentText(chosen)
        if not nodes:
            self.say(NO_NODES)

    def node(self) -> PacsNode | None:
        """The chosen node; None (said in the status line) when there is none."""
        node = self._nodes.get(self.combo.currentText())
        if node is None:
            self.say(self._problem)
        return node

    def test(self) -> None:
        node = self.node()
        if node is None:
            return

        def answered(seconds: float) -> None:
            self.say(f"{node.name} answered in {seconds:.2f} s")

        started = self.worker.run(
            lambda _cancel: remote.connect(node).echo(),
            answered,
            lambda e: self.say(describe(e)),
        )
        self.say(f"testing {node.name}..." if started else BUSY)
