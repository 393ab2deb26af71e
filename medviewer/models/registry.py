"""Spec -> torch model through segmentation-models-pytorch. Nothing is fetched from a hub."""

from __future__ import annotations

from pathlib import Path

import segmentation_models_pytorch as smp
import torch
from torch import nn

from medviewer.models.errors import SpecError
from medviewer.models.spec import ModelSpec


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
            self.net = smp.create_model(
                spec.architecture,  # type: ignore[arg-type]
                encoder_name=spec.encoder,
                encoder_weights=None,
                in_channels=spec.in_channels,
                classes=out_classes,
                aux_params=aux,
            )
        else:
            self.backbone = smp.encoders.get_encoder(
                spec.encoder, in_channels=spec.in_channels, depth=5, weights=None
            )
            self.head = smp.base.ClassificationHead(self.backbone.out_channels[-1], n_labels)

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


def build_model(spec: ModelSpec) -> MedModel:
    """The torch model a spec describes; unknown names raise SpecError listing valid ones."""
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
    model = MedModel(spec)
    if spec.encoder_weights:
        load_encoder_weights(model, Path(spec.encoder_weights))
    return model


def load_encoder_weights(model: MedModel, path: Path) -> None:
    """Local pretrained encoder weights: safetensors, or a .pth read with weights_only=True
    (tensors only, never arbitrary pickled objects)."""
    from medviewer.models.checkpoints import read_tensors, report_mismatch

    state = read_tensors(path)
    own = model.encoder.state_dict()
    problem = report_mismatch(own, state, path, partial_ok=True)
    if problem:
        raise problem
    model.encoder.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
