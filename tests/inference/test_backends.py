"""The CPU backends: ONNX export cached beside the weights, its check against torch and the
fallback, damaged cache files, the per-machine calibration, and `medviewer infer --backend`."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from medviewer.cli import main
from medviewer.inference import calibration, onnx_backend
from medviewer.inference.calibration import BackendStore
from medviewer.inference.engine import Engine
from medviewer.inference.errors import InferenceError
from medviewer.inference.proposal import propose
from medviewer.models.registry import build_model
from medviewer.models.spec import ModelSpec
from medviewer.workspace import Workspace
from tests.inference.conftest import grey
from tests.inference.test_runner import TINY, make_studies

SPEC = ModelSpec.from_dict(TINY)  # FPN / mobilenet_v2 at 64x64: the quickest to export
IMAGES = [grey(64, 64, seed=s) for s in range(3)] + [grey(90, 70, seed=7)]


def engine(store: BackendStore | None, backend: str = "onnxruntime") -> Engine:
    torch.manual_seed(0)
    model = build_model(SPEC)
    return Engine(model, SPEC, device="cpu", precision="fp32", backend=backend, store=store)


def store_in(folder: Path) -> BackendStore:
    (folder / "v1").mkdir(parents=True, exist_ok=True)
    return BackendStore(folder / "v1", folder / calibration.CALIBRATION_FILE, "tiny/v1")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A version folder with the model exported once (tests copy it)."""
    store = store_in(tmp_path_factory.mktemp("exported"))
    assert engine(store).prepare() == "onnxruntime"
    return store.folder  # type: ignore[return-value]


def copy_of(exported: Path, tmp_path: Path) -> BackendStore:
    store = store_in(tmp_path)
    shutil.rmtree(store.folder)  # type: ignore[arg-type]
    shutil.copytree(exported, store.folder)  # type: ignore[arg-type]
    return store


def no_export(*args: object) -> None:
    raise AssertionError("exported again")


def test_export_is_cached_beside_the_weights_and_reused(
    exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = json.loads((exported / onnx_backend.RECORD_FILE).read_text())
    assert record["status"] == "ok" and record["outputs"] == ["mask", "labels"]
    assert (exported / onnx_backend.ONNX_FILE).stat().st_size == record["bytes"]

    store = copy_of(exported, tmp_path)
    monkeypatch.setattr(onnx_backend, "export", no_export)
    eng = engine(store)
    assert eng.prepare() == "onnxruntime" and eng._onnx is not None
    assert eng._onnx.source == str(store.folder / onnx_backend.ONNX_FILE)  # type: ignore[operator]

    ours = propose(eng, IMAGES, "v1")
    ref = propose(engine(None, "torch"), IMAGES, "v1")
    for a, b in zip(ours, ref, strict=True):
        assert np.mean(a.mask == b.mask) >= 0.999
        assert a.label_probs["lesion"] == pytest.approx(b.label_probs["lesion"], abs=1e-4)
        assert a.uncertainty == pytest.approx(b.uncertainty, abs=1e-4)


def test_disagreement_falls_back_to_torch_once_and_for_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(onnx_backend, "check", lambda *a: "forced: masks differ")
    store = store_in(tmp_path)
    eng = engine(store)
    assert eng.prepare() == "torch"
    assert "forced: masks differ" in eng.backend_note
    assert len(eng.run(IMAGES)) == len(IMAGES)  # and it runs, on torch
    record = json.loads((store.folder / onnx_backend.RECORD_FILE).read_text())  # type: ignore[operator]
    assert record["status"] == "rejected" and record["reason"] == "forced: masks differ"
    assert not (store.folder / onnx_backend.ONNX_FILE).exists()  # type: ignore[operator]

    monkeypatch.setattr(onnx_backend, "export", no_export)  # the record is believed
    again = engine(store)
    assert again.prepare() == "torch"
    assert "forced: masks differ (recorded in" in again.backend_note


@pytest.mark.parametrize("damage", ["truncated", "flipped", "record"])
def test_damaged_cache_is_rebuilt(
    exported: Path,
    tmp_path: Path,
    damage: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = copy_of(exported, tmp_path)
    file = store.folder / onnx_backend.ONNX_FILE  # type: ignore[operator]
    data = file.read_bytes()
    if damage == "truncated":
        file.write_bytes(data[: len(data) // 3])
    elif damage == "flipped":
        file.write_bytes(data[:1000] + bytes([data[1000] ^ 0xFF]) + data[1001:])
    else:
        (store.folder / onnx_backend.RECORD_FILE).write_text("{not json")  # type: ignore[operator]
    with caplog.at_level(logging.WARNING):
        eng = engine(store)
        assert eng.prepare() == "onnxruntime"
    if damage != "record":
        assert "is unusable" in caplog.text and "exporting it again" in caplog.text
    assert file.read_bytes() == data  # rebuilt: the export is deterministic
    assert len(eng.run(IMAGES[:1])) == 1


def test_damaged_cache_and_failed_export_give_a_reason_not_a_traceback(
    exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = copy_of(exported, tmp_path)
    file = store.folder / onnx_backend.ONNX_FILE  # type: ignore[operator]
    file.write_bytes(file.read_bytes()[:100])

    def broken(*args: object) -> None:
        raise RuntimeError("exporter unavailable\nlong internal detail")

    monkeypatch.setattr(onnx_backend, "export", broken)
    eng = engine(store)
    assert eng.prepare() == "torch"
    assert "the ONNX export failed (RuntimeError: exporter unavailable)" in eng.backend_note
    assert len(eng.run(IMAGES[:1])) == 1


def test_auto_calibrates_once_per_machine_and_model(
    exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = copy_of(exported, tmp_path)
    monkeypatch.setattr(
        calibration, "time_backends", lambda c, *a: {"torch fp32": 1.0, "onnxruntime": 0.5}
    )
    eng = engine(store, "auto")
    assert eng.prepare() == "onnxruntime" and eng.backend_note.startswith("calibrated:")
    data = json.loads(store.calibration.read_text())  # type: ignore[union-attr]
    (key,) = data
    assert key.startswith("tiny/v1 @ ") and calibration.cpu_name() in key
    assert data[key]["backend"] == "onnxruntime" and data[key]["seconds"]["onnxruntime"] == 0.5

    def no_timing(*a: object) -> None:
        raise AssertionError("calibrated again")

    monkeypatch.setattr(calibration, "time_backends", no_timing)
    again = engine(store, "auto")
    assert again.prepare() == "onnxruntime" and again.backend_note.startswith("recorded:")

    # Where torch is faster, it is recorded, and ONNX Runtime is not even loaded next time.
    other = BackendStore(store.folder, store.calibration, "tiny/v2")
    monkeypatch.setattr(
        calibration, "time_backends", lambda c, *a: {"torch fp32": 0.3, "onnxruntime": 1.0}
    )
    assert engine(other, "auto").prepare() == "torch"
    monkeypatch.setattr(calibration, "time_backends", no_timing)
    monkeypatch.setattr(onnx_backend, "load", no_export)
    assert engine(other, "auto").prepare() == "torch"
    assert set(json.loads(store.calibration.read_text())) == {key, key.replace("v1", "v2")}  # type: ignore[union-attr]


def test_real_calibration_times_both(exported: Path, tmp_path: Path) -> None:
    store = copy_of(exported, tmp_path)
    eng = engine(store, "auto")
    eng.prepare()
    (entry,) = json.loads(store.calibration.read_text()).values()  # type: ignore[union-attr]
    assert set(entry["seconds"]) == {"torch fp32", "onnxruntime"}
    assert all(s > 0 for s in entry["seconds"].values())
    assert entry["backend"] == eng.backend


def test_near_tie_keeps_onnxruntime() -> None:
    assert calibration.faster({"torch bf16": 0.8, "onnxruntime": 1.0}) == "onnxruntime"
    assert calibration.faster({"torch bf16": 0.7, "onnxruntime": 1.0}) == "torch bf16"
    assert calibration.faster({"torch fp32": 1.2, "onnxruntime": 1.0}) == "onnxruntime"


def test_fingerprint_names_the_cpu_and_the_bf16_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDVIEWER_CPU_NO_BF16", raising=False)
    plain = calibration.machine_fingerprint(2)
    assert calibration.cpu_name() in plain and "2 threads" in plain
    monkeypatch.setenv("MEDVIEWER_CPU_NO_BF16", "1")
    assert calibration.machine_fingerprint(2) != plain


def test_unknown_backend_is_named() -> None:
    with pytest.raises(InferenceError, match="unknown backend 'tensorrt'; valid: auto, torch"):
        engine(None, "tensorrt")


def test_onnxruntime_is_for_the_cpu() -> None:
    model = build_model(SPEC)
    cuda = torch.device("cuda")  # a torch.device is taken as given: no GPU needed to check
    with pytest.raises(InferenceError, match="the onnxruntime backend runs on the CPU, not on"):
        Engine(model, SPEC, device=cuda, backend="onnxruntime")


def test_infer_backend_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws_dir = tmp_path / "ws"
    with Workspace.open(ws_dir) as ws:
        ws.import_paths([make_studies(tmp_path / "study", 3)])
    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps(TINY))
    ws_arg = ["--workspace", str(ws_dir)]
    assert main(["models", *ws_arg, "add", str(spec)]) == 0
    capsys.readouterr()

    code = main(["infer", *ws_arg, "--device", "cpu", "--backend", "onnxruntime"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "tiny v1: 3 proposed" in out and "backend: onnxruntime (asked for)" in err
    assert (ws_dir / "models" / "tiny" / "v1" / onnx_backend.ONNX_FILE).is_file()

    assert main(["models", *ws_arg, "add", str(spec)]) == 0  # v2: nothing done yet
    code = main(["infer", *ws_arg, "--device", "cpu", "--backend", "torch"])
    out, err = capsys.readouterr()
    assert code == 0 and "tiny v2: 3 proposed" in out and "backend: torch (asked for)" in err

    assert main(["models", *ws_arg, "add", str(spec)]) == 0  # v3, auto: calibrated, recorded
    code = main(["infer", *ws_arg, "--device", "cpu"])
    out, err = capsys.readouterr()
    assert code == 0 and "tiny v3: 3 proposed" in out and "(calibrated: torch" in err
    recorded = json.loads((ws_dir / calibration.CALIBRATION_FILE).read_text())
    assert [k.split(" @ ")[0] for k in recorded] == ["tiny/v3"]

    with pytest.raises(SystemExit):
        main(["infer", *ws_arg, "--backend", "tensorrt"])
    assert "invalid choice: 'tensorrt'" in capsys.readouterr().err


def test_read_only_workspace_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = store_in(tmp_path)
    ro = BackendStore(store.folder, store.calibration, store.model, readonly=True)
    monkeypatch.setattr(
        calibration, "time_backends", lambda c, *a: {"torch fp32": 1.0, "onnxruntime": 0.5}
    )
    assert engine(ro, "auto").prepare() == "onnxruntime"  # exported in memory
    assert list(store.folder.iterdir()) == [] and not store.calibration.exists()  # type: ignore[union-attr]
