"""Versions have one writer (register_version) and activation one owner, which tells listeners."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from medviewer.models.errors import UnusableWeights
from medviewer.models.registry import build_model
from medviewer.models.spec import ModelSpec
from medviewer.models.versions import (
    MANIFEST,
    add_model,
    learnt_from,
    register_version,
    version_dir,
)
from medviewer.workspace import Workspace
from medviewer.workspace.errors import SaveError
from tests.specs import tiny_segmenter

SPEC = ModelSpec.from_dict(tiny_segmenter("tiny"))


def test_register_writes_every_file_then_the_row(tmp_path: Path) -> None:
    with Workspace.open(tmp_path / "ws") as ws:
        heard = []
        ws.models.on_activated(heard.append)
        first = register_version(ws, SPEC, build_model(SPEC), {"validation": {"score": 0.5}})
        assert (first.version, first.active, heard) == ("v1", False, [])
        ws.models.activate("tiny", "v1")
        second = register_version(
            ws, SPEC, build_model(SPEC), {}, manifest={"items": []}, activate=True
        )
        assert second.active and [m.version for m in heard] == ["v1", "v2"]
        folder = version_dir(ws, "tiny", "v2")
        assert sorted(p.name for p in folder.iterdir()) == [
            MANIFEST, "metrics.json", "spec.json", "weights.safetensors",
        ]  # fmt: skip
        assert ws.models.active_versions() == {"tiny": "v2"}
        ws.models.rollback("tiny")  # through activate: heard too
        assert [m.version for m in heard] == ["v1", "v2", "v1"]


def test_a_failed_registration_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Workspace.open(tmp_path / "ws") as ws:

        def full_disk(*args: object, **kwargs: object) -> None:
            raise SaveError(f"{ws.root}: could not register: disk full")

        monkeypatch.setattr(ws.models, "register", full_disk)
        with pytest.raises(SaveError, match="disk full"):
            register_version(ws, SPEC, build_model(SPEC), {})
        monkeypatch.undo()
        assert not version_dir(ws, "tiny", "v1").exists() and ws.models.list() == []
        assert register_version(ws, SPEC, build_model(SPEC), {}).version == "v1"


def test_weights_that_are_not_finite_are_never_registered(tmp_path: Path) -> None:
    """A diverged training run (or `models add` of NaN weights) must not become a version
    that stores "no finding" with probability NaN on every image (issue 17)."""
    model = build_model(SPEC)
    with torch.no_grad():
        model.net.segmentation_head[0].bias.fill_(float("nan"))
    with Workspace.open(tmp_path / "ws") as ws:
        with pytest.raises(UnusableWeights, match=r"model tiny version v1: tensor net.segm"):
            register_version(ws, SPEC, model, {})
        assert not version_dir(ws, "tiny", "v1").exists() and ws.models.list() == []
        path = tmp_path / "nan.safetensors"
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
        with pytest.raises(UnusableWeights, match=r"nan.safetensors: tensor net.segm"):
            add_model(ws, SPEC, path)
        assert ws.models.list() == []


def test_learnt_from_follows_the_versions_a_version_was_trained_from(tmp_path: Path) -> None:
    with Workspace.open(tmp_path / "ws") as ws:
        model = build_model(SPEC)
        register_version(ws, SPEC, model, {})  # v1: added from outside, no manifest
        split = lambda train: {"grouped_by": "patient", "train": train, "val": [99]}  # noqa: E731
        register_version(ws, SPEC, model, {}, manifest={"split": split([1, 2]),
                                                        "trained_from": "v1"})  # fmt: skip
        register_version(ws, SPEC, model, {}, manifest={"split": split([3]),
                                                        "trained_from": "v2"})  # fmt: skip
        assert learnt_from(ws, "tiny", "v1") == set()
        assert learnt_from(ws, "tiny", "v2") == {1, 2}
        assert learnt_from(ws, "tiny", "v3") == {1, 2, 3}
        assert learnt_from(ws, "tiny", "v9") == set()
