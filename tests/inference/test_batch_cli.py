"""`medviewer models ...` and `medviewer infer`: resumable, kill-safe, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medviewer.cli import main
from medviewer.inference import runner as runner_module
from medviewer.inference.batch import run_batch
from medviewer.models.checkpoints import save_checkpoint
from medviewer.models.registry import build_model
from medviewer.models.spec import ModelSpec
from medviewer.workspace import Workspace
from tests.inference.test_runner import TINY, make_studies

N = 5


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    """A workspace of N 64x64 images and a spec file for the tiny model."""
    ws_dir = tmp_path / "ws"
    with Workspace.open(ws_dir) as ws:
        ws.import_paths([make_studies(tmp_path / "study", N)])
    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps(TINY))
    return ws_dir, spec


def cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def ai_masks(ws_dir: Path) -> dict[int, int]:
    """image id -> number of ai mask revisions."""
    with Workspace.open(ws_dir) as ws:
        return {
            r.id: sum(1 for v in ws.revisions.history(r.id) if v.kind == "mask")
            for r in ws.images()
        }


def test_add_then_infer_twice(setup: tuple, capsys: pytest.CaptureFixture[str]) -> None:
    ws_dir, spec = setup
    code, out, _ = cli(capsys, "models", "--workspace", ws_dir, "add", spec)
    assert code == 0
    assert "added model tiny version v1 (random weights (untrained)); active" in out
    code, out, err = cli(capsys, "infer", "--workspace", ws_dir, "--device", "cpu")
    assert code == 0, err
    assert f"tiny v1: {N} proposed, 0 skipped (already done), 0 not applicable, 0 failed" in out
    assert f"\r  {N}/{N} images" in err
    code, out, _ = cli(capsys, "infer", "--workspace", ws_dir, "--model", "tiny")
    assert code == 0
    assert f"tiny v1: 0 proposed, {N} skipped (already done), 0 not applicable, 0 failed" in out
    assert set(ai_masks(ws_dir).values()) == {1}


def test_interrupted_run_resumes_without_duplicates(
    setup: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws_dir, spec = setup
    real_save, saved = runner_module.save_proposal, []

    def dying_save(ws: Workspace, image_id: int, proposal: object) -> list:
        if len(saved) == 2:  # the process "dies" here: nothing after the second commit
            raise KeyboardInterrupt
        saved.append(image_id)
        return real_save(ws, image_id, proposal)

    with Workspace.open(ws_dir) as ws:
        from medviewer.models.versions import add_model

        add_model(ws, ModelSpec.load(spec), None)
        monkeypatch.setattr(runner_module, "save_proposal", dying_save)
        with pytest.raises(KeyboardInterrupt):
            run_batch(ws, "tiny", device="cpu", batch_size=2)
        assert sum(ai_masks(ws_dir).values()) == 2
        monkeypatch.setattr(runner_module, "save_proposal", real_save)
        report = run_batch(ws, "tiny", device="cpu", batch_size=2)
    assert (report.proposed, report.skipped, report.failed) == (N - 2, 2, [])
    assert set(ai_masks(ws_dir).values()) == {1}


def test_failures_are_reported_per_image(
    setup: tuple, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws_dir, spec = setup
    cli(capsys, "models", "--workspace", ws_dir, "add", spec)
    (tmp_path / "study" / "s1.dcm").unlink()
    code, out, _ = cli(capsys, "infer", "--workspace", ws_dir, "--device", "cpu")
    assert code == 1
    assert f"tiny v1: {N - 1} proposed, 0 skipped (already done), 0 not applicable, 1 failed" in out
    assert "s1.dcm: file no longer exists" in out


def test_list_show_activate_rollback(setup: tuple, capsys: pytest.CaptureFixture[str]) -> None:
    ws_dir, spec = setup
    ws = ["--workspace", ws_dir]
    assert cli(capsys, "models", *ws, "add", spec)[0] == 0
    assert cli(capsys, "models", "add", spec, "--version", "second", *ws)[0] == 0
    code, out, _ = cli(capsys, "models", *ws, "list")
    assert code == 0
    header, first, second = (line.split() for line in out.splitlines())
    assert header == ["NAME", "VERSION", "ACTIVE", "TASK", "SCORE", "ADDED"]
    assert first[:4] == ["tiny", "v1", "segmentation+classification", "-"]  # not active
    assert second[:5] == ["tiny", "second", "*", "segmentation+classification", "-"]
    code, out, _ = cli(capsys, "models", *ws, "list", "--json")
    records = json.loads(out)
    assert [(r["version"], r["active"]) for r in records] == [("v1", False), ("second", True)]
    assert records[0]["metrics"] == {"note": "untrained"} and records[0]["spec"]["name"] == "tiny"
    code, out, _ = cli(capsys, "models", *ws, "show", "tiny")
    assert "model tiny: segmentation+classification, FPN on mobilenet_v2" in out
    assert "classes: background, lesion" in out and "labels: lesion" in out
    assert "  second: active" in out and "  v1: activated" in out
    assert cli(capsys, "models", *ws, "activate", "tiny", "v1")[1].strip() == (
        "model tiny: version v1 is active"
    )
    assert cli(capsys, "models", *ws, "rollback", "tiny")[1].strip() == (
        "model tiny: rolled back from v1 to second"
    )
    code, _, err = cli(capsys, "models", *ws, "activate", "tiny", "v9")
    assert code == 2 and err.startswith("error: no model tiny version v9")


def test_user_errors_are_one_line(
    setup: tuple, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws_dir, spec = setup
    ws = ["--workspace", ws_dir]
    other = ModelSpec.from_dict({**TINY, "classes": ["background", "a", "b"]})
    save_checkpoint(tmp_path / "other", build_model(other), other)
    code, _, err = cli(capsys, "models", *ws, "add", spec, "--weights", tmp_path / "other")
    assert code == 2 and err.count("\n") == 1
    assert "weights do not fit the spec's model; shape differs" in err
    assert "segmentation_head.0.weight: file (3, " in err
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    code, _, err = cli(capsys, "models", *ws, "add", bad)
    assert code == 2 and "bad.json: not valid JSON" in err
    bad.write_text(json.dumps({**TINY, "architecture": "Mystery"}))
    code, _, err = cli(capsys, "models", *ws, "add", bad)
    assert code == 2 and "unknown architecture 'Mystery'; valid: " in err and "unet, " in err
    code, _, err = cli(capsys, "infer", *ws)
    assert code == 2 and err.startswith("error: no active model")
    code, _, err = cli(capsys, "infer", *ws, "--model", "ghost")
    assert code == 2 and "error: no model ghost" in err
    code, _, err = cli(capsys, "models", *ws, "show", "ghost")
    assert code == 2 and "error: no model ghost in " in err
    assert cli(capsys, "models", *ws, "list")[1].startswith("no models")
