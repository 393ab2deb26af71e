"""Use the unlabeled images, carefully: label spreading proposes labels for images nobody has
labelled yet, from the few a clinician has.

Every image is embedded by the active model's encoder (its last feature map, averaged over space,
the input prepared exactly as inference prepares it); scikit-learn's LabelSpreading on a k-nearest
neighbour graph of those embeddings carries the confirmed labels to the rest (Zhou et al., NIPS
2003). A multi-label model spreads each label as its own yes/no problem; a multi-class one spreads
one problem over its labels.

Proposals are saved as `ai-propagated` labels revisions and only where every label is confident
(probability >= threshold). Like any AI proposal they are never training data on their own: a
propagated label is confirmed truth only once a clinician approves the image
(`Revisions.confirmed`, the one rule the training snapshot and the export use too).

Which images are which:
- labelled: images with confirmed labels;
- proposed for: images without confirmed labels that are neither approved (approved without
  labels: confirmed, but says nothing to spread) nor rejected;
- rejected images take no part.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medviewer.imaging import ImageLoader
from medviewer.inference.device import pick_device
from medviewer.inference.preprocess import normalise, resize_to, to_channels, with_guidance
from medviewer.models.registry import MedModel
from medviewer.models.scope import applicable_images
from medviewer.models.spec import ModelSpec
from medviewer.models.versions import load_version
from medviewer.training.errors import TrainingError

if TYPE_CHECKING:
    from medviewer.workspace import Workspace

AUTHOR = "label-spreading"
METHOD = "label_spreading"


@dataclass
class SpreadReport:
    model: str
    version: str
    labelled: int = 0  # images whose confirmed labels were spread
    proposed: int = 0  # ai-propagated revisions written
    low_confidence: int = 0  # left alone: some label below the threshold
    unchanged: int = 0  # already carried the same proposal from this model version
    failed: list[tuple[int, str]] = field(default_factory=list)  # (image id, reason)
    per_label: dict[str, int] = field(default_factory=dict)  # proposals saying "present"


def propose_labels(
    ws: Workspace,
    model_name: str,
    *,
    threshold: float = 0.9,
    neighbours: int = 7,
    alpha: float = 0.2,
    version: str | None = None,
    device: str = "auto",
    batch_size: int = 16,
    author: str = AUTHOR,
    on_progress: Callable[[int, int], None] | None = None,
) -> SpreadReport:
    """Propose labels for unlabelled images by spreading the confirmed ones; see the module doc.

    Raises TrainingError when the model has no labels or some class has no labelled example.
    """
    if not 0.5 <= threshold <= 1:
        raise ValueError(f"threshold must be from 0.5 to 1, got {threshold}")
    model, spec, version = load_version(ws, model_name, version)
    if not spec.labels:
        raise TrainingError(f"model {model_name} has no labels to spread (it only segments)")
    report = SpreadReport(model_name, version)
    known, targets = _split(ws, spec)
    if not targets:
        report.labelled = len(known)
        return report
    ids = list(known) + targets
    vectors, ok = embed(ws, model, spec, ids, device, batch_size, report.failed, on_progress)
    index = {image_id: k for k, image_id in enumerate(ok)}
    known = {i: labels for i, labels in known.items() if i in index}
    targets = [i for i in targets if i in index]
    report.labelled = len(known)
    probs, k = _spread(
        vectors, [index[i] for i in known], list(known.values()), spec, neighbours, alpha
    )
    for image_id in targets:
        p = probs[index[image_id]]  # label -> probability of "present"
        confidence = min((max(v, 1 - v) for v in p.values()), default=0.0)
        if spec.label_mode == "multiclass":
            confidence = max(p.values())
        finite = all(np.isfinite(v) for v in p.values())  # cut off from every labelled image
        if not finite or confidence < threshold:
            report.low_confidence += 1
            continue
        if spec.label_mode == "multiclass":
            best = max(p, key=p.__getitem__)
            labels = {name: name == best for name in spec.labels}
        else:
            labels = {name: v >= 0.5 for name, v in p.items()}
        last = ws.revisions.latest(image_id, "labels")
        if (
            last is not None
            and last.source == "ai-propagated"
            and last.labels == labels
            and (last.model_name, last.model_version) == (model_name, version)
        ):
            report.unchanged += 1
            continue
        summary = {
            "probabilities": {n: round(float(v), 4) for n, v in p.items()},
            "method": METHOD,
            "neighbours": k,
            "labelled": len(known),
        }
        ws.revisions.save_labels(
            image_id,
            labels,
            source="ai-propagated",
            author=author,
            model=(model_name, version),
            summary=summary,
        )
        report.proposed += 1
        for name, present in labels.items():
            report.per_label[name] = report.per_label.get(name, 0) + int(present)
    return report


def _split(ws: Workspace, spec: ModelSpec) -> tuple[dict[int, dict[str, bool]], list[int]]:
    """Labelled images (id -> confirmed labels) and the images to propose for, among those the
    model applies to."""
    known: dict[int, dict[str, bool]] = {}
    targets: list[int] = []
    applicable = set(applicable_images(ws, spec)[0])
    for row in ws.images():
        if row.status == "rejected" or row.id not in applicable:
            continue
        confirmed = ws.revisions.confirmed(row.id, "labels")
        if confirmed is not None:
            labels = confirmed.revision.labels
            known[row.id] = {n: labels[n] for n in spec.labels if n in labels}
        elif row.status != "approved":
            targets.append(row.id)
    return known, targets


@torch.inference_mode()
def embed(
    ws: Workspace,
    model: MedModel,
    spec: ModelSpec,
    image_ids: list[int],
    device: str = "cpu",
    batch_size: int = 16,
    failed: list[tuple[int, str]] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, list[int]]:
    """(N, C) encoder embeddings (last feature map, global average pooled) of the images that
    load, and their ids; images that do not load go to `failed` with the reason."""
    from medviewer.imaging import ImageLoadError
    from medviewer.inference.errors import InferenceError

    dev = pick_device(device)
    encoder = model.encoder.eval().to(dev)
    loader = ImageLoader()
    out: list[np.ndarray] = []
    ok: list[int] = []
    batch: list[np.ndarray] = []

    def flush() -> None:
        if batch:
            features = encoder(torch.from_numpy(np.stack(batch)).to(dev))[-1]
            out.append(features.float().mean(dim=(2, 3)).cpu().numpy())
            batch.clear()

    for n, image_id in enumerate(image_ids, start=1):
        try:
            image = loader.image(ws.frame_ref(image_id))
            batch.append(
                with_guidance(
                    normalise(resize_to(to_channels(image, spec), spec.input_size), spec), spec
                )
            )
            ok.append(image_id)
        except (ImageLoadError, InferenceError) as e:
            if failed is not None:
                failed.append((image_id, str(e)))
        if len(batch) >= batch_size:
            flush()
        if on_progress is not None:
            on_progress(n, len(image_ids))
    flush()
    width = out[0].shape[1] if out else 0
    return (np.concatenate(out) if out else np.zeros((0, width), np.float32)), ok


def _spread(
    vectors: np.ndarray,
    rows: list[int],
    labels: list[dict[str, bool]],
    spec: ModelSpec,
    neighbours: int,
    alpha: float,
) -> tuple[list[dict[str, float]], int]:
    """Per image: label -> probability of present; and the k used."""
    from sklearn.semi_supervised import LabelSpreading

    # Cosine distance between centred embeddings: the common part of every image (the average
    # anatomy) drops out and no image counts as near just for being bright. On the tests' blob
    # images and a random-weight resnet18 it beat raw, standardised and PCA features.
    x = vectors - vectors.mean(0)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    k = max(1, min(neighbours, len(x) - 1))
    problems: list[tuple[list[str], np.ndarray]] = []
    if spec.label_mode == "multiclass":
        y = np.full(len(x), -1)
        for row, given in zip(rows, labels, strict=True):
            ticked = [i for i, n in enumerate(spec.labels) if given.get(n)]
            if len(ticked) == 1:
                y[row] = ticked[0]
        _need(spec, y, range(len(spec.labels)), list(spec.labels))
        problems.append((list(spec.labels), y))
    else:
        for name in spec.labels:
            y = np.full(len(x), -1)
            for row, given in zip(rows, labels, strict=True):
                if name in given:
                    y[row] = int(given[name])
            _need(spec, y, (0, 1), [f"{name} absent", f"{name} present"])
            problems.append(([name], y))
    probs: list[dict[str, float]] = [{} for _ in range(len(x))]
    for names, y in problems:
        spreader = LabelSpreading(kernel="knn", n_neighbors=k, alpha=alpha, max_iter=1000)
        spreader.fit(x, y)
        dist = spreader.label_distributions_  # columns follow spreader.classes_ (sorted)
        classes = list(spreader.classes_)
        for i in range(len(x)):
            if len(names) == 1:  # binary: probability of class 1
                probs[i][names[0]] = float(dist[i, classes.index(1)])
            else:
                for c, name in enumerate(names):
                    probs[i][name] = float(dist[i, classes.index(c)])
    return probs, k


def _need(spec: ModelSpec, y: np.ndarray, classes: Any, names: list[str]) -> None:
    missing = [name for c, name in zip(classes, names, strict=True) if not (y == c).any()]
    if missing:
        raise TrainingError(
            f"label spreading for {spec.name} needs at least one labelled image of each class; "
            f"none is labelled {', '.join(repr(m) for m in missing)}: label some images first"
        )
