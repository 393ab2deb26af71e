"""The viewer, with Qt (offscreen): brush dab to repainted view, and opening the next image.

1. Per dab on a 2048x2048 and a 4096x4096 image: `extend_stroke`, the overlay's rectangle
   update, and a synchronous repaint of the view (`viewport().repaint()`), so the time includes
   Qt drawing the pixels. Baseline in the same run: the same dab, then the naive path of
   re-colouring the whole mask and handing it to a pyqtgraph ImageItem (`setImage`), then the
   same repaint.
2. Opening the next image of the worklist after it was prefetched (pixels decoded into the
   cache while the clinician looked at the previous one): from `open_image` to the image,
   mask and labels on screen. Baseline: the same with an empty cache.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pydicom
import pyqtgraph as pg
from harness import Row
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication

NAME = "viewer"
DAB_TARGETS = {2048: 0.016, 4096: 0.033}
OPEN_TARGET = 0.100


def _write(path: Path, size: int, k: int, series: str) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # CR
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = (
        meta.MediaStorageSOPClassUID,
        meta.MediaStorageSOPInstanceUID,
    )
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.PatientID = series + ".1", series, "BENCH"
    ds.Modality, ds.InstanceNumber = "CR", k + 1
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    yy, xx = np.mgrid[0:size, 0:size]
    ds.PixelData = ((xx + yy * (k + 1)) % 4096).astype("<u2").tobytes()
    pydicom.dcmwrite(path, ds, enforce_file_format=True)


def _window(folder: Path, size: int, n: int, tag: str):
    from medviewer.qt.main_window import MainWindow
    from medviewer.workspace import Workspace

    study = folder / f"study{size}"
    study.mkdir()
    series = generate_uid()
    for k in range(n):
        _write(study / f"{k}.dcm", size, k, series)
    ws = Workspace.open(folder / f"ws{size}{tag}", app_lock=True)
    ws.import_paths([study])
    settings = QSettings(str(folder / f"{size}{tag}.ini"), QSettings.Format.IniFormat)
    win = MainWindow(ws, "bench", settings, device="cpu")
    win.resize(1200, 900)
    win.show()
    return win, ws


def _wait(app: QApplication, done, timeout: float = 60.0) -> None:
    end = time.perf_counter() + timeout
    while not done():
        app.processEvents()
        if time.perf_counter() > end:
            raise RuntimeError("timed out waiting for the viewer")
        time.sleep(0.0005)


def _open(app: QApplication, win, image_id: int) -> float:
    start = time.perf_counter()
    win.open_image(image_id)
    _wait(app, lambda: win.review.state is not None and win.review.state.image.id == image_id)
    app.processEvents()
    win.view.viewport().repaint()
    return time.perf_counter() - start


def _dabs(app: QApplication, win, size: int, dabs: int, naive: bool) -> list[float]:
    session = win.review.session
    view = win.view
    naive_item = pg.ImageItem()
    if naive:
        view.box.addItem(naive_item)
    lut = view.mask_item.lut
    times = []
    session.begin_stroke(1, 10)
    for k in range(dabs):
        y = size / 2 + size / 3 * np.sin(k / 20)
        x = size / 6 + k * (size * 2 / 3) / dabs
        start = time.perf_counter()
        rect = session.extend_stroke((y, x))
        if naive:
            naive_item.setImage(lut[session.mask], autoLevels=False)
        else:
            view.mask_item.update_rect(rect)
        view.viewport().repaint()
        times.append(time.perf_counter() - start)
    session.end_stroke()
    if naive:
        view.box.removeItem(naive_item)
    return times


def run(quick: bool = False) -> list[Row]:
    app = QApplication.instance() or QApplication([])
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for size in (2048,) if quick else (2048, 4096):
            win, ws = _window(folder, size, 3, "")
            first = ws.images()[0].id
            _open(app, win, first)
            ours = statistics.median(_dabs(app, win, size, 40 if quick else 150, naive=False))
            base = statistics.median(_dabs(app, win, size, 10 if quick else 25, naive=True))
            rows.append(
                Row(
                    NAME,
                    f"brush dab to repainted view {size}x{size}",
                    ours,
                    "full mask re-render (ImageItem)",
                    base,
                    f"< {DAB_TARGETS[size] * 1000:.0f} ms",
                    ours < DAB_TARGETS[size],
                    "median per dab, r=10, offscreen Qt",
                )  # fmt: skip
            )
            if size == 2048:
                # Prefetched: open image 1 while 2 is prefetched, then open 2.
                second, third = (r.id for r in ws.images()[1:3])
                _open(app, win, second)  # prefetches `third`
                cache, full = win.host.loader.cache, 3 * size * size * 2
                _wait(app, lambda: cache.nbytes >= full)  # noqa: B023 - waited on at once
                warm = _open(app, win, third)
                win.host.loader.cache.clear()
                win.review._shown.clear()
                cold = _open(app, win, first)
                rows.append(
                    Row(
                        NAME,
                        "open next image, prefetched 2048x2048",
                        warm,
                        "same, cache empty",
                        cold,
                        "< 100 ms",
                        warm < OPEN_TARGET,
                    )  # fmt: skip
                )
            win.close()
            ws.close()
    return rows
