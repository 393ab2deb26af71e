"""A model version registered on one machine loads on another (issue 16): on a PostgreSQL
workspace the worker login registers a version from its own folder, and a reviewer login in
another folder, which cannot see the worker's, fetches its files from the workspace's blob
store (in the database, or in the shared blob folder), checks them and runs inference."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from medviewer.inference.engine import Engine
from medviewer.models.registry import build_model
from medviewer.models.spec import ModelSpec
from medviewer.models.versions import learnt_from, load_version, register_version, version_dir
from medviewer.workspace import Workspace
from medviewer.workspace.location import write_workspace_file
from medviewer.workspace.roles import grant
from tests.specs import tiny_segmenter
from tests.workspace.pg_server import PostgresServer

SPEC = ModelSpec.from_dict(tiny_segmenter("tiny"))
_names = itertools.count()


def _outputs(model: torch.nn.Module, spec: ModelSpec) -> np.ndarray:
    engine = Engine(model, spec, device="cpu", backend="torch", precision="fp32")
    batch = np.random.default_rng(0).random((1, spec.network_channels, 64, 64), dtype=np.float32)
    return next(iter(engine.forward(batch).values())).float().numpy()


@pytest.mark.parametrize("blobs", ["database", "folder"])
def test_a_version_the_worker_registers_loads_in_the_reviewers_folder(
    tmp_path: Path, postgres_server: PostgresServer, blobs: str
) -> None:
    url = postgres_server.database()
    n = next(_names)
    worker, reviewer = f"vwrk{n}", f"vrev{n}"
    postgres_server.admin(f"CREATE ROLE {worker} LOGIN; CREATE ROLE {reviewer} LOGIN")
    with Workspace.create(tmp_path / "admin", database=url, blobs=blobs) as ws:
        grant(ws, worker, "worker")
        grant(ws, reviewer, "reviewer")
    for login in (worker, reviewer):  # each machine's own folder, logged in as itself
        write_workspace_file(tmp_path / login, url.replace("postgres@", f"{login}@"))

    model = build_model(SPEC, pretrained=False)
    with Workspace.open(tmp_path / worker) as ws:
        registered = register_version(
            ws, SPEC, model, {"note": "x"}, manifest={"split": {"train": [3, 4]}}, activate=True
        )
    expected = _outputs(model, SPEC)
    assert sorted(registered.files) == [
        "manifest.json", "metrics.json", "spec.json", "weights.safetensors",
    ]  # fmt: skip
    # The reviewer's machine cannot see the worker's disk.
    shutil.rmtree(tmp_path / worker / "models")

    with Workspace.open(tmp_path / reviewer) as ws:
        loaded, spec, version = load_version(ws, "tiny")
        assert version == "v1" and spec == SPEC
        np.testing.assert_allclose(_outputs(loaded, spec), expected, rtol=1e-5, atol=1e-6)
        assert learnt_from(ws, "tiny", "v1") == {3, 4}
        cached = version_dir(ws, "tiny", "v1")
        assert cached.parent.parent.parent == tmp_path / reviewer
        # A damaged local copy is noticed by its SHA-256 and fetched again.
        (cached / "weights.safetensors").write_bytes(b"not weights")
        again, _, _ = load_version(ws, "tiny", "v1")
        np.testing.assert_allclose(_outputs(again, spec), expected, rtol=1e-5, atol=1e-6)
