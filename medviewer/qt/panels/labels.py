"""Labels panel: a checkbox per label with the AI probability, and the gate's verdict."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QGroupBox, QLabel, QVBoxLayout, QWidget


class LabelsPanel(QGroupBox):
    sig_labels_changed = Signal(dict)  # {label: ticked}

    def __init__(self) -> None:
        super().__init__("Labels")
        self.gate_text = QLabel("")
        self.gate_text.setWordWrap(True)
        self._boxes: dict[str, QCheckBox] = {}
        self._holder = QWidget()
        self._holder_layout = QVBoxLayout(self._holder)
        self._holder_layout.setContentsMargins(0, 0, 0, 0)
        self.heat_combo = QComboBox()  # which label's Grad-CAM H shows
        self.heat_combo.setToolTip("Heatmap (H): where the classifier looked for this label")
        layout = QVBoxLayout(self)
        layout.addWidget(self.gate_text)
        layout.addWidget(self._holder)
        layout.addWidget(QLabel("Heatmap for"))
        layout.addWidget(self.heat_combo)
        layout.addStretch(1)

    def show_labels(
        self,
        names: list[str],
        ticked: dict[str, bool],
        probabilities: dict[str, float],
        gate: dict | None,
    ) -> None:
        for box in self._boxes.values():
            box.deleteLater()
        self._boxes = {}
        for name in names:
            p = probabilities.get(name)
            box = QCheckBox(name + (f"   AI {p:.2f}" if p is not None else ""))
            box.setChecked(bool(ticked.get(name, False)))
            box.toggled.connect(lambda _=False: self.sig_labels_changed.emit(self.ticked()))
            self._holder_layout.addWidget(box)
            self._boxes[name] = box
        self.gate_text.setText(gate["detail"] if gate else "no AI result yet")
        keep = self.heat_combo.currentText()
        self.heat_combo.clear()
        self.heat_combo.addItems(["most probable label", *names])
        if keep in names:
            self.heat_combo.setCurrentText(keep)

    def ticked(self) -> dict[str, bool]:
        return {name: box.isChecked() for name, box in self._boxes.items()}

    def heat_label(self) -> str | None:
        return None if self.heat_combo.currentIndex() <= 0 else self.heat_combo.currentText()

    def box(self, name: str) -> QCheckBox:
        return self._boxes[name]
