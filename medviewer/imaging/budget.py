"""The decode budget: how large an image may be before any pixel is allocated.

A header costs a few bytes to write and can declare anything: NumberOfFrames = 2^31 in a
10 KB JPEG file, 30000x30000 in a 5 KB JPEG-LS stream, a 1 MB PNG of 13000x13000 16-bit RGB.
Import, the loader and the deflate reader ask `DecodeBudget.check` with the header's numbers,
so a file over it is refused with the setting to raise, at import rather than at decode.
The defaults admit real studies (a 4,000x5,000 mammogram, a 1,000-frame cine, a 512x512x2,000
CT in one file) and refuse what no scanner writes.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from medviewer.errors import SettingError
from medviewer.imaging.errors import UnreadableFile
from medviewer.imaging.records import Instance

# The environment variables that set each limit; messages name them so users know what to raise.
FRAME_PIXELS_ENV = "MEDVIEWER_MAX_FRAME_PIXELS"
FRAMES_ENV = "MEDVIEWER_MAX_FRAMES"
DECODED_MB_ENV = "MEDVIEWER_MAX_DECODED_MB"


class OverBudget(UnreadableFile):
    """A header declares more pixels, frames or decoded bytes than the decode budget allows."""


@dataclass(frozen=True)
class DecodeBudget:
    frame_pixels: int = 64_000_000  # 8,000x8,000; a mammogram is 4,000x5,000
    frames: int = 10_000  # a cine has ~1,000; a one-file CT ~2,000
    decoded_bytes: int = 2 << 30  # one file's pixels as decoded arrays (a 512x512x2,000 CT: 1 GB)

    @classmethod
    def from_env(cls) -> DecodeBudget:
        """The defaults, each overridden by its environment variable when set."""
        default = cls()
        mb = whole_number_env(DECODED_MB_ENV)
        return cls(
            frame_pixels=whole_number_env(FRAME_PIXELS_ENV) or default.frame_pixels,
            frames=whole_number_env(FRAMES_ENV) or default.frames,
            decoded_bytes=mb << 20 if mb else default.decoded_bytes,
        )

    def check(self, path: Path, frames: int, shape: tuple[int, ...], bits_allocated: int) -> None:
        """Raise OverBudget when `frames` frames of `shape` (Instance.shape) are too large."""
        rows, columns = shape[:2]
        if rows * columns > self.frame_pixels:
            raise OverBudget(
                path,
                f"{columns}x{rows} is {rows * columns:,} pixels per frame, over the decode "
                f"budget of {self.frame_pixels:,} ({FRAME_PIXELS_ENV})",
            )
        if frames > self.frames:
            raise OverBudget(
                path,
                f"{frames:,} frames, over the decode budget of {self.frames:,} ({FRAMES_ENV})",
            )
        # Decoders give whole bytes per sample; palette colour becomes 16-bit RGB at most.
        decoded = frames * math.prod(shape) * max(1, -(-bits_allocated // 8))
        if decoded > self.decoded_bytes:
            raise OverBudget(
                path,
                f"{decoded / 2**20:,.0f} MB of pixels once decoded, over the decode budget of "
                f"{self.decoded_bytes / 2**20:,.0f} MB ({DECODED_MB_ENV})",
            )

    def check_instance(self, instance: Instance) -> None:
        self.check(instance.path, instance.frames, instance.shape, instance.bits_allocated)


def whole_number_env(name: str) -> int | None:
    """The whole number above 0 that environment variable `name` sets; None when it is unset
    or empty; SettingError naming the variable otherwise. The decode and model budgets read
    their limits through it."""
    env = os.environ.get(name)
    if not env:
        return None
    try:
        value = int(env)
    except ValueError:
        value = 0
    if value < 1:
        raise SettingError(f"{name} must be a whole number above 0, not {env!r}")
    return value
