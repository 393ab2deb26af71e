"""The demo's click story (issue 15): a wrong AI proposal on a fresh kidney phantom (a lesion the
shipped click-guided abdomen model outlines poorly), corrected by two of the clinician's clicks.
`python -m medviewer.demo.click_story --out PNG` draws it: the README's figure.

The phantom is written and read back as the demo's DICOM files are, the proposal is the model's
own (`proposal.propose`, what the worklist shows) and each click is the click robot's
(`click_robot.next_click`: the middle of the larger error region, inside or outside) on the
last answer (`guided.propose_with_clicks`, what the app's click tool runs).
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pydicom

from medviewer.atomic import atomic_write_bytes
from medviewer.demo.cases import FULL, model_specs
from medviewer.demo.phantoms import make_case
from medviewer.demo.shipped import load_shipped
from medviewer.demo.writers import write_dicom
from medviewer.imaging.display import Image, info_from_dataset, render
from medviewer.inference.click_robot import dice, next_click
from medviewer.inference.clicks import Click
from medviewer.inference.engine import Engine
from medviewer.inference.guided import propose_with_clicks
from medviewer.inference.proposal import propose

# A phantom none of the demo's models learnt from (the demo's seeds are small), chosen among
# fresh seeds for a proposal that outlines its lesion poorly; class 3 is the lesion.
TASK, SEED, CLASS, CLICKS = "abdomen", 10**7 + 10, 3, 2


@dataclass
class Story:
    image: Image
    truth: np.ndarray  # bool, the lesion
    masks: list[np.ndarray]  # the proposal, then the label map after each click
    clicks: list[Click]

    @property
    def dice(self) -> list[float]:
        return [dice(m == CLASS, self.truth) for m in self.masks]


def tell(folder: Path) -> Story:
    """The story on the shipped model, its phantom written to `folder`."""
    spec = model_specs(FULL)[TASK]
    shipped = load_shipped(spec)
    if shipped is None:
        raise ValueError(f"{spec.name}: no shipped weights for the demo's guided spec")
    model, spec, _ = shipped
    engine = Engine(model, spec, device="cpu")
    case = make_case(TASK, SEED, FULL.image_size)
    ds = pydicom.dcmread(write_dicom(case, folder / "story.dcm"))
    image = Image(ds.pixel_array, info_from_dataset(ds), source=str(folder / "story.dcm"))
    truth = case.mask == CLASS
    masks, clicks = [propose(engine, [image], "v1")[0].mask], []
    for _ in range(CLICKS):
        click = next_click(truth, masks[-1] == CLASS, CLASS)
        if click is None:
            break
        clicks.append(click)
        masks.append(propose_with_clicks(engine, image, "v1", list(clicks), masks[-1]).mask)
    return Story(image, truth, masks, clicks)


def figure(story: Story, half: int = 40, scale: int = 4) -> np.ndarray:
    """The proposal and the answer after each click side by side (BGR), each the region of
    2 * `half` pixels around the lesion enlarged `scale` times: the lesion as drawn filled in
    red, its true outline in yellow, inside clicks green and outside clicks blue."""
    grey = render(story.image)
    grey = grey if grey.ndim == 3 else cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    h, w = grey.shape[:2]
    rows, cols = np.nonzero(story.truth)
    top = int(np.clip(rows.mean() - half, 0, max(0, h - 2 * half)))
    left = int(np.clip(cols.mean() - half, 0, max(0, w - 2 * half)))
    region = slice(top, top + 2 * half), slice(left, left + 2 * half)
    truth = story.truth[region].astype(np.uint8)
    outline, _ = cv2.findContours(truth, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    panels = []
    for k, (mask, d) in enumerate(zip(story.masks, story.dice, strict=True)):
        panel = grey[region].copy()
        lesion = mask[region] == CLASS
        panel[lesion] = (0.5 * panel[lesion] + 0.5 * np.array([40, 40, 230])).astype(np.uint8)
        ph, pw = panel.shape[:2]
        panel = cv2.resize(panel, (pw * scale, ph * scale), interpolation=cv2.INTER_NEAREST)
        cv2.drawContours(panel, [c * scale + scale // 2 for c in outline], -1, (0, 230, 255), 2)
        for c in story.clicks[:k]:
            centre = (int((c.col - left + 0.5) * scale), int((c.row - top + 0.5) * scale))
            cv2.circle(panel, centre, 7, (80, 220, 80) if c.positive else (230, 120, 40), -1)
        title = "AI proposal" if k == 0 else f"after {k} click{'s' if k > 1 else ''}"
        cv2.putText(panel, f"{title}: Dice {d:.2f}", (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                    (255, 255, 255), 1, cv2.LINE_AA)  # fmt: skip
        panels.append(cv2.copyMakeBorder(panel, 0, 0, 0, 4, cv2.BORDER_CONSTANT))
    return np.hstack(panels)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m medviewer.demo.click_story",
        description="Draw the demo's click story: a wrong proposal fixed by two clicks.",
    )
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="click-story-") as tmp:
        story = tell(Path(tmp))
    ok, png = cv2.imencode(".png", figure(story))
    if not ok:
        raise SystemExit(f"{args.out}: cannot encode the figure")
    atomic_write_bytes(args.out, png.tobytes())
    print(f"{args.out}: Dice " + " -> ".join(f"{d:.3f}" for d in story.dice))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
