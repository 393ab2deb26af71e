"""A real (tiny) model in the app: proposals appear, H shows its Grad-CAM, versions switch."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from medviewer.models.spec import ModelSpec
from medviewer.models.versions import add_model

SPEC = ModelSpec.from_dict(
    {
        "name": "tiny",
        "task": "segmentation+classification",
        "architecture": "FPN",
        "encoder": "mobilenet_v2",
        "classes": ["background", "finding"],
        "labels": ["finding"],
        "input": {"size": [64, 64]},
    }
)


@pytest.fixture
def with_model(window, qtbot):
    add_model(window.ws, SPEC, None)
    window.host.start()
    qtbot.waitUntil(lambda: window.host.versions.get("tiny") == "v1", timeout=60_000)
    qtbot.waitUntil(lambda: window.device_label.text() == "CPU", timeout=10_000)  # loaded, no error
    image = window.review.state.image.id
    window.open_image(image)
    qtbot.waitUntil(lambda: window.review.state.proposal is not None, timeout=60_000)
    return window


def test_proposal_labels_and_worklist(with_model, qtbot) -> None:
    window = with_model
    image = window.review.state.image.id
    assert window.review.state.proposal_revision.model_version == "v1"
    assert "AI " in window.labels.box("finding").text()
    qtbot.waitUntil(
        lambda: (
            next(r for r in window.worklist.model.rows if r.id == image).ai_uncertainty is not None
        ),
        timeout=10_000,
    )


def test_h_shows_grad_cam(with_model, qtbot) -> None:
    window = with_model
    qtbot.keyClick(window, Qt.Key.Key_H)
    qtbot.waitUntil(lambda: window._heat_for is not None, timeout=60_000)
    heat = window.view.heat_item.image
    assert heat is not None and heat.shape[:2] == (64, 80)  # native size, RGBA
    assert window.view.heat_item.isVisible()
    qtbot.keyClick(window, Qt.Key.Key_H)
    assert not window.view.heat_item.isVisible()


def test_activating_another_version_reruns(with_model, qtbot) -> None:
    window = with_model
    image = window.review.state.image.id
    add_model(window.ws, SPEC, None, activate=False)  # v2, registered but not active
    window.models.show_models(window.ws.models.list())
    window._activate_model("tiny", "v2")
    qtbot.waitUntil(
        lambda: (
            window.review.state.proposal_revision is not None
            and window.review.state.proposal_revision.model_version == "v2"
        ),
        timeout=60_000,
    )
    versions = {r.model_version for r in window.ws.revisions.history(image) if r.source == "ai"}
    assert versions == {"v1", "v2"}  # the old proposal stays in the history
    assert np.array_equal(window.review.state.proposal.shape, (64, 80))


def test_activation_elsewhere_reloads_the_runner(with_model, qtbot) -> None:
    """A training job that activates its version, or `medviewer models activate`, changes the
    workspace from another process (here: another connection); the app follows within seconds
    even though its Retrain dialog was closed with Esc."""
    from medviewer.workspace import Workspace

    window = with_model
    add_model(window.ws, SPEC, None, activate=False)  # v2
    with Workspace.open(window.ws.root) as other:
        other.models.activate("tiny", "v2")
    qtbot.waitUntil(lambda: window.host.runner.models.get("tiny") == "v2", timeout=30_000)
    qtbot.waitUntil(
        lambda: (
            window.review.state.proposal_revision is not None
            and window.review.state.proposal_revision.model_version == "v2"
        ),
        timeout=60_000,
    )
