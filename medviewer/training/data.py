"""Training data: a snapshot of human-confirmed revisions, split by patient, prepared exactly as
inference prepares an image (to_channels -> resize_to -> normalise), with seeded augmentation.

Negatives (approved empty masks, labels with nothing ticked) are kept: a model that never sees
a normal image learns to paint something on every image.
"""

from __future__ import annotations

import random
from collections.abc import Sequence, Set
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch

from medviewer.imaging import ImageLoader, ImageLoadError
from medviewer.inference.click_robot import perturbed, simulated_clicks
from medviewer.inference.clicks import crop_box, encode
from medviewer.inference.errors import InferenceError
from medviewer.inference.preprocess import normalise, resize_to, to_channels, with_guidance
from medviewer.models.spec import ModelSpec
from medviewer.training.errors import TrainingError
from medviewer.workspace.snapshot import TrainingItem

if TYPE_CHECKING:
    from medviewer.workspace import Workspace


# -- split -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    train: list[TrainingItem]
    val: list[TrainingItem]
    grouped_by: str  # patient | study | image
    seen_held_out: bool = False  # validation includes patients the compared version learnt from

    def manifest(self) -> dict[str, Any]:
        return {
            "grouped_by": self.grouped_by,
            "seen_held_out": self.seen_held_out,
            "train": [i.image_id for i in self.train],
            "val": [i.image_id for i in self.val],
        }


def _group(item: TrainingItem, by: str) -> str:
    if by == "image":
        return f"image:{item.image_id}"
    # Raster files have no patient id; their study is their folder.
    return item.patient_id or f"study:{item.study_uid}"


def split_by_patient(
    items: Sequence[TrainingItem], val_fraction: float, seed: int, seen: Set[int] = frozenset()
) -> Split:
    """Whole patients (or studies when patient ids are empty) go to one side, never slices of
    one patient to both: neighbouring slices are near copies and would inflate the score.

    `seen`: images the version this one will be compared with learnt from (`learnt_from`); their
    patients are not held out, so both are judged on patients neither trained on. When every
    patient was seen, the split ignores it (said so in the manifest: the comparison then favours
    the old version). Only when everything belongs to one patient/folder is the split made per
    image (also said so): there is nothing better to hold out then.
    """
    by = "patient" if any(i.patient_id for i in items) else "study"
    groups = sorted({_group(i, by) for i in items})
    if len(groups) < 2:
        by, groups = "image", sorted({_group(i, "image") for i in items})
    if len(groups) < 2 or val_fraction <= 0:
        raise TrainingError(
            f"need confirmed images of at least 2 patients and a validation fraction above 0 "
            f"to validate (have {len(items)} image(s), val_fraction {val_fraction})"
        )
    random.Random(seed).shuffle(groups)
    known = {_group(i, by) for i in items if i.image_id in seen}
    unseen = [g for g in groups if g not in known]
    n_val = min(len(groups) - 1, max(1, round(val_fraction * len(groups))))
    held = set((unseen or groups)[:n_val])
    val = [i for i in items if _group(i, by) in held]
    train = [i for i in items if _group(i, by) not in held]
    return Split(train, val, by, seen_held_out=bool(known) and not unseen)


def items_from_manifest(ws: Workspace, manifest: dict[str, Any]) -> list[TrainingItem]:
    """The exact items a run started with (resume must not train on a changed set)."""
    out = []
    for entry in manifest["items"]:
        row = ws.image(entry["image"])
        mask = ws.revisions.get(entry["mask_revision"]) if entry["mask_revision"] else None
        labels = ws.revisions.get(entry["labels_revision"]) if entry["labels_revision"] else None
        item = TrainingItem(
            row.id,
            ws.frame_ref(row.id),
            entry["status"],
            row.patient_id,
            row.study_uid,
            mask,
            labels,
        )
        out.append(item)
    return out


# -- prepared arrays -------------------------------------------------------------------------


@dataclass
class Prepared:
    """Images at the model's input size (0..1, before normalisation) and their targets."""

    spec: ModelSpec
    images: np.ndarray  # (N, H, W, C) float32
    masks: np.ndarray  # (N, H, W) uint8; zeros where has_mask is False
    has_mask: np.ndarray  # (N,) bool
    labels: np.ndarray  # (N, L) float32 0/1
    label_known: np.ndarray  # (N, L) float32: 1 where the label's truth is known
    negative: np.ndarray  # (N,) bool: confirmed with no finding
    image_ids: list[int] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (image id, reason)

    def __len__(self) -> int:
        return len(self.image_ids)


def _label_targets(item: TrainingItem, spec: ModelSpec) -> tuple[np.ndarray, np.ndarray]:
    n = len(spec.labels)
    if item.labels is not None:
        ticked = item.labels.labels
        return (
            np.array([ticked.get(k, False) for k in spec.labels], np.float32),
            np.ones(n, np.float32),
        )
    value, known = np.zeros(n, np.float32), np.zeros(n, np.float32)
    if item.mask is not None and n:
        # A mask says only whether there is a finding at all: that is the first label; a
        # negative says no label applies.
        value[0] = 0.0 if item.is_negative else 1.0
        known[0] = 1.0
        if item.is_negative:
            known[:] = 1.0
    return value, known


def prepare(
    ws: Workspace,
    items: Sequence[TrainingItem],
    spec: ModelSpec,
    loader: ImageLoader | None = None,
) -> Prepared:
    """Load and resize every item once; unreadable images are skipped with their reason."""
    loader = loader or ImageLoader()
    h, w = spec.input_size
    images, masks, has_mask, labels, known, negative, ids, skipped = ([] for _ in range(8))
    for item in items:
        try:
            x = resize_to(to_channels(loader.image(item.frame), spec), spec.input_size)
        except (ImageLoadError, InferenceError) as e:
            skipped.append((item.image_id, str(e)))
            continue
        if item.mask is not None:
            m = ws.revisions.read_mask(item.mask)
            m = cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST)  # class ids stay ids
            top = int(m.max()) if m.size else 0
            if spec.num_classes == 2:
                m = (m > 0).astype(np.uint8)  # binary: any painted class is the finding
            elif top >= spec.num_classes:
                reason = f"mask has class {top}, the model has {spec.num_classes} classes"
                skipped.append((item.image_id, reason))
                continue
        else:
            m = np.zeros((h, w), np.uint8)
        lab, kn = _label_targets(item, spec)
        # A labels-only negative is an empty mask: nothing to paint.
        mask_known = item.mask is not None or item.is_negative
        if not ((spec.segments and mask_known) or (spec.classifies and kn.any())):
            skipped.append((item.image_id, "nothing this model learns from (no mask / labels)"))
            continue
        images.append(x)
        masks.append(m)
        has_mask.append(mask_known)
        labels.append(lab)
        known.append(kn)
        negative.append(item.is_negative)
        ids.append(item.image_id)
    c, n_labels = spec.in_channels, len(spec.labels)
    return Prepared(
        spec,
        np.stack(images) if images else np.zeros((0, h, w, c), np.float32),
        np.stack(masks) if masks else np.zeros((0, h, w), np.uint8),
        np.array(has_mask, bool),
        np.stack(labels) if labels else np.zeros((0, n_labels), np.float32),
        np.stack(known) if known else np.zeros((0, n_labels), np.float32),
        np.array(negative, bool),
        ids,
        skipped,
    )


# -- augmentation ----------------------------------------------------------------------------


def augment(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Flips, a small affine (+-10 degrees, 0.9-1.1 scale, +-6% shift) and gain/bias.

    The mask moves with nearest neighbour so class ids stay ids; both reflect at the border so
    no black wedge appears that the model could learn to call background.
    """
    if rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
    if rng.random() < 0.2:
        image, mask = image[::-1], mask[::-1]
    h, w = mask.shape
    if rng.random() < 0.7:
        angle = rng.uniform(-10, 10)
        scale = rng.uniform(0.9, 1.1)
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
        m[:, 2] += rng.uniform(-0.06, 0.06, 2) * (w, h)
        border = cv2.BORDER_REFLECT_101
        image = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=border)
        image = image if image.ndim == 3 else image[..., None]  # cv2 drops a single channel
        mask = cv2.warpAffine(mask, m, (w, h), flags=cv2.INTER_NEAREST, borderMode=border)
    if rng.random() < 0.7:
        image = image * rng.uniform(0.9, 1.1) + rng.uniform(-0.05, 0.05)
    return np.ascontiguousarray(image, np.float32), np.ascontiguousarray(mask)


# Simulated clicks for a click-guided model (RITM's scheme, without its model-in-the-loop
# iterations: the previous mask is a perturbed truth, `click_robot.perturbed`, and the robot's
# clicks correct it one error region after another, `click_robot.simulated_clicks`).
# Share of samples without clicks, so the model still proposes on its own: at 0.3 the demo chest
# model proposed Dice 0.885 without clicks (unguided 0.917), at 0.5 0.949 (docs/PERFORMANCE).
NO_CLICKS = 0.5
MAX_TRAINING_CLICKS = 5


def with_clicks(
    image: np.ndarray, mask: np.ndarray, spec: ModelSpec, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, int]:
    """A guided model's training sample: (H, W, C) image at the input size and its truth ->
    the network's input (C', H, W) with simulated clicks (none for a share NO_CLICKS, and for
    an image without a finding) and the truth as the model sees it (the crop of the clicks,
    `clicks.crop_box`, resized to the input size), and the clicked class (0: no clicks)."""
    values = [v for v in np.unique(mask).tolist() if v > 0]
    if not values or rng.random() < NO_CLICKS:
        return with_guidance(normalise(image, spec), spec), mask, 0
    value = int(rng.choice(values))
    truth = mask == value
    prev_k = perturbed(truth, rng)
    prev = np.where(truth, 0, mask).astype(np.uint8)  # the other classes as they are
    prev[prev_k] = value
    n = int(rng.integers(1, MAX_TRAINING_CLICKS + 1))
    clicks = simulated_clicks(truth, prev_k, n, value, rng)
    box = crop_box(mask.shape, clicks, prev, spec.guidance_zoom)
    size = spec.input_size
    x = normalise(resize_to(image[box.slices], size), spec)
    h, w = size
    target = cv2.resize(mask[box.slices], (w, h), interpolation=cv2.INTER_NEAREST)
    return with_guidance(x, spec, encode(clicks, box, spec, prev)), target, value


class TrainingSet(torch.utils.data.Dataset):
    """Batches of normalised tensors. Without augmentation the whole set is normalised once and
    a batch is an index into it: no per-sample Python work in the training loop.

    `clicks`: a guided model's training set, each sample with simulated clicks (`with_clicks`);
    otherwise a guided model's samples have empty guidance (what it sees without clicks)."""

    def __init__(
        self, data: Prepared, *, augment: bool = False, seed: int = 0, clicks: bool = False
    ) -> None:
        self.data = data
        self.augment = augment
        self.clicks = clicks and data.spec.guided
        self.seed = seed
        self.epoch = 0
        self._masks = torch.from_numpy(data.masks.astype(np.int64))
        self._static = {
            "has_mask": torch.from_numpy(data.has_mask),
            "labels": torch.from_numpy(data.labels),
            "label_known": torch.from_numpy(data.label_known),
        }
        self._images = None
        if not augment and not self.clicks:
            spec = data.spec
            self._images = torch.from_numpy(
                np.stack([with_guidance(normalise(x, spec), spec) for x in data.images])
                if len(data)
                else np.zeros((0, spec.network_channels, *spec.input_size), np.float32)
            )

    def __len__(self) -> int:
        return len(self.data)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.batch([index]).items()}

    def batch(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        out = {k: v[idx] for k, v in self._static.items()}
        if self._images is not None:
            out["image"], out["mask"] = self._images[idx], self._masks[idx]
            return out
        images, masks, clicked = [], [], []
        for i in idx.tolist():
            # One generator per (seed, epoch, image): the same run after a resume sees the
            # same augmentations, whatever the batch order.
            rng = np.random.default_rng([self.seed, self.epoch, i])
            x, m = self.data.images[i], self.data.masks[i]
            if self.augment:
                x, m = augment(x, m, rng)
            value = 0
            if self.clicks:
                net_input, m, value = with_clicks(x, m, self.data.spec, rng)
            else:
                net_input = with_guidance(normalise(x, self.data.spec), self.data.spec)
            images.append(net_input)
            masks.append(m.astype(np.int64))
            clicked.append(value)
        out["image"] = torch.from_numpy(np.stack(images))
        out["mask"] = torch.from_numpy(np.stack(masks))
        if self.clicks:
            out["click_class"] = torch.tensor(clicked, dtype=torch.long)
        return out
