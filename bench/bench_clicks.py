"""Click to updated mask: one click on a 512x512 image through a demo's click-guided model.

Ours is what the app's click tool runs for each click (`inference.guided.propose_with_clicks`):
the crop around the clicks and the previous mask, resized to the model's input with its
guidance channels, one forward pass, pasted back into the image and post-processed into the
label map shown. The clicks are the click robot's (`inference.click_robot.next_click`) on each
answer in turn, as a clinician correcting the proposal would click. The baseline is a
full-image re-run: the same model's proposal for the whole image (`inference.proposal.propose`,
the path a model without clicks takes), timed in the same run. Both run on the Engine at its
default precision, the model loaded as the demo loads it (`demo.shipped`: its shipped weights
when the index has some for the spec, else the same network untrained: the same work).

Times are the median over the clicks of every repeat; the first call of each path is a
warm-up. Target: at most 300 ms a click on a 2-core CPU (issue 15); on a GPU at most 50 ms
(run there with --device cuda).
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from harness import Row

from medviewer.demo.cases import FULL, GUIDED, model_specs
from medviewer.demo.phantoms import make_case
from medviewer.demo.shipped import load_shipped
from medviewer.imaging.display import Image
from medviewer.inference.click_robot import next_click
from medviewer.inference.clicks import Click
from medviewer.inference.engine import Engine
from medviewer.inference.guided import propose_with_clicks
from medviewer.inference.proposal import propose
from medviewer.models.registry import build_model

NAME = "clicks"
SIZE = 512
TARGET_S = 0.300
CLICKS, QUICK_CLICKS = 5, 3
REPEATS, QUICK_REPEATS = 3, 1
SEED = 10**7  # phantoms from here on: none of the demo's; the first with a finding is clicked


def _engine(task: str, device: str) -> tuple[Engine, str]:
    spec = model_specs(FULL)[task]
    shipped = load_shipped(spec)
    if shipped is not None:
        model, spec, _ = shipped
        where = "shipped weights"
    else:
        torch.manual_seed(0)
        model, where = build_model(spec, pretrained=False).eval(), "untrained (no shipped file)"
    return Engine(model, spec, device=device), where


def _session(engine: Engine, image: Image, truth: np.ndarray, n: int) -> list[float]:
    """Seconds of each of `n` robot clicks, each on the last answer."""
    spec = engine.spec
    mask = propose(engine, [image], "bench")[0].mask
    clicks: list[Click] = []
    times = []
    value = int(truth.max())  # the largest class id present: a kidney or the lesion
    for _ in range(n):
        pred = mask > 0 if spec.num_classes <= 2 else mask == value
        click = next_click(truth == value, pred, value)
        if click is None:  # nothing left to correct: click inside again
            click = clicks[-1] if clicks else Click(*np.argwhere(truth == value)[0], True, value)
        clicks.append(click)
        start = time.perf_counter()
        mask = propose_with_clicks(engine, image, "bench", clicks, mask).mask
        times.append(time.perf_counter() - start)
    return times


def run(quick: bool = False, device: str = "cpu") -> list[Row]:
    n, repeats = (QUICK_CLICKS, QUICK_REPEATS) if quick else (CLICKS, REPEATS)
    rows = []
    for task in GUIDED:
        engine, where = _engine(task, device)
        case = next(c for k in range(100) if (c := make_case(task, SEED + k, SIZE)).finding)
        image = Image(pixels=case.image, source=f"{task} phantom {case.seed}")
        truth = case.mask.astype(np.uint8)
        _session(engine, image, truth, 1)  # warm-up
        ours: list[float] = []
        base: list[float] = []
        for _ in range(repeats):
            ours += _session(engine, image, truth, n)
            for _ in range(n):
                start = time.perf_counter()
                propose(engine, [image], "bench")
                base.append(time.perf_counter() - start)
        mine, theirs = statistics.median(ours), statistics.median(base)
        rows.append(
            Row(
                NAME,
                f"{task}: click -> mask, {SIZE}x{SIZE} ({engine.spec.name})",
                mine,
                "full-image re-run",
                theirs,
                target=f"<= {TARGET_S * 1000:.0f} ms" if device == "cpu" else "<= 50 ms",
                met=mine <= (TARGET_S if device == "cpu" else 0.050),
                note=(
                    f"clicks: {engine.spec.name}, {where}, input {engine.spec.input_size}, "
                    f"{len(ours)} clicks, {torch.get_num_threads()} thread(s), {device}"
                ),
            )
        )
    return rows
