"""Validation metrics: per-class Dice and IoU, per-label AUC and F1, and how often the gate gets
"finding / no finding" right, all on what inference would show (postprocess + gate).

AUC is the Mann-Whitney statistic on average ranks: scikit-learn is not a dependency.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from torch import nn

from medviewer.inference.device import autocast_dtype
from medviewer.inference.engine import probabilities
from medviewer.inference.gate import apply_gate
from medviewer.inference.postprocess import postprocess
from medviewer.models.spec import Gate, ModelSpec


def auc(scores: np.ndarray, truth: np.ndarray) -> float | None:
    """Area under the ROC curve; None when only one class is present."""
    s = np.asarray(scores, np.float64)
    t = np.asarray(truth, bool)
    n_pos = int(t.sum())
    n_neg = t.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    # Tied scores share the mean of the ranks they span (1-based).
    average = np.cumsum(counts) - (counts - 1) / 2.0
    ranks = average[inverse]
    return float((ranks[t].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def f1(predicted: np.ndarray, truth: np.ndarray) -> float | None:
    """F1 of boolean predictions; None when there is nothing to find and nothing was found."""
    p, t = np.asarray(predicted, bool), np.asarray(truth, bool)
    tp, fp, fn = int((p & t).sum()), int((p & ~t).sum()), int((~p & t).sum())
    return None if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


class Scores:
    """Accumulates one validation pass; `result()` gives the metrics dict."""

    def __init__(self, spec: ModelSpec) -> None:
        # Training has no first-stage classifier to consult: judge the segmenter on its own.
        two_stage = spec.gate.type == "two_stage"
        self.spec = dataclasses.replace(spec, gate=Gate()) if two_stage else spec
        n = max(spec.num_classes, 2)
        self.tp, self.fp, self.fn = np.zeros(n), np.zeros(n), np.zeros(n)
        self.label_probs: list[np.ndarray] = []
        self.label_truth: list[np.ndarray] = []
        self.label_known: list[np.ndarray] = []
        self.gate_right = self.gate_total = self.images = 0

    def add(
        self, probs: np.ndarray | None, label_probs: np.ndarray | None, batch: dict[str, Any]
    ) -> None:
        """probs (N, C, H, W) class probabilities; label_probs (N, L); batch targets (numpy)."""
        spec = self.spec
        for k in range(len(batch["has_mask"])):
            self.images += 1
            named = (
                dict(zip(spec.labels, map(float, label_probs[k])))
                if label_probs is not None
                else {}
            )
            pred = postprocess(probs[k], spec) if probs is not None else None
            gate = apply_gate(spec, pred, named)
            if pred is not None and not gate.finding:
                pred = np.zeros_like(pred)  # gated out: inference stores an empty mask
            truth_finding = None
            if batch["has_mask"][k]:
                truth = batch["mask"][k]
                truth_finding = bool(truth.any())
                if pred is not None:
                    self._count(pred, truth)
            known = batch["label_known"][k]
            if label_probs is not None:
                self.label_probs.append(label_probs[k])
                self.label_truth.append(batch["labels"][k])
                self.label_known.append(known)
            if truth_finding is None and len(known) and known.all():
                truth_finding = bool(batch["labels"][k].any())
            if truth_finding is not None:
                self.gate_total += 1
                self.gate_right += int(gate.finding == truth_finding)

    def _count(self, pred: np.ndarray, truth: np.ndarray) -> None:
        n = len(self.tp)
        joint = np.bincount(truth.astype(np.int64).ravel() * n + pred.ravel(), minlength=n * n)
        confusion = joint[: n * n].reshape(n, n)  # rows truth, columns prediction
        tp = np.diag(confusion)
        self.tp += tp
        self.fp += confusion.sum(0) - tp
        self.fn += confusion.sum(1) - tp

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {"images": self.images}
        spec = self.spec
        if spec.segments:
            names = [c.name for c in spec.classes]
            dice, iou = {}, {}
            for c in range(1, len(names)):
                denom = 2 * self.tp[c] + self.fp[c] + self.fn[c]
                # Absent from truth and prediction alike: no Dice to report for this class.
                dice[names[c]] = None if denom == 0 else float(2 * self.tp[c] / denom)
                union = self.tp[c] + self.fp[c] + self.fn[c]
                iou[names[c]] = None if union == 0 else float(self.tp[c] / union)
            out.update(dice=dice, iou=iou, mean_dice=_mean(list(dice.values())))
        if spec.classifies and self.label_probs:
            p, t = np.stack(self.label_probs), np.stack(self.label_truth)
            known = np.stack(self.label_known) > 0
            aucs, f1s = {}, {}
            for j, name in enumerate(spec.labels):
                rows = known[:, j]
                aucs[name] = auc(p[rows, j], t[rows, j] > 0)
                f1s[name] = f1(p[rows, j] >= spec.label_threshold(name), t[rows, j] > 0)
            out.update(auc=aucs, f1=f1s, mean_auc=_mean(list(aucs.values())))
        gate = self.gate_right / self.gate_total if self.gate_total else None
        out["gate_accuracy"] = gate
        primary = out.get("mean_dice") if spec.segments else out.get("mean_auc")
        out["score"] = primary if primary is not None else (gate if gate is not None else 0.0)
        return out


def training_autocast(device: torch.device) -> torch.dtype | None:
    """The autocast dtype training and validation run at (None: plain fp32).

    On CUDA, what `medviewer.inference.device.autocast_dtype` picks for the device (bf16 where
    the GPU has it, else fp16). Elsewhere fp32: bf16 on the CPU would make training's figures
    depend on whether the CPU has AMX, and every machine must train the same model (issue 11).
    """
    return autocast_dtype(device) if device.type == "cuda" else None


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Any,
    spec: ModelSpec,
    device: torch.device | str,
    batch_size: int = 8,
    criterion: nn.Module | None = None,
) -> dict[str, Any]:
    """Metrics of `model` on a TrainingSet (without augmentation), plus its mean loss.

    The inputs go to `device` and the model goes with them (fp32 weights, channels_last), wherever
    it was: a version loaded from disk sits on the CPU while training ran on a GPU. It stays on
    `device` afterwards. Autocast is training's (`training_autocast`), so a new version and the
    active one it is compared with are judged at the same precision."""
    device = torch.device(device)
    model.to(device=device, dtype=torch.float32, memory_format=torch.channels_last)
    model.eval()
    amp = training_autocast(device)
    scores = Scores(spec)
    loss_sum, seen = 0.0, 0
    for start in range(0, len(data), batch_size):
        batch = data.batch(range(start, min(start + batch_size, len(data))))
        on_device = {k: v.to(device) for k, v in batch.items()}
        x = on_device["image"].contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            out = model(x)
        if criterion is not None:
            n = len(batch["image"])
            loss_sum += float(criterion(out, on_device)) * n
            seen += n
        probs = probabilities(out, spec)
        targets = {k: v.numpy() for k, v in batch.items() if k != "image"}
        scores.add(probs.get("mask"), probs.get("labels"), targets)
    result = scores.result()
    if criterion is not None:
        result["loss"] = loss_sum / seen if seen else None
    return result
