"""Where a model applies: declared in its spec, decided by one function for infer, the
runner, the app and the training scope."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medviewer.cli import main
from medviewer.imaging import Instance
from medviewer.models.errors import SpecError
from medviewer.models.scope import why_not_applicable
from medviewer.models.spec import ModelSpec
from medviewer.workspace import Workspace, training_snapshot
from tests.specs import tiny_segmenter

BASE = tiny_segmenter(
    "ct-organs",
    encoder="mobilenet_v2",
    applies_to={"modalities": ["ct"], "body_parts": ["ABDOMEN"], "colour": "grey"},
)
CT = Instance(Path("ct.dcm"), "dicom", "1", "2", "3", "p", 128, 128, modality="CT")


def test_each_rule_says_why() -> None:
    spec = ModelSpec.from_dict(BASE)
    assert spec.applies_to.modalities == ("CT",) and spec.applies_to.declared
    assert why_not_applicable(spec, CT) is None
    assert why_not_applicable(spec, dataclasses.replace(CT, body_part="ABDOMEN")) is None
    cases = {
        "modality MR; ct-organs reads CT": dataclasses.replace(CT, modality="MR"),
        "body part HEAD; ct-organs reads ABDOMEN": dataclasses.replace(CT, body_part="HEAD"),
        "a colour image; ct-organs reads grey images": dataclasses.replace(
            CT, samples_per_pixel=3, photometric="RGB"
        ),
        "image is 10x10; ct-organs needs at least 32x32": dataclasses.replace(
            CT, rows=10, columns=10
        ),
    }
    for reason, inst in cases.items():
        assert why_not_applicable(spec, inst) == reason
    series = ModelSpec.from_dict({**BASE, "applies_to": {"series_description": "^axial"}})
    assert (
        why_not_applicable(series, dataclasses.replace(CT, series_description="Axial 5mm")) is None
    )
    assert why_not_applicable(series, dataclasses.replace(CT, series_description="COR")) == (
        "series 'COR' does not match ct-organs's '^axial'"
    )


def test_a_spec_without_scope_applies_to_every_image_big_enough() -> None:
    spec = ModelSpec.from_dict({k: v for k, v in BASE.items() if k != "applies_to"})
    assert not spec.applies_to.declared
    assert why_not_applicable(spec, dataclasses.replace(CT, modality="MR")) is None
    assert ModelSpec.from_dict(spec.to_dict()) == spec  # round trip through JSON-like dicts


@pytest.mark.parametrize(
    ("scope", "message"),
    [
        ([], "applies_to must be an object"),
        ({"modality": ["CT"]}, "unknown field(s) modality"),
        ({"modalities": "CT MR".split() + [5]}, "modalities must be a list of names"),
        ({"colour": "sepia"}, "colour is 'sepia'; valid: any, grey, colour"),
        ({"min_size": 8}, "min_size must be a whole number from 32"),
        ({"series_description": "(unclosed"}, "series_description is not a regular expression"),
    ],
)
def test_bad_scopes_are_clear_errors(scope: object, message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        ModelSpec.from_dict({**BASE, "applies_to": scope}, "spec.json")


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """A CT, an MR, a 10x10 RT dose and a colour photograph."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm", "rtdose.dcm"):
        shutil.copy(get_testdata_file(name), folder / name)
    photos = folder / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "eye.png"), np.random.default_rng(0).integers(0, 255, (64, 64, 3)))
    return folder


def test_infer_proposes_only_where_the_model_applies(
    mixed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws_dir = tmp_path / "ws"
    spec = tmp_path / "spec.json"
    spec.write_text(ModelSpec.from_dict({**BASE, "applies_to": {"modalities": ["CT"]}}).to_json())
    assert main(["import", str(mixed), "--workspace", str(ws_dir)]) == 0
    assert main(["models", "--workspace", str(ws_dir), "add", str(spec)]) == 0
    capsys.readouterr()
    code = main(["infer", "--workspace", str(ws_dir), "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0, out
    with Workspace.open(ws_dir) as ws:
        frames = len(ws.images())
        proposed = {r.modality for r in ws.images() if ws.revisions.original(r.id) is not None}
    assert proposed == {"CT"}
    assert f"ct-organs v1: 1 proposed, 0 skipped (already done), {frames - 1} not applicable" in out
    assert pydicom.dcmread(mixed / "rtdose.dcm").Modality == "RTDOSE"


def test_training_scope_follows_the_spec(mixed: Path, tmp_path: Path) -> None:
    with Workspace.open(tmp_path / "ws") as ws:
        ws.import_paths([mixed])
        for row in ws.images():
            mask = np.zeros((row.rows, row.columns), np.uint8)
            ws.revisions.save_mask(row.id, mask, source="human", author="dr")
        snapshot = training_snapshot(ws)
        ct_only = ModelSpec.from_dict({**BASE, "applies_to": {"modalities": ["CT"]}})
        assert [i.frame.instance.modality for i in snapshot.for_model(ct_only, {"ct-organs"})] == [
            "CT"
        ]
        # Undeclared beside other models: only images whose revisions name it (none here).
        anything = ModelSpec.from_dict({k: v for k, v in BASE.items() if k != "applies_to"})
        assert snapshot.for_model(anything, {"ct-organs", "other"}) == []
        alone = snapshot.for_model(anything, {"ct-organs"})
        assert {i.frame.instance.modality for i in alone} == {"CT", "MR", "OT"}  # not 10x10
