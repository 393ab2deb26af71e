"""Corner annotations over the image, as every PACS viewer has them: patient and study at the
top left, series at the top right, slice and window at the bottom left, zoom at the bottom
right. Labels on the view's viewport: they stay put while the image pans and zooms."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QGraphicsDropShadowEffect, QLabel, QWidget

from medviewer.imaging.display import Window
from medviewer.imaging.person_names import display_name

MARGIN = 8
SECTIONAL = ("CT", "MR", "PT", "NM")
TEXT = QColor(235, 225, 170)  # the warm grey-yellow of viewer overlays: readable on any grey


@dataclass
class CornerInfo:
    """What the corners say; the view fills in what changes (window, zoom)."""

    patient: str = ""
    patient_id: str = ""
    study_date: str = ""
    study: str = ""
    series: str = ""
    modality: str = ""
    slice_k: int = 0  # 1-based
    slice_n: int = 0
    size: str = ""


def _date(yyyymmdd: str) -> str:
    d = yyyymmdd.strip()
    return f"{d[:4]}-{d[4:6]}-{d[6:8]}" if len(d) == 8 and d.isdigit() else d


class CornerAnnotations(QObject):
    """Four labels kept in the corners of `viewport` (an event filter follows its size)."""

    def __init__(self, viewport: QWidget) -> None:
        super().__init__(viewport)
        self.viewport = viewport
        align = Qt.AlignmentFlag
        self.labels = {
            "top_left": QLabel(viewport),
            "top_right": QLabel(viewport),
            "bottom_left": QLabel(viewport),
            "bottom_right": QLabel(viewport),
        }
        aligns = {
            "top_left": align.AlignLeft | align.AlignTop,
            "top_right": align.AlignRight | align.AlignTop,
            "bottom_left": align.AlignLeft | align.AlignBottom,
            "bottom_right": align.AlignRight | align.AlignBottom,
        }
        for corner, label in self.labels.items():
            label.setObjectName(f"corner_{corner}")
            label.setAlignment(aligns[corner])
            label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
            pal = label.palette()
            pal.setColor(QPalette.ColorRole.WindowText, TEXT)
            label.setPalette(pal)
            font = label.font()
            font.setPointSizeF(max(font.pointSizeF() - 0.5, 7.0))
            label.setFont(font)
            shadow = QGraphicsDropShadowEffect(label)
            shadow.setBlurRadius(0)
            shadow.setOffset(1, 1)
            shadow.setColor(QColor(0, 0, 0))
            label.setGraphicsEffect(shadow)
        self.info = CornerInfo()
        self.window: Window | None = None
        self.zoom: float | None = None
        viewport.installEventFilter(self)
        self._render()

    def set_info(self, info: CornerInfo) -> None:
        self.info = info
        self._render()

    def set_window(self, window: Window | None) -> None:
        self.window = window
        self._render()

    def set_zoom(self, zoom: float | None) -> None:
        self.zoom = zoom
        self._render()

    def text(self, corner: str) -> str:
        return self.labels[corner].text()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.viewport and event.type() == QEvent.Type.Resize:
            self._place()
        return False

    def _render(self) -> None:
        i = self.info
        top_left = [i.patient, f"ID {i.patient_id}" if i.patient_id else "", _date(i.study_date)]
        top_right = [i.study, i.series, " ".join(x for x in (i.modality, i.size) if x)]
        # A cross-sectional series has slices; radiographs and photographs are images.
        what = "Slice" if i.modality.upper() in SECTIONAL else "Image"
        bottom_left = [f"{what} {i.slice_k}/{i.slice_n}" if i.slice_n else ""]
        if self.window is not None:
            bottom_left.append(f"W {self.window.width:.0f}  L {self.window.center:.0f}")
        bottom_right = [f"Zoom {self.zoom:.2f}x" if self.zoom else ""]
        for corner, lines in (
            ("top_left", top_left),
            ("top_right", top_right),
            ("bottom_left", bottom_left),
            ("bottom_right", bottom_right),
        ):
            self.labels[corner].setText("\n".join(x for x in lines if x))
        self._place()

    def _place(self) -> None:
        w, h = self.viewport.width(), self.viewport.height()
        for corner, label in self.labels.items():
            label.adjustSize()
            lw, lh = label.width(), label.height()
            x = MARGIN if corner.endswith("left") else w - lw - MARGIN
            y = MARGIN if corner.startswith("top") else h - lh - MARGIN
            label.move(max(x, 0), max(y, 0))
            label.raise_()


def corner_info(row, slice_k: int, slice_n: int, study_date: str, size: str) -> CornerInfo:
    """The corners' text for a worklist row (workspace.ImageRow) and its place in the series."""
    return CornerInfo(
        patient=display_name(row.patient_name, row.patient_id, row.path),
        patient_id=row.patient_id,
        study_date=study_date,
        study=row.study_description,
        series=row.series_description,
        modality=row.modality,
        slice_k=slice_k,
        slice_n=slice_n,
        size=size,
    )
