"""Grad-CAM (Selvaraju et al., ICCV 2017): where in the image a classification output looked.

For a label c and the encoder's last feature map A (K channels), the weight of channel k is the
spatial mean of d y_c / d A_k, y_c being the label's logit (before sigmoid/softmax, as in the
paper); the map is ReLU(sum_k w_k A_k), upsampled to the network input and then to the image's
native size, and divided by its maximum. It explains the classification output of a
classification model (encoder + head) and the auxiliary classification head that a
segmentation+classification model puts on its encoder; both read the encoder's last feature map.

How the feature map is reached: a forward hook on `model.encoder` rather than calling the encoder
and the head by hand. The whole model runs, so the logit explained is exactly the one the engine
reports, and nothing here needs to know where a MedModel keeps its head (a segmenter's decoder
runs too, wasted work on one image). The encoder runs with autograd off (a pre-hook turns it off,
the hook back on) and the hook hands the rest of the network a detached copy of the last feature
map that requires grad: the encoder records no graph, frozen encoders (whose output would not
require grad) work the same, and `torch.autograd.grad` returns d logit / d features without
writing any parameter's `.grad`.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import torch
from torch import nn

from medviewer.imaging.display import Image
from medviewer.inference.engine import Engine
from medviewer.inference.preprocess import normalise, resize_to, to_channels, with_guidance
from medviewer.models.spec import ModelSpec


def grad_cam(engine: Engine, image: Image, label: str | None = None) -> dict[str, np.ndarray]:
    """Grad-CAM heatmaps of one image: {label: float32 (rows, columns) in 0..1}.

    Every label of the model, or only `label`. Maps are at the image's native size; an image with
    no positive evidence for a label gets an all-zero map. The input is prepared as the engine
    prepares it (display rendering, channels, resize to the spec's input size, normalisation).
    For "tile" specs the CAM is computed on the whole image resized to the input (tile) size, not
    tile by tile: one map per image, at coarser resolution than tiled inference sees.

    Runs in fp32 (no autocast) with autograd on the engine's device, whatever the caller's grad,
    inference or autocast mode; the model is evaluated in eval mode and left in the mode it had;
    parameters (and their requires_grad and .grad) are untouched. Like the engine, call it from
    the engine's worker thread, never concurrently with other calls on the same engine.

    Raises ValueError for a model without labels or a label it does not have.
    """
    spec = engine.spec
    names = _labels(spec, label)
    pixels = to_channels(image, spec)
    native = pixels.shape[:2]
    x = with_guidance(normalise(resize_to(pixels, spec.input_size), spec), spec)
    maps = _class_activation_maps(engine, x, [spec.labels.index(n) for n in names])
    fov = field_of_view(pixels)
    return {name: _upsample(cam, native, fov) for name, cam in zip(names, maps, strict=True)}


def _labels(spec: ModelSpec, label: str | None) -> list[str]:
    if not spec.labels:
        raise ValueError(
            f"model {spec.name} has no classification labels: Grad-CAM explains a label"
        )
    if label is None:
        return list(spec.labels)
    if label not in spec.labels:
        raise ValueError(
            f"model {spec.name} has no label {label!r}; valid: {', '.join(spec.labels)}"
        )
    return [label]


def _class_activation_maps(engine: Engine, x: np.ndarray, indices: list[int]) -> list[np.ndarray]:
    """(C, H, W) normalised input -> one (h, w) ReLU'd map per label index, at feature size."""
    model = engine.model
    captured: list[torch.Tensor] = []
    handles = [
        model.encoder.register_forward_pre_hook(_grad_off),
        model.encoder.register_forward_hook(_keep_last_feature_map(captured)),
    ]
    modes = {m: m.training for m in model.modules()}
    device = engine.device
    try:
        model.to(device)  # where the input goes (a no-op when the engine put it there)
        model.eval()
        with (
            torch.inference_mode(False),
            torch.enable_grad(),
            torch.autocast(device.type, enabled=False),
        ):
            batch = torch.from_numpy(x[None]).to(device)
            out = model(batch.contiguous(memory_format=torch.channels_last))
            if "labels" not in out or not captured:
                raise ValueError(f"model {engine.spec.name} has no classification output")
            logits = out["labels"][0]
            features = captured[-1]
            maps = []
            for k, i in enumerate(indices):
                (grads,) = torch.autograd.grad(
                    logits[i], features, retain_graph=k < len(indices) - 1
                )
                weights = grads.mean(dim=(2, 3), keepdim=True)
                cam = torch.relu((weights * features).sum(dim=1))[0]
                maps.append(cam.detach().float().cpu().numpy())
            return maps
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training


def _grad_off(module: nn.Module, args: tuple) -> None:
    # Thread-local; the enclosing torch.enable_grad() restores the caller's mode on exit even
    # if the encoder raises before _keep_last_feature_map turns autograd back on.
    torch.set_grad_enabled(False)


def _keep_last_feature_map(captured: list[torch.Tensor]) -> Callable:
    def hook(module: nn.Module, args: tuple, output: list[torch.Tensor]) -> list[torch.Tensor]:
        torch.set_grad_enabled(True)
        features = list(output)
        features[-1] = features[-1].detach().requires_grad_(True)
        captured.append(features[-1])
        return features

    return hook


def field_of_view(pixels: np.ndarray, dark: float = 0.04) -> np.ndarray:
    """float32 (H, W) weights in 0..1: where the image shows the patient.

    A fundus camera's black surround, a radiograph's collimation, the air around a CT slice:
    pixels darker than `dark` (of the displayed 0..1 range) that connect to the image border
    are outside; dark areas inside (lungs, vessels) stay in. The weight rises from 0 at the
    edge over a few pixels, so a heatmap fades out rather than stopping in a step. All ones
    when nothing, or nearly everything, would be cut.
    """
    grey = pixels.max(axis=2) if pixels.ndim == 3 else pixels
    h, w = grey.shape
    outside = (grey <= dark).astype(np.uint8)
    # An opening first: scattered dark pixels (noise, a dark vessel at the edge) are no surround.
    k = max(3, min(h, w) // 64) | 1
    outside = cv2.morphologyEx(outside, cv2.MORPH_OPEN, np.ones((k, k), np.uint8))
    _, comp = cv2.connectedComponents(outside, connectivity=4)
    border = np.concatenate([comp[0], comp[-1], comp[:, 0], comp[:, -1]])
    inside = ~np.isin(comp, border[border > 0])  # component 0 is the bright pixels
    share = inside.mean()
    if share < 0.05 or share > 0.995:
        return np.ones((h, w), np.float32)
    # Fade in over the outer 3% of the side: 0 at the edge, 1 further in, no step anywhere.
    ramp = max(2.0, 0.03 * min(h, w))
    depth = cv2.distanceTransform(inside.astype(np.uint8), cv2.DIST_L2, 5)
    return np.clip(depth / ramp, 0.0, 1.0).astype(np.float32)


def _upsample(cam: np.ndarray, native: tuple[int, int], fov: np.ndarray) -> np.ndarray:
    """Feature-map CAM -> native size (bicubic: no blocks), within `fov`, divided by its max."""
    rows, columns = native
    cam = cv2.resize(cam.astype(np.float32), (columns, rows), interpolation=cv2.INTER_CUBIC)
    cam = np.clip(cam, 0.0, None) * fov  # bicubic overshoots below zero near edges
    peak = float(cam.max())
    if peak > 0:
        cam = cam / peak
    return np.clip(cam, 0.0, 1.0).astype(np.float32)
