"""Models panel: the active version of each model with its metrics; switch versions here."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QGroupBox, QLabel, QPushButton, QVBoxLayout

from medviewer.workspace.model_table import ModelVersion


def _metrics_text(m: ModelVersion) -> str:
    metrics = m.metrics.get("validation", m.metrics)
    shown = [
        f"{k} {v}" if isinstance(v, int) else f"{k} {v:.3f}"
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    ]
    return ", ".join(shown[:4]) or str(m.metrics.get("note", "no metrics"))


class ModelsPanel(QGroupBox):
    sig_activate = Signal(str, str)  # name, version

    def __init__(self) -> None:
        super().__init__("Models")
        self.layout_ = QVBoxLayout(self)
        self._rows: list[tuple[QComboBox, QPushButton]] = []
        self._shown: list[ModelVersion] | None = None

    def show_models(self, versions: list[ModelVersion]) -> None:
        if versions == self._shown:
            return  # the window's poll, nothing new: keep the version a clinician is choosing
        self._shown = list(versions)
        while self.layout_.count():
            item = self.layout_.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        by_name: dict[str, list[ModelVersion]] = {}
        for m in versions:
            by_name.setdefault(m.name, []).append(m)
        if not by_name:
            self.layout_.addWidget(QLabel("no models: add one with `medviewer models add`"))
        for name, vs in by_name.items():
            active = next((m for m in vs if m.active), None)
            self.layout_.addWidget(
                QLabel(f"<b>{name}</b> {active.version if active else '(none active)'}")
            )
            if active:
                self.layout_.addWidget(QLabel(_metrics_text(active)))
            combo = QComboBox()
            combo.addItems([m.version for m in vs])
            if active:
                combo.setCurrentText(active.version)
            button = QPushButton("Activate")
            button.clicked.connect(
                lambda _=False, n=name, c=combo: self.sig_activate.emit(n, c.currentText())
            )
            self.layout_.addWidget(combo)
            self.layout_.addWidget(button)
        self.layout_.addStretch(1)
