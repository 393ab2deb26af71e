"""Class colours used when a model names none: distinct on screen and in exports."""

from __future__ import annotations

# Trubetskoy's distinct colours; index = class value, 0 (background) is black.
DEFAULT_COLOURS: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0), (230, 25, 75), (60, 180, 75), (0, 130, 200), (255, 225, 25),
    (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60),
    (250, 190, 212), (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200),
    (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128),
)  # fmt: skip


def class_colour(value: int) -> tuple[int, int, int]:
    """The default colour of a class value; values past the table wrap, skipping black."""
    if value == 0:
        return DEFAULT_COLOURS[0]
    return DEFAULT_COLOURS[1 + (value - 1) % (len(DEFAULT_COLOURS) - 1)]
