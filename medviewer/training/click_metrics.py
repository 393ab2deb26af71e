"""Click metrics of a click-guided model: the robot (`inference.click_robot`) corrects the
model's own proposal click by click, and NoC@85/90 and the Dice after 1, 3 and 5 clicks are
read off each object's Dice curve (`training.protocol.ClickMetrics` says what is reported).

One object is one image and one class present in its truth; the robot's clicks are of that
class, the previous mask is the model's last answer. A curve stops once it has reached 0.90 and
has 5 clicks (nothing reported needs more), or at `max_clicks`. Objects run in lockstep, a batch
of them per forward pass, so a validation of N images costs about `max_clicks` batched passes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from medviewer.imaging import ImageLoader, ImageLoadError
from medviewer.inference.click_robot import dice, next_click
from medviewer.inference.clicks import Click
from medviewer.inference.engine import Engine, probabilities
from medviewer.inference.errors import InferenceError
from medviewer.inference.guided import Forward, engine_forward, guided_outputs
from medviewer.inference.postprocess import postprocess
from medviewer.inference.preprocess import to_channels
from medviewer.models.errors import ModelError
from medviewer.models.spec import ModelSpec
from medviewer.models.versions import learnt_from, load_version
from medviewer.training.metrics import training_autocast
from medviewer.training.protocol import CLICK_DICE_AFTER, VALIDATION_MAX_CLICKS, ClickMetrics
from medviewer.workspace import training_snapshot

if TYPE_CHECKING:
    from medviewer.training.data import Prepared
    from medviewer.workspace import Workspace

# (image indices, their clicks, their previous label maps) -> the model's label maps
Run = Callable[[list[int], list[list[Click]], list[np.ndarray | None]], list[np.ndarray]]
SUFFICES = 0.90  # a curve reaching this Dice (after CLICK_DICE_AFTER's last count) may stop


@dataclass
class _Object:
    image: int
    value: int
    truth: np.ndarray  # bool
    pred: np.ndarray  # the full label map of the last answer
    clicks: list[Click] = field(default_factory=list)
    curve: list[float] = field(default_factory=list)  # Dice after 0, 1, 2, ... clicks

    def done(self, max_clicks: int) -> bool:
        clicks = len(self.curve) - 1
        return clicks >= max_clicks or (
            clicks >= max(CLICK_DICE_AFTER) and max(self.curve) >= SUFFICES
        )


def guided_labels(forward: Forward, spec: ModelSpec, images: list[np.ndarray]) -> Run:
    """A Run over (H, W, C) images (`preprocess.to_channels`): the label maps inference shows
    (`postprocess`) for the clicks and previous masks given."""

    def run(idx: list[int], clicks: list[list[Click]], prevs: list) -> list[np.ndarray]:
        outs = guided_outputs(forward, spec, [images[i] for i in idx], clicks, prevs)
        return [postprocess(o.probs, spec) for o in outs]  # type: ignore[arg-type]

    return run


def _chunked(run: Run, batch: int, idx: list[int], clicks: list, prevs: list) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    for a in range(0, len(idx), batch):
        out += run(idx[a : a + batch], clicks[a : a + batch], prevs[a : a + batch])
    return out


def click_curves(
    run: Run, truths: list[np.ndarray], spec: ModelSpec, max_clicks: int, batch: int = 8
) -> list[list[float]]:
    """Each object's Dice with 0, 1, 2, ... of the robot's clicks (module docstring)."""
    n = len(truths)
    proposals = _chunked(run, batch, list(range(n)), [[] for _ in range(n)], [None] * n)
    values = [1] if spec.num_classes <= 2 else list(range(1, spec.num_classes))
    objects = []
    for i, t in enumerate(truths):
        for v in values:
            truth = (t > 0) if spec.num_classes <= 2 else (t == v)
            if truth.any():
                obj = _Object(i, v, truth, proposals[i])
                obj.curve.append(dice(_as_class(obj.pred, v, spec), truth))
                objects.append(obj)
    while True:
        active = [o for o in objects if not o.done(max_clicks)]
        if not active:
            break
        asked = []
        for o in active:
            click = next_click(o.truth, _as_class(o.pred, o.value, spec), o.value)
            if click is None:  # nothing left to correct
                o.curve.append(o.curve[-1])
            else:
                o.clicks.append(click)
                asked.append(o)
        if asked:
            preds = _chunked(
                run, batch, [o.image for o in asked], [o.clicks for o in asked],
                [o.pred for o in asked],
            )  # fmt: skip
            for o, pred in zip(asked, preds, strict=True):
                o.pred = pred
                o.curve.append(dice(_as_class(pred, o.value, spec), o.truth))
    return [o.curve for o in objects]


def _as_class(labels: np.ndarray, value: int, spec: ModelSpec) -> np.ndarray:
    return labels > 0 if spec.num_classes <= 2 else labels == value


def summarise(curves: list[list[float]], max_clicks: int) -> ClickMetrics:
    """NoC, Dice after k clicks and the share never reaching 0.90, over objects."""
    if not curves:
        return ClickMetrics(max_clicks=max_clicks)

    def noc(threshold: float) -> float:
        return float(
            np.mean(
                [next((k for k, d in enumerate(c) if d >= threshold), max_clicks) for c in curves]
            )
        )

    after: dict[str, Any] = {}
    for k in (0, *CLICK_DICE_AFTER):
        if k <= max_clicks:
            after[str(k)] = float(np.mean([c[min(k, len(c) - 1)] for c in curves]))
    return ClickMetrics(
        noc85=noc(0.85),
        noc90=noc(0.90),
        dice_after=after,
        never_90=float(np.mean([max(c) < 0.90 for c in curves])),
        objects=len(curves),
        max_clicks=max_clicks,
    )


@torch.no_grad()
def validate_clicks(
    model: nn.Module,
    images: np.ndarray,
    masks: list[np.ndarray],
    spec: ModelSpec,
    device: torch.device | str,
    max_clicks: int = VALIDATION_MAX_CLICKS,
    batch_size: int = 8,
) -> ClickMetrics:
    """Click metrics of `model` on images at the input size ((N, H, W, C), 0..1, as
    `training.data.Prepared` holds them) and their truth label maps; the model is left in eval
    mode on `device`, at training's precision."""
    device = torch.device(device)
    model.to(device=device, dtype=torch.float32, memory_format=torch.channels_last)
    model.eval()
    amp = training_autocast(device)

    def forward(x: np.ndarray) -> dict[str, np.ndarray]:
        t = torch.from_numpy(x).to(device).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            out = model(t)
        return probabilities(out, spec)

    run = guided_labels(forward, spec, list(images))
    return summarise(click_curves(run, masks, spec, max_clicks, batch_size), max_clicks)


SCORE_CLICKS = 3  # a guided model's score weighs its Dice after this many clicks


def with_click_score(
    model: nn.Module,
    val: Prepared,
    metrics: dict[str, Any],
    spec: ModelSpec,
    device: torch.device | str,
    batch_size: int = 8,
) -> dict[str, Any]:
    """`metrics` (`training.metrics.evaluate`'s, without clicks) with a guided model's click
    metrics under "clicks" and its score: the mean of its Dice without clicks and after
    SCORE_CLICKS of the robot's clicks, so the best epoch (and Retrain's comparison with the
    active version) weighs both uses of one model. The Dice without clicks stays as
    "score_without_clicks". An unguided model's metrics are returned as they are: clicks
    cannot change its answer, so the same mean is its score without clicks."""
    if not spec.guided or metrics.get("mean_dice") is None:
        return metrics
    clicks = validate_clicks(model, val.images, list(val.masks), spec, device,
                             batch_size=batch_size).to_dict()  # fmt: skip
    after = clicks["dice_after"].get(str(SCORE_CLICKS))
    score = metrics["score"] if after is None else (metrics["mean_dice"] + after) / 2
    return {**metrics, "clicks": clicks, "score_without_clicks": metrics["score"], "score": score}


def evaluate_clicks(
    ws: Workspace,
    name: str,
    max_clicks: int = 20,
    device: str = "auto",
    loader: ImageLoader | None = None,
) -> tuple[ClickMetrics, str, list[tuple[int, str]]]:
    """The click metrics of model `name`'s active version on its held-out confirmed images:
    the confirmed images it applies to (`TrainingSnapshot.for_model`, truth from
    `Revisions.confirmed`) that the version never learnt from (`models.versions.learnt_from`).
    Returns the metrics, the version and the images skipped with why."""

    model, spec, version = load_version(ws, name)
    if not spec.guided:
        raise ModelError(f'model {name} takes no clicks: its spec has no "guidance"')
    seen = learnt_from(ws, name, version)
    names = {m.name for m in ws.models.list()}
    items = [
        i for i in training_snapshot(ws).for_model(spec, names)
        if i.image_id not in seen and i.mask is not None
    ]  # fmt: skip
    if not items:
        raise ModelError(
            f"model {name} {version}: no held-out confirmed masks in {ws.root} (every confirmed "
            "image it applies to was learnt from)"
        )
    loader = loader or ImageLoader()
    images, truths, skipped = [], [], []
    for item in items:
        try:
            x = to_channels(loader.image(item.frame), spec)
        except (ImageLoadError, InferenceError) as e:
            skipped.append((item.image_id, str(e)))
            continue
        truth = ws.revisions.read_mask(item.mask)  # type: ignore[arg-type]
        if truth.shape != x.shape[:2]:
            skipped.append((item.image_id, f"mask {truth.shape} is not the image's size"))
            continue
        if spec.num_classes > 2 and int(truth.max(initial=0)) >= spec.num_classes:
            skipped.append((item.image_id, f"mask has a class {spec.name} does not have"))
            continue
        images.append(x)
        truths.append(truth)
    engine = Engine(model, spec, device=device)
    run = guided_labels(engine_forward(engine), spec, images)
    curves = click_curves(run, truths, spec, max_clicks, engine.batch_size)
    return summarise(curves, max_clicks), version, skipped
