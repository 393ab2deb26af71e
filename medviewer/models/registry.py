"""Spec -> torch model through segmentation-models-pytorch. Nothing is fetched from a hub."""

from __future__ import annotations

import logging
import weakref
from itertools import chain
from pathlib import Path
from typing import Any

import segmentation_models_pytorch as smp
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from medviewer.models.errors import SpecError
from medviewer.models.model_budget import MemoryEstimate, ModelBudget
from medviewer.models.spec import ModelSpec
from medviewer.models.tensors import read_tensors, report_mismatch

log = logging.getLogger(__name__)

# Measured CPU peaks were 1.0-1.8x the live tensors of a forward pass (convolution
# workspaces, the allocator's slack): Unet-ResNet34 peaked 510 MB for 382 MB at 1024x1024,
# 6.2 GB for 6.2 GB at 4096x4096; EfficientNet-B0 592 MB for 336 MB.
ACTIVATION_OVERHEAD = 1.25


def architectures() -> list[str]:
    return sorted(smp.MODEL_ARCHITECTURES_MAPPING)


def encoders() -> list[str]:
    return sorted(smp.encoders.encoders)


class MedModel(nn.Module):
    """One network for every task: an smp segmenter (optionally with its classification head
    on the encoder) or an smp encoder with a classification head alone.

    forward() returns {"mask": logits (N, C, H, W)} and/or {"labels": logits (N, L)}.
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        n_labels = len(spec.labels)
        if spec.segments:
            # Binary segmentation is one logit channel; multi-class one per class.
            out_classes = 1 if spec.num_classes == 2 else spec.num_classes
            aux = {"classes": n_labels, "dropout": 0.0} if spec.classifies else None
            extra = {"decoder_channels": spec.decoder_channels} if spec.decoder_channels else {}
            self.net = smp.create_model(
                spec.architecture,  # type: ignore[arg-type]
                encoder_name=spec.encoder,
                encoder_weights=None,
                in_channels=spec.network_channels,
                classes=out_classes,
                aux_params=aux,
                encoder_depth=spec.encoder_depth,
                **extra,
            )
        else:
            self.backbone = smp.encoders.get_encoder(
                spec.encoder, in_channels=spec.in_channels, depth=spec.encoder_depth, weights=None
            )
            self.head = smp.base.ClassificationHead(self.backbone.out_channels[-1], n_labels)
        if spec.encoder_depth < 5:
            _drop_unused_layers(self.encoder, spec.network_channels)
        if spec.guided:
            # Guidance starts silent: the model's answer without clicks is the unguided one's,
            # and training learns what clicks mean from there (weights at zero still get
            # gradients: the gradient of a weight is its input times the output's gradient).
            _, stem = _stem(self.encoder, spec.network_channels)
            if stem is not None:
                with torch.no_grad():
                    stem.weight[:, spec.in_channels :] = 0

    @property
    def encoder(self) -> nn.Module:
        """The encoder (its last stage feeds Grad-CAM and label spreading)."""
        return self.net.encoder if self.spec.segments else self.backbone

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.spec.segments:
            out = self.net(x)
            if self.spec.classifies:
                mask, labels = out
                return {"mask": mask, "labels": labels}
            return {"mask": out}
        return {"labels": self.head(self.backbone(x)[-1])}


def _drop_unused_layers(encoder: nn.Module, in_channels: int) -> None:
    """Replace the encoder's layers that a forward pass never calls with nn.Identity.

    smp keeps the stages beyond `encoder_depth` (and some encoders a final conv they never run):
    weights that would be saved, loaded and shipped for nothing, about half of the encoder's at
    depth 4. Which layers run does not depend on the input, so one small pass finds them."""
    called: set[nn.Module] = set()
    leaves = {m for m in encoder.modules() if not list(m.children())}
    handles = [m.register_forward_hook(lambda m, i, o: called.add(m)) for m in leaves]
    try:
        with torch.no_grad():
            encoder.eval()(torch.zeros(1, in_channels, 64, 64))
    finally:
        for h in handles:
            h.remove()
        encoder.train()
    for parent in list(encoder.modules()):
        for name, child in parent.named_children():
            if child in leaves and child not in called and any(True for _ in child.parameters()):
                setattr(parent, name, nn.Identity())


def build_model(
    spec: ModelSpec, pretrained: bool = True, budget: ModelBudget | None = None
) -> MedModel:
    """The torch model a spec describes; unknown names raise SpecError listing valid ones, a
    model that would take more memory than the budget for one image ModelTooLarge (before
    anything is allocated). `pretrained=False` skips the spec's encoder weights: a
    checkpoint's weights follow."""
    if spec.segments and spec.architecture not in smp.MODEL_ARCHITECTURES_MAPPING:
        lower = {k.lower(): k for k in smp.MODEL_ARCHITECTURES_MAPPING}
        if (spec.architecture or "").lower() not in lower:
            raise SpecError(
                f"{spec.name}: unknown architecture {spec.architecture!r}; valid: "
                + ", ".join(architectures())
            )
    if spec.encoder not in smp.encoders.encoders:
        raise SpecError(
            f"{spec.name}: unknown encoder {spec.encoder!r}; valid: " + ", ".join(encoders())
        )
    estimate = estimate_memory(spec)
    if estimate is not None:
        (budget or ModelBudget.from_env()).check_memory(estimate, 1, f"model {spec.name}")
    try:
        model = MedModel(spec)
    except ValueError as e:  # smp's own checks, e.g. decoder_channels vs the encoder depth
        raise SpecError(f"{spec.name}: {e}") from e
    if pretrained and spec.encoder_weights:
        load_encoder_weights(model, Path(spec.encoder_weights))
    return model


class _LiveBytes(TorchDispatchMode):
    """The peak bytes of tensors alive at once while it is active: each new tensor counts from
    its op until Python frees it, so skip connections held for a decoder count, temporaries
    do not. Views and in-place results share their input's memory and are not counted."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0

    def _freed(self, n: int) -> None:
        self.live -= n

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        inputs = {id(t) for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t._base is None and id(t) not in inputs:
                n = t.numel() * t.element_size()
                self.live += n
                weakref.finalize(t, self._freed, n)
        self.peak = max(self.peak, self.live)
        return out


def estimate_memory(spec: ModelSpec) -> MemoryEstimate | None:
    """Weights and activations per image of the spec's model (float32, no gradients), from a
    model built and run on the meta device: shapes only, no memory, ~0.1 s.

    None for the few encoders that read values while being built (e.g. mit_b*): they are
    built for real, within the spec's size limits (ModelBudget.check_sizes)."""
    try:
        # Building draws initial weights from torch's generator even on the meta device: fork
        # it, so a budget check never changes the weights a seeded build or training gets.
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            model = MedModel(spec).eval()
            x = torch.zeros(1, spec.network_channels, *spec.input_size)
        with torch.no_grad(), _LiveBytes() as live:
            model(x)
    except ValueError as e:  # smp's own checks, as in build_model
        raise SpecError(f"{spec.name}: {e}") from e
    except (RuntimeError, NotImplementedError) as e:
        log.info("%s: no memory estimate on the meta device (%s)", spec.name, e)
        return None
    weights = sum(t.numel() * t.element_size() for t in chain(model.parameters(), model.buffers()))
    per_image = int(live.peak * ACTIVATION_OVERHEAD) + x.numel() * x.element_size()
    return MemoryEstimate(weights=weights, per_image=per_image)


def load_encoder_weights(model: MedModel, path: Path) -> None:
    """Local pretrained encoder weights: safetensors, or a .pth read with weights_only=True
    (tensors only, never arbitrary pickled objects). Weights for another number of input
    channels (e.g. RGB ImageNet weights for a grey model) are adapted in the first convolution
    only, and a guided model's guidance channels start at zero there; any other difference
    raises CheckpointMismatch."""
    state = read_tensors(path)
    own = model.encoder.state_dict()
    _fit_first_conv(model.encoder, model.spec, state)
    problem = report_mismatch(own, state, path, partial_ok=True)
    if problem:
        raise problem
    model.encoder.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


def add_guidance_weights(model: MedModel, state: dict[str, torch.Tensor]) -> None:
    """Weights of the unguided model (its first convolution reads the image's channels only)
    made to fit the guided `model` of the same spec otherwise: the guidance channels' first
    convolution weights are zero, so the guided model answers as the unguided one until it is
    trained with clicks. Any other state is left as it is (the loader reports a mismatch)."""
    spec = model.spec
    if not spec.guided:
        return
    name, stem = _stem(model.encoder, spec.network_channels)
    prefix = "net.encoder." if spec.segments else "backbone."
    key = f"{prefix}{name}.weight"
    weight = state.get(key)
    if stem is None or weight is None or weight.ndim != 4 or weight.shape[1] != spec.in_channels:
        return
    if (weight.shape[0], *weight.shape[2:]) != (stem.weight.shape[0], *stem.weight.shape[2:]):
        return
    pad = weight.new_zeros((weight.shape[0], spec.guidance_channels, *weight.shape[2:]))
    state[key] = torch.cat([weight, pad], dim=1)


def _stem(encoder: nn.Module, channels: int) -> tuple[str, nn.Conv2d | None]:
    """The encoder's first convolution: the first that reads `channels` (smp picks it so)."""
    stems = (
        (name, m)
        for name, m in encoder.named_modules()
        if isinstance(m, nn.Conv2d) and m.in_channels == channels
    )
    return next(stems, ("", None))


def _fit_first_conv(encoder: nn.Module, spec: ModelSpec, state: dict[str, torch.Tensor]) -> None:
    """Adapt the first convolution's weight in `state` to the spec's image channels as smp's
    patch_first_conv does: 1 channel sums the file's input channels (a grey image then gives
    the features of that image replicated to RGB); N channels cycle them, scaled by C/N so the
    weights' total, and so the response to a flat input, stays about the same. A guided
    model's guidance channels follow at zero (an encoder weights file is an image encoder's,
    even where its channel count happens to equal the guided network's)."""
    name, conv = _stem(encoder, spec.network_channels)
    if conv is None:
        return
    key = f"{name}.weight"
    weight = state.get(key)
    in_channels = spec.in_channels
    if (
        weight is None
        or conv.groups != 1
        or weight.ndim != 4
        or (not spec.guided and weight.shape[1] == in_channels)
        or (weight.shape[0], *weight.shape[2:]) != (conv.weight.shape[0], *conv.weight.shape[2:])
    ):
        return  # fits already, or differs otherwise: report_mismatch names it
    if weight.shape[1] == in_channels:
        pass
    elif in_channels == 1:
        weight = weight.sum(1, keepdim=True)
    else:
        channels = weight.shape[1]
        picks = torch.arange(in_channels) % channels
        weight = weight[:, picks] * (channels / in_channels)
    if spec.guidance_channels:
        pad = weight.new_zeros((weight.shape[0], spec.guidance_channels, *weight.shape[2:]))
        weight = torch.cat([weight, pad], dim=1)
    state[key] = weight
