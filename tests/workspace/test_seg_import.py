"""DICOM SEG import (issue 13, item 7): a SEG's masks become `import` revisions on the images
it references; our own exports come back bit-identical; bad files end in one line each."""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pydicom.data
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from medviewer.cli import main
from medviewer.workspace import Workspace
from medviewer.workspace.export import export_workspace
from medviewer.workspace.mask_import import import_masks
from medviewer.workspace.seg_import import import_segs, is_seg
from tests.imaging.helpers import write_ct_slice

CLASSES = [
    {"name": "background", "color": [0, 0, 0]},
    {"name": "liver", "color": [255, 0, 0]},
    {"name": "spleen", "color": [0, 255, 0]},
]
SLICES = 4
EMPTY = 2  # the slice whose mask is empty


def slice_mask(k: int) -> np.ndarray:
    """Classes 1 and 2 in blocks that move with the slice; slice EMPTY has none."""
    m = np.zeros((32, 24), np.uint8)
    if k != EMPTY:
        m[2 + k : 12, 3:10] = 1
        m[16:28, 12 + k : 22] = 2
    return m


def write_series(folder: Path) -> None:
    folder.mkdir(parents=True)
    for k in range(SLICES):
        px = (np.arange(32 * 24).reshape(32, 24) * (k + 1) % 900).astype(np.int16)
        write_ct_slice(
            folder / f"s{k}.dcm", px, series_uid="1.2.3.7", position=(0, 0, 2.0 * k),
            instance_number=k + 1,
        )  # fmt: skip


@dataclass
class Exported:
    seg: Path
    masks: dict[str, np.ndarray]  # SOP Instance UID -> the exported mask
    series: Path


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """Our DICOM SEG of a 4-slice CT series: alice's masks of two named classes, one slice
    empty."""
    tmp = tmp_path_factory.mktemp("segin")
    write_series(tmp / "ct")
    masks = {}
    with Workspace.open(tmp / "ws") as ws:
        ws.import_paths([tmp / "ct"])
        ws.models.register("organs", "1", spec={"classes": CLASSES})
        for row in ws.images():
            k = int(Path(row.path).stem[1:])
            ws.revisions.save_mask(
                row.id, slice_mask(k), source="import", author="alice", model=("organs", "1")
            )
            masks[ws.frame_ref(row.id).instance.sop_instance_uid] = slice_mask(k)
        report = export_workspace(ws, tmp / "out", "dicom-seg")
    [seg] = [p for p in report.files if p.name.endswith(".seg.dcm")]
    return Exported(seg, masks, tmp / "ct")


def fresh(tmp_path: Path, series: Path, *, model: bool = True) -> Workspace:
    ws = Workspace.open(tmp_path / "ws2")
    ws.import_paths([series])
    if model:
        ws.models.register("organs", "1", spec={"classes": CLASSES})
    return ws


def masks_by_uid(ws: Workspace) -> dict[str, np.ndarray]:
    out = {}
    for row in ws.images():
        rev = ws.revisions.latest(row.id, "mask")
        if rev is not None:
            out[ws.frame_ref(row.id).instance.sop_instance_uid] = ws.revisions.read_mask(rev)
    return out


def test_our_export_round_trips_bit_identical(exported: Exported, tmp_path: Path) -> None:
    with fresh(tmp_path, exported.series) as ws:
        results = import_masks(ws, exported.seg.parent, author="importer")
        assert [r.error for r in results] == [None] * SLICES
        got = masks_by_uid(ws)
        assert got.keys() == exported.masks.keys()
        for uid, mask in exported.masks.items():
            assert got[uid].dtype == np.uint8 and np.array_equal(got[uid], mask), uid
        assert sum(not m.any() for m in got.values()) == 1  # the empty slice came back empty
        rev = ws.revisions.latest(results[0].image_id, "mask")
        assert (rev.source, rev.author, rev.model_name) == ("import", "alice", None)
        assert rev.summary["seg"]["segments"] == {"liver": 1, "spleen": 2}
        again = import_masks(ws, exported.seg.parent, author="importer")
        assert [(r.revision_id, r.already) for r in again] == [
            (r.revision_id, True) for r in results
        ]  # the same SEG again adds no revision


def test_model_given_records_it_and_maps_its_names(exported: Exported, tmp_path: Path) -> None:
    with fresh(tmp_path, exported.series) as ws:
        results = import_masks(ws, exported.seg, author="importer", model="organs")
        assert [r.error for r in results] == [None] * SLICES
        rev = ws.revisions.get(results[0].revision_id)
        assert (rev.model_name, rev.model_version) == ("organs", "1")
        assert all(np.array_equal(masks_by_uid(ws)[u], m) for u, m in exported.masks.items())


def test_unmapped_segments_are_one_line_naming_the_file(exported: Exported, tmp_path: Path) -> None:
    with fresh(tmp_path, exported.series, model=False) as ws:
        [result] = import_segs(ws, [exported.seg], author="importer")
        assert result.error is not None and "\n" not in result.error
        assert result.error.startswith(str(exported.seg))
        assert "segment 1 'liver' names no class of this workspace" in result.error
        assert ws.db.execute("SELECT count(*) FROM revisions").fetchone()[0] == 0


def test_class_n_labels_map_without_a_model(tmp_path: Path) -> None:
    write_series(tmp_path / "ct")
    with Workspace.open(tmp_path / "ws") as ws:
        ws.import_paths([tmp_path / "ct"])
        row = ws.images()[0]
        ws.revisions.save_mask(row.id, slice_mask(0), source="import", author="gt")
        [seg] = export_workspace(ws, tmp_path / "out", "dicom-seg").files
    with fresh(tmp_path, tmp_path / "ct", model=False) as ws:
        results = import_segs(ws, [seg], author="bob")
        assert [r.error for r in results] == [None]
        rev = ws.revisions.get(results[0].revision_id)
        assert rev.author == "gt"  # the SEG's Content Creator's Name, not the fallback
        assert np.array_equal(ws.revisions.read_mask(rev), slice_mask(0))


def test_images_not_in_the_workspace_are_named(exported: Exported, tmp_path: Path) -> None:
    with Workspace.open(tmp_path / "empty") as ws:
        [result] = import_segs(ws, [exported.seg], author="a")
        assert result.error.startswith(f"{exported.seg}: 4 of the 4 image(s) it references")
        assert "import their series first" in result.error


def test_truncated_seg_is_one_line(exported: Exported, tmp_path: Path) -> None:
    cut = tmp_path / "cut.seg.dcm"
    data = exported.seg.read_bytes()
    cut.write_bytes(data[: len(data) - 200])
    assert is_seg(cut)  # the header is whole: found as a SEG, then refused with the reason
    with fresh(tmp_path, exported.series) as ws:
        [result] = import_masks(ws, tmp_path, author="a")
        assert result.path == cut and result.error.startswith(f"{cut}: not a readable DICOM SEG")
        assert "\n" not in result.error
        assert ws.db.execute("SELECT count(*) FROM revisions").fetchone()[0] == 0


def test_seg_of_the_wrong_size_is_one_line(exported: Exported, tmp_path: Path) -> None:
    """A 64x48 SEG over 32x24 images: refused before any revision is written."""
    ds = pydicom.dcmread(exported.seg)
    frames = ds.pixel_array  # (frames, 32, 24) bits
    big = np.repeat(np.repeat(frames, 2, axis=1), 2, axis=2).astype(np.uint8)
    ds.Rows, ds.Columns = 64, 48
    ds.PixelData = pydicom.pixels.pack_bits(big.ravel())
    wrong = tmp_path / "wrong.seg.dcm"
    ds.save_as(wrong)
    with fresh(tmp_path, exported.series) as ws:
        [result] = import_segs(ws, [wrong], author="a")
        assert result.error.startswith(f"{wrong}: the SEG is 48x64, its image ")
        assert result.error.endswith("is 24x32") and "\n" not in result.error
        assert ws.db.execute("SELECT count(*) FROM revisions").fetchone()[0] == 0


def test_import_lists_no_seg_as_an_image(exported: Exported, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    shutil.copytree(exported.series, folder)
    shutil.copy(exported.seg, folder / "seg.dcm")
    with Workspace.open(tmp_path / "ws") as ws:
        ws.models.register("organs", "1", spec={"classes": CLASSES})
        result = ws.import_paths([folder])
        assert len(ws.images()) == SLICES
        [skipped] = [p for p in result.catalog.skipped if p.path.name == "seg.dcm"]
        assert "import-masks" in skipped.reason
        # The folder as it came: its CT slices are passed over, its SEG imported.
        results = import_masks(ws, folder, author="a")
        assert {r.path.name for r in results} == {"seg.dcm"}
        assert [r.error for r in results] == [None] * SLICES


def sample_segs() -> list[Path]:
    """The SEG files pydicom ships, and pydicom-data's where installed; read from disk, as
    get_testdata_files would first try to download what is missing."""
    folders = [Path(pydicom.data.__file__).parent / "test_files"]
    store = importlib.util.find_spec("data_store")
    if store is not None and store.submodule_search_locations:
        folders += [Path(p) / "data" for p in store.submodule_search_locations]
    files = sorted(p for folder in folders for p in folder.rglob("*") if p.is_file())
    return [p for p in files if p.suffix in ("", ".dcm") and is_seg(p)]


def test_shipped_seg_samples_import_or_give_a_reason(tmp_path: Path) -> None:
    samples = sample_segs()
    assert len(samples) >= 2, samples  # liver_1frame.dcm, liver_expb_1frame.dcm at least
    ct = tmp_path / "ct"
    ct.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), ct)
    with Workspace.open(tmp_path / "ws") as ws:
        ws.import_paths([ct])
        results = import_segs(ws, samples, author="a")
    assert {r.path for r in results} == set(samples)
    for r in results:
        assert r.error is None or (r.error.startswith(str(r.path)) and "\n" not in r.error)


def test_dcmqi_liver_seg_imports_onto_its_slices(tmp_path: Path) -> None:
    """pydicom's liver_1frame.dcm (made by dcmqi, no Content Creator) over stand-in CT slices
    that carry the three SOP Instance UIDs it references."""
    seg_path = Path(get_testdata_file("liver_1frame.dcm"))
    seg = pydicom.dcmread(seg_path, stop_before_pixels=True)
    [series] = seg.ReferencedSeriesSequence
    folder = tmp_path / "ct"
    folder.mkdir()
    for k, ref in enumerate(series.ReferencedInstanceSequence):
        path = write_ct_slice(
            folder / f"{k}.dcm", np.zeros((512, 512), np.int16),
            series_uid=series.SeriesInstanceUID, study_uid=seg.StudyInstanceUID,
            position=(0, 0, float(k)),
        )  # fmt: skip
        ds = pydicom.dcmread(path)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = ref.ReferencedSOPInstanceUID
        ds.save_as(path)
    with Workspace.open(tmp_path / "ws") as ws:
        ws.import_paths([folder])
        ws.models.register("abdomen", "1", spec={"classes": [{"name": "bg"}, {"name": "liver"}]})
        results = import_segs(ws, [seg_path], author="reader")
        assert [r.error for r in results] == [None] * 3
        masks = [ws.revisions.read_mask(ws.revisions.get(r.revision_id)) for r in results]
        revs = [ws.revisions.get(r.revision_id) for r in results]
    assert {r.author for r in revs} == {"reader"}  # the SEG names no creator
    assert sum(int(m.any()) for m in masks) == 1  # one frame, on one of the three slices
    assert set(np.unique(np.concatenate([m.ravel() for m in masks]))) == {0, 1}


def test_cli_import_masks_takes_a_seg(
    exported: Exported, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh(tmp_path, exported.series).close()
    ws = str(tmp_path / "ws2")
    args = ["import-masks", str(exported.seg), "--workspace", ws, "--author", "a"]
    assert main([*args, "--model", "organs"]) == 0
    out = capsys.readouterr().out
    assert out.count(f"{exported.seg.name} -> image ") == SLICES
    assert f"{SLICES} mask(s) imported, 0 failed" in out
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(exported.seg.read_bytes()[:-100])
    assert main(["import-masks", str(cut), "--workspace", ws, "--author", "a"]) == 2
    [error] = [line for line in capsys.readouterr().out.splitlines() if "error" in line]
    assert error.startswith(f"  error: {cut}: not a readable DICOM SEG (truncated: ")


def test_multiframe_source_round_trips_by_frame(tmp_path: Path) -> None:
    """An enhanced CT (3 frames, the middle one unmasked): its SEG references frames."""
    ct = get_testdata_file("CT_small.dcm")
    series, frame_of_reference, slices = generate_uid(), generate_uid(), []
    for i in range(3):
        ds = pydicom.dcmread(ct)
        ds.SeriesInstanceUID, ds.FrameOfReferenceUID = series, frame_of_reference
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.ImagePositionPatient = [-158.0, -179.0, -75.0 + 5 * i]
        ds.InstanceNumber = i + 1
        slices.append(ds)
    (tmp_path / "enh").mkdir()
    hd.legacy.LegacyConvertedEnhancedCTImage(slices, generate_uid(), 8, generate_uid(), 1).save_as(
        tmp_path / "enh" / "enhanced.dcm"
    )
    masks = {}
    with Workspace.open(tmp_path / "ws") as ws:
        ws.import_paths([tmp_path / "enh"])
        for row in ws.images():
            if row.frame != 1:
                masks[row.frame] = np.zeros((row.rows, row.columns), np.uint8)
                masks[row.frame][10 * row.frame : 40, 5:50] = 1 + row.frame // 2
                ws.revisions.save_mask(row.id, masks[row.frame], source="import", author="a")
        [seg] = export_workspace(ws, tmp_path / "out", "dicom-seg").files
    with Workspace.open(tmp_path / "ws2") as ws:
        ws.import_paths([tmp_path / "enh"])
        results = import_segs(ws, [seg], author="b")
        assert [r.error for r in results] == [None] * 3
        got = {ws.image(r.image_id).frame: ws.revisions.read_mask(ws.revisions.get(r.revision_id))
               for r in results}  # fmt: skip
    assert not got[1].any()  # not masked there: the SEG holds it empty
    assert all(np.array_equal(got[f], m) for f, m in masks.items())
