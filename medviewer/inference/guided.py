"""Running a click-guided model with clicks: the crop around the clicks goes through the
network with its guidance (`inference.clicks`), and the answer comes back at the image's size.

`guided_outputs` takes any forward function, so inference (`propose_with_clicks`, on an Engine),
training's validation and `evaluate-clicks` run clicks the same way. Without clicks a guided
model proposes on its own through the usual path (`Engine.run`: empty guidance).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

import numpy as np

from medviewer.imaging.display import Image
from medviewer.inference.clicks import Click, check_clicks, model_input, paste
from medviewer.inference.engine import Engine, RawOutput
from medviewer.inference.errors import InferenceError
from medviewer.inference.preprocess import to_channels
from medviewer.inference.proposal import Proposal, make_proposal
from medviewer.models.spec import ModelSpec

# (N, C', h, w) network input -> {"mask": (N, classes, h, w), "labels": (N, L)} probabilities
Forward = Callable[[np.ndarray], dict[str, np.ndarray]]


def engine_forward(engine: Engine) -> Forward:
    return lambda x: {k: v.float().cpu().numpy() for k, v in engine.forward(x).items()}


def guided_outputs(
    forward: Forward,
    spec: ModelSpec,
    images: list[np.ndarray],
    clicks: list[list[Click]],
    prev_masks: list[np.ndarray | None],
) -> list[RawOutput]:
    """One batch: each (H, W, C) image (`preprocess.to_channels`) with its clicks and previous
    label map -> its class probabilities at (H, W) and its label probabilities."""
    prepared = [
        model_input(x, spec, c, p) for x, c, p in zip(images, clicks, prev_masks, strict=True)
    ]
    out = forward(np.stack([inp for inp, _ in prepared]))
    results = []
    for k, (x, (_, box), prev) in enumerate(zip(images, prepared, prev_masks, strict=True)):
        probs = paste(out["mask"][k], box, x.shape[:2], prev)
        named = (
            {n: float(p) for n, p in zip(spec.labels, out["labels"][k], strict=True)}
            if "labels" in out
            else {}
        )
        results.append(RawOutput(probs, named))
    return results


def propose_with_clicks(
    engine: Engine,
    image: Image,
    version: str,
    clicks: list[Click],
    prev_mask: np.ndarray | None = None,
) -> Proposal:
    """The guided model's mask for `image` given the clinician's clicks (image pixels) and the
    mask they correct (a label map of the image's size, e.g. the last answer). Clicks are the
    clinician's word that a finding is there, so the gate never empties the mask. The clicks
    are recorded in the proposal's `extra`."""
    spec = engine.spec
    if not spec.guided:
        raise InferenceError(f"model {spec.name} takes no clicks (its spec has no guidance)")
    x = to_channels(image, spec)
    check_clicks(clicks, x.shape[:2], spec)
    if prev_mask is not None and prev_mask.shape != x.shape[:2]:
        raise InferenceError(
            f"{image.source}: previous mask is {prev_mask.shape[1]}x{prev_mask.shape[0]}, "
            f"the image {x.shape[1]}x{x.shape[0]}"
        )
    raw = guided_outputs(engine_forward(engine), spec, [x], [clicks], [prev_mask])[0]
    # A two-stage gate's classifier is not run here: without clicks use `proposal.propose`.
    gated = not clicks and spec.gate.type != "two_stage"
    proposal = make_proposal(engine, raw, version, gated=gated)
    proposal.extra["clicks"] = [asdict(c) for c in clicks]
    return proposal
