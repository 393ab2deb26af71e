"""The model budget: how large a model a spec may describe, checked before anything is built.

A spec costs a few bytes to write and can declare anything: `input_size` 4096x4096 took 7.6 GB
to run, `decoder_channels` 100000 asked for 360 GB. The spec parser checks its sizes
(`check_sizes`: input pixels, decoder widths), and `check_memory` compares an estimate of what
a model takes (weights, and activations per image at the input size: `registry.estimate_memory`)
with the budget before the model is built or a batch run, so a spec over it is refused with the
setting to raise. The defaults admit real models (1024x1024 and 2048x2048 inputs, smp's decoder
widths 256..16; a larger image is tiled or resized to the input size) and refuse the bombs.
Torch-free, so settings can hold one (`medviewer.config.Settings.model_budget`).
"""

from __future__ import annotations

from dataclasses import dataclass

from medviewer.imaging.budget import whole_number_env
from medviewer.models.errors import ModelTooLarge

# The environment variables that set each limit; messages name them so users know what to raise.
INPUT_PIXELS_ENV = "MEDVIEWER_MAX_INPUT_PIXELS"
DECODER_CHANNELS_ENV = "MEDVIEWER_MAX_DECODER_CHANNELS"
MODEL_MB_ENV = "MEDVIEWER_MAX_MODEL_MB"


@dataclass(frozen=True)
class MemoryEstimate:
    """What a model takes to run, in bytes (float32, the widest precision it runs in)."""

    weights: int  # parameters and buffers
    per_image: int  # peak activations for each image of a batch at the input size

    def total(self, batch: int) -> int:
        return self.weights + batch * self.per_image


@dataclass(frozen=True)
class ModelBudget:
    input_pixels: int = 2048 * 2048  # a Unet-ResNet34 runs a 2048x2048 input in ~1.7 GB
    decoder_channels: int = 1024  # the widest decoder stage; smp's defaults are 256..16
    model_bytes: int = 4 << 30  # weights plus a batch's activations

    @classmethod
    def from_env(cls) -> ModelBudget:
        """The defaults, each overridden by its environment variable when set."""
        default = cls()
        mb = whole_number_env(MODEL_MB_ENV)
        return cls(
            input_pixels=whole_number_env(INPUT_PIXELS_ENV) or default.input_pixels,
            decoder_channels=whole_number_env(DECODER_CHANNELS_ENV) or default.decoder_channels,
            model_bytes=mb << 20 if mb else default.model_bytes,
        )

    def check_sizes(
        self, input_size: tuple[int, int], decoder_channels: tuple[int, ...] | None, src: str
    ) -> None:
        """Raise ModelTooLarge when a spec's input or decoder is wider than the budget."""
        h, w = input_size
        if h * w > self.input_pixels:
            raise ModelTooLarge(
                f"{src}: input size {h}x{w} is {h * w:,} pixels, over the model budget of "
                f"{self.input_pixels:,} ({INPUT_PIXELS_ENV}); larger images are tiled or "
                "resized to the input size"
            )
        widest = max(decoder_channels or (0,))
        if widest > self.decoder_channels:
            raise ModelTooLarge(
                f"{src}: decoder_channels {widest:,} is over the model budget of "
                f"{self.decoder_channels:,} channels ({DECODER_CHANNELS_ENV})"
            )

    def check_memory(self, estimate: MemoryEstimate, batch: int, what: str) -> None:
        """Raise ModelTooLarge when `batch` images would take more memory than the budget."""
        need = estimate.total(batch)
        if need > self.model_bytes:
            raise ModelTooLarge(
                f"{what}: about {need / 2**20:,.0f} MB to run {batch} image(s) at a time "
                f"({estimate.weights / 2**20:,.0f} MB of weights, "
                f"{estimate.per_image / 2**20:,.0f} MB per image), over the model budget of "
                f"{self.model_bytes / 2**20:,.0f} MB ({MODEL_MB_ENV})"
            )

    def largest_batch(self, estimate: MemoryEstimate, wanted: int, what: str) -> int:
        """The largest batch up to `wanted` within the budget; ModelTooLarge when even one
        image is over it."""
        self.check_memory(estimate, 1, what)
        room = (self.model_bytes - estimate.weights) // max(1, estimate.per_image)
        return max(1, min(wanted, room))
