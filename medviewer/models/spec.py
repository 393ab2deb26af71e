"""The model spec: a JSON file that says everything needed to build, run and gate a model."""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from medviewer.imaging.palette import class_colour
from medviewer.models.errors import SpecError
from medviewer.models.model_budget import ModelBudget

TASKS = ("segmentation", "classification", "segmentation+classification")
LABEL_MODES = ("multilabel", "multiclass")
LARGE_IMAGE = ("resize", "tile")
GATES = ("none", "pixel_count", "classifier", "two_stage")
COLOURS = ("any", "grey", "colour")
GUIDANCE = ("none", "clicks")  # "clicks": click-guided (medviewer.inference.clicks encodes them)
MIN_SIDE = 32  # five stride-2 stages of an smp encoder: the smallest image any model can take
# Sections a spec may group fields in, and each field's own name (what to_dict writes).
SECTIONS = {
    "input": {"size": "input_size", "large_image": "large_image", "tile_overlap": "tile_overlap"},
    "normalization": {"mean": "mean", "std": "std", "window": "window"},
    "postprocess": {"min_component_pixels": "min_component_pixels", "fill_holes": "fill_holes"},
}


@dataclass(frozen=True)
class ClassInfo:
    name: str
    color: tuple[int, int, int]


@dataclass(frozen=True)
class Gate:
    """Is there a finding at all? See medviewer.inference.gate."""

    type: str = "none"
    min_pixels: int = 0  # pixel_count: positive area below this means no finding
    label: str | None = None  # classifier / two_stage: which label's probability decides
    threshold: float = 0.5
    model: str | None = None  # two_stage: name of the classification model that runs first


@dataclass(frozen=True)
class Scope:
    """The images a model applies to ("applies_to" in the spec); an empty field matches any
    image. `medviewer.models.scope.why_not_applicable` is the one function that reads it."""

    modalities: tuple[str, ...] = ()  # DICOM Modality (CR, CT, ...); "OT" for PNG/JPEG files
    body_parts: tuple[str, ...] = ()  # BodyPartExamined; images without one are not excluded
    colour: str = "any"  # grey | colour | any
    min_size: int = MIN_SIDE  # the shorter side, in pixels
    series_description: str | None = None  # a regular expression, searched case-insensitively

    @property
    def declared(self) -> bool:
        """Whether the spec narrows its images beyond the minimum size."""
        return replace(self, min_size=MIN_SIDE) != Scope()


@dataclass(frozen=True)
class ModelSpec:
    name: str
    task: str
    encoder: str
    in_channels: int = 1
    architecture: str | None = None  # smp architecture; segmentation tasks only
    decoder_channels: tuple[int, ...] | None = None  # smp's decoder widths; None: its default
    # Encoder stages used: 4 stops at stride 16, so Grad-CAM reads a map twice as fine (16x16
    # from a 256x256 input) and the model is smaller; decoder_channels then lists 4 widths.
    encoder_depth: int = 5
    encoder_weights: str | None = None  # a local weights file; never fetched from a hub
    classes: tuple[ClassInfo, ...] = ()  # index = class value; 0 is background
    labels: tuple[str, ...] = ()
    label_mode: str = "multilabel"
    input_size: tuple[int, int] = (256, 256)
    large_image: str = "resize"
    tile_overlap: float = 0.25
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.25,)
    window: tuple[float, float] | None = None  # display window for the input; None: header's
    mask_threshold: float = 0.5  # binary segmentation
    label_thresholds: dict[str, float] = field(default_factory=dict)
    min_component_pixels: int = 0
    fill_holes: bool = False
    gate: Gate = field(default_factory=Gate)
    applies_to: Scope = field(default_factory=Scope)
    # Click guidance: input channels after the image's; `in_channels` stays the image's own.
    guidance: str = "none"
    guidance_prev_mask: bool = False  # one more channel per foreground class: the last mask
    # With clicks the model sees the region around them enlarged (`inference.clicks.crop_box`);
    # False: always the whole image, as without clicks.
    guidance_zoom: bool = True

    @property
    def guided(self) -> bool:
        return self.guidance != "none"

    def unguided(self) -> ModelSpec:
        """The same model without click guidance (a guided model's unguided twin)."""
        return replace(self, guidance="none", guidance_prev_mask=False, guidance_zoom=True)

    @property
    def guidance_channels(self) -> int:
        """Guidance channels after the image's: a positive and a negative click map per
        foreground class (pos_1, neg_1, pos_2, neg_2, ...), then, with `guidance_prev_mask`, the
        previous mask's class k as 0/1 (prev_1, prev_2, ...). Per class rather than one pair
        plus a class index: a click map says where *and* which class, with no ordinal code."""
        if not self.guided:
            return 0
        foreground = max(1, self.num_classes - 1)
        return foreground * (3 if self.guidance_prev_mask else 2)

    @property
    def network_channels(self) -> int:
        """What the network's first convolution reads: the image's channels, then guidance."""
        return self.in_channels + self.guidance_channels

    @property
    def segments(self) -> bool:
        return self.task != "classification"

    @property
    def classifies(self) -> bool:
        return self.task != "segmentation"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def label_threshold(self, label: str) -> float:
        return self.label_thresholds.get(label, 0.5)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["classes"] = [{"name": c.name, "color": list(c.color)} for c in self.classes]
        if not self.guided:  # an unguided spec writes what it wrote before guidance existed
            del d["guidance"], d["guidance_prev_mask"], d["guidance_zoom"]
        elif self.guidance_zoom:  # the default, as specs written before the option had it
            del d["guidance_zoom"]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], source: str = "spec", budget: ModelBudget | None = None
    ) -> ModelSpec:
        """The spec `data` describes; SpecError naming `source` and the field when it is
        invalid, ModelTooLarge when its sizes are over the budget (by default from the
        environment)."""
        return _parse(data, source, budget or ModelBudget.from_env())

    @classmethod
    def load(cls, path: Path | str, budget: ModelBudget | None = None) -> ModelSpec:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except OSError as e:
            raise SpecError(f"{path}: cannot read the model spec: {e.strerror}") from e
        except json.JSONDecodeError as e:
            raise SpecError(f"{path}: not valid JSON: {e.msg} at line {e.lineno}") from e
        except RecursionError as e:  # json recurses per level: [[[[...]]]] 100,000 deep
            raise SpecError(f"{path}: not a model spec: JSON nested too deeply") from e
        return cls.from_dict(data, str(path), budget)


# Each field is checked for its type as well as its value: a spec is user input, and a list
# where an object belongs must be a SpecError naming the field, never a traceback.


def _object(data: dict[str, Any], key: str, src: str, fields: tuple[str, ...]) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise SpecError(
            f"{src}: {key} must be an object ({', '.join(fields)}), got {_shown(value)}"
        )
    unknown = set(value) - set(fields)
    if unknown:
        raise SpecError(f"{src}: {key}: unknown field(s) {', '.join(sorted(unknown))}")
    return value


def _shown(value: Any) -> str:
    """A value for a message: a spec may hold megabytes where a number belongs."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _choice(
    data: dict[str, Any], key: str, allowed: tuple[str, ...], default: str, src: str
) -> str:
    value = data.get(key, default)
    if not isinstance(value, str) or value not in allowed:
        raise SpecError(f"{src}: {key} is {_shown(value)}; valid: {', '.join(allowed)}")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _number(
    data: dict[str, Any], key: str, default: float, src: str, lo: float, hi: float
) -> float:
    value = data.get(key, default)
    if not _is_number(value) or not lo <= value <= hi:
        raise SpecError(f"{src}: {key} must be a number from {lo} to {hi}, got {_shown(value)}")
    return value


def _integer(data: dict[str, Any], key: str, default: int, src: str, lo: int, hi: int) -> int:
    value = data.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise SpecError(
            f"{src}: {key} must be a whole number from {lo} to {hi}, got {_shown(value)}"
        )
    return value


def _flag(data: dict[str, Any], key: str, default: bool, src: str) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise SpecError(f"{src}: {key} must be true or false, got {_shown(value)}")
    return value


def _text(data: dict[str, Any], key: str, src: str) -> str | None:
    value = data.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise SpecError(f"{src}: {key} must be a non-empty string, got {_shown(value)}")
    return value


def _numbers(value: Any, what: str, count: int, src: str) -> tuple[float, ...]:
    if not (
        isinstance(value, (list, tuple)) and len(value) == count and all(map(_is_number, value))
    ):
        raise SpecError(f"{src}: {what} must be a list of {count} number(s), got {_shown(value)}")
    return tuple(value)


def _classes(data: dict[str, Any], src: str) -> tuple[ClassInfo, ...]:
    raw = data.get("classes", [])
    if not isinstance(raw, list):
        raise SpecError(f"{src}: classes must be a list of {{name, color}}")
    out = []
    for i, item in enumerate(raw):
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise SpecError(f"{src}: classes[{i}] needs a name")
        color = item.get("color", class_colour(i))
        if not (isinstance(color, (list, tuple)) and len(color) == 3
                and all(isinstance(c, int) and 0 <= c <= 255 for c in color)):  # fmt: skip
            raise SpecError(f"{src}: classes[{i}].color must be [r, g, b] with 0-255 each")
        out.append(ClassInfo(item["name"], tuple(color)))  # type: ignore[arg-type]
    return tuple(out)


def _labels(data: dict[str, Any], src: str) -> tuple[str, ...]:
    value = data.get("labels", [])
    if isinstance(value, str):
        value = [value]
    if not (
        isinstance(value, (list, tuple))
        and all(isinstance(v, str) and v for v in value)
        and len(set(value)) == len(value)
    ):
        raise SpecError(f"{src}: labels must be a list of distinct names, got {_shown(value)}")
    return tuple(value)


def _strings(data: dict[str, Any], key: str, src: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise SpecError(f"{src}: {key} must be a list of names, got {_shown(value)}")
    return tuple(v.strip().upper() for v in value)


def _scope(data: dict[str, Any], src: str) -> Scope:
    where = f"{src}: applies_to"
    raw = data.get("applies_to", {})
    if not isinstance(raw, dict):
        raise SpecError(f"{where} must be an object (modalities, body_parts, colour, ...)")
    unknown = set(raw) - set(Scope.__dataclass_fields__)
    if unknown:
        raise SpecError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    pattern = raw.get("series_description")
    if pattern is not None:
        try:
            re.compile(pattern)
        except (re.error, TypeError) as e:
            raise SpecError(f"{where}: series_description is not a regular expression: {e}") from e
    return Scope(
        modalities=_strings(raw, "modalities", where),
        body_parts=_strings(raw, "body_parts", where),
        colour=_choice(raw, "colour", COLOURS, "any", where),
        min_size=_integer(raw, "min_size", MIN_SIDE, where, MIN_SIDE, 1_000_000),
        series_description=pattern,
    )


def _encoder_depth(data: dict[str, Any], src: str) -> int:
    depth = data.get("encoder_depth", 5)
    if depth not in (3, 4, 5) or isinstance(depth, bool):
        raise SpecError(f"{src}: encoder_depth must be 3, 4 or 5, got {_shown(depth)}")
    return int(depth)


def _flatten(data: dict[str, Any], src: str) -> dict[str, Any]:
    """The fields of the sections ({"input": {"size": ...}}) under their own names (input_size),
    as to_dict writes them; a field given both ways is refused, as neither would be read."""
    flat = {k: v for k, v in data.items() if k not in SECTIONS}
    for section, fields in SECTIONS.items():
        for key, value in _object(data, section, src, tuple(fields)).items():
            if fields[key] in data:
                raise SpecError(f"{src}: {section}.{key} and {fields[key]} are both given")
            flat[fields[key]] = value
    return flat


def _input_size(data: dict[str, Any], src: str) -> tuple[int, int]:
    size = data.get("input_size", [256, 256])
    if not (isinstance(size, (list, tuple)) and len(size) == 2
            and all(isinstance(s, int) and not isinstance(s, bool) and s >= MIN_SIDE
                    and s % 32 == 0 for s in size)):  # fmt: skip
        raise SpecError(
            f"{src}: input size must be [height, width], multiples of 32, got {_shown(size)}"
        )
    return size[0], size[1]


def _decoder(data: dict[str, Any], src: str) -> tuple[int, ...] | None:
    decoder = data.get("decoder_channels")
    if decoder is not None and not (
        isinstance(decoder, (list, tuple))
        and decoder
        and all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in decoder)
    ):
        raise SpecError(f"{src}: decoder_channels must be a list of positive integers")
    return tuple(decoder) if decoder else None


def _window(data: dict[str, Any], src: str) -> tuple[float, float] | None:
    window = data.get("window")
    if window is None:
        return None
    center, width = _numbers(window, "normalization window [center, width]", 2, src)
    if width <= 0:
        raise SpecError(f"{src}: normalization window width must be above 0, got {_shown(width)}")
    return center, width


def _gate(data: dict[str, Any], labels: tuple[str, ...], task: str, src: str) -> Gate:
    raw = data.get("gate", {"type": "none"})
    if isinstance(raw, str):
        raw = {"type": raw}
    where = f"{src}: gate"
    raw = _object({"gate": raw}, "gate", src, tuple(Gate.__dataclass_fields__))
    gate = Gate(
        type=_choice(raw, "type", GATES, "none", where),
        min_pixels=_integer(raw, "min_pixels", 0, where, 0, 1_000_000_000),
        label=_text(raw, "label", where),
        threshold=_number(raw, "threshold", 0.5, where, 0, 1),
        model=_text(raw, "model", where),
    )
    if gate.type in ("classifier", "two_stage") and gate.label is None and labels:
        gate = replace(gate, label=labels[0])
    if gate.type == "classifier" and task != "segmentation+classification":
        raise SpecError(f"{src}: gate 'classifier' needs task segmentation+classification")
    if gate.type == "two_stage" and not gate.model:
        raise SpecError(f"{src}: gate 'two_stage' needs gate.model, the classifier to run first")
    if gate.type == "classifier" and gate.label not in labels:
        raise SpecError(f"{src}: gate label {gate.label!r} is not one of the labels")
    return gate


def _thresholds(data: dict[str, Any], labels: tuple[str, ...], src: str) -> dict[str, float]:
    raw = data.get("label_thresholds", {})
    if not isinstance(raw, dict):
        raise SpecError(f"{src}: label_thresholds must be an object of label: threshold")
    if set(raw) - set(labels):
        raise SpecError(f"{src}: label_thresholds names unknown labels")
    return {k: _number(raw, k, 0.5, f"{src}: label_thresholds", 0, 1) for k in raw}


def _parse(data: Any, src: str, budget: ModelBudget) -> ModelSpec:
    if not isinstance(data, dict):
        raise SpecError(f"{src}: a model spec is a JSON object")
    unknown = set(data) - set(ModelSpec.__dataclass_fields__) - set(SECTIONS)
    if unknown:
        raise SpecError(f"{src}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    data = _flatten(data, src)
    for key in ("name", "encoder"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise SpecError(f"{src}: {key} is required (a non-empty string)")
    task = _choice(data, "task", TASKS, "", src)
    classes = _classes(data, src)
    labels = _labels(data, src)
    architecture = _text(data, "architecture", src)
    if task != "classification":
        if architecture is None:
            raise SpecError(f"{src}: a {task} model needs an architecture (e.g. Unet, FPN)")
        if len(classes) < 2:
            raise SpecError(f"{src}: segmentation needs at least 2 classes (background first)")
    if task != "segmentation" and not labels:
        raise SpecError(f"{src}: a {task} model needs labels")
    size = _input_size(data, src)
    decoder = _decoder(data, src)
    budget.check_sizes(size, decoder, src)
    in_channels = _integer(data, "in_channels", 1, src, 1, 4)
    mean = data.get("mean", [0.5] * in_channels)
    std = data.get("std", [0.25] * in_channels)
    mean = _numbers(mean, "normalization mean (one per input channel)", in_channels, src)
    std = _numbers(std, "normalization std (one per input channel)", in_channels, src)
    if not all(s > 0 for s in std):
        raise SpecError(f"{src}: normalization std must be above 0, got {_shown(std)}")
    guidance = _choice(data, "guidance", GUIDANCE, "none", src)
    prev_mask = _flag(data, "guidance_prev_mask", False, src)
    if guidance != "none" and task == "classification":
        raise SpecError(f"{src}: guidance {guidance!r} needs a segmentation task, not {task}")
    if prev_mask and guidance == "none":
        raise SpecError(f'{src}: guidance_prev_mask needs guidance "clicks"')
    zoom = _flag(data, "guidance_zoom", True, src)
    if not zoom and guidance == "none":
        raise SpecError(f'{src}: guidance_zoom needs guidance "clicks"')
    return ModelSpec(
        name=data["name"],
        task=task,
        encoder=data["encoder"],
        in_channels=in_channels,
        architecture=architecture,
        decoder_channels=decoder,
        encoder_depth=_encoder_depth(data, src),
        encoder_weights=_text(data, "encoder_weights", src),
        classes=classes,
        labels=labels,
        label_mode=_choice(data, "label_mode", LABEL_MODES, "multilabel", src),
        input_size=size,
        large_image=_choice(data, "large_image", LARGE_IMAGE, "resize", src),
        tile_overlap=_number(data, "tile_overlap", 0.25, src, 0, 0.75),
        mean=mean,
        std=std,
        window=_window(data, src),
        mask_threshold=_number(data, "mask_threshold", 0.5, src, 0, 1),
        label_thresholds=_thresholds(data, labels, src),
        min_component_pixels=_integer(data, "min_component_pixels", 0, src, 0, 10**9),
        fill_holes=_flag(data, "fill_holes", False, src),
        gate=_gate(data, labels, task, src),
        applies_to=_scope(data, src),
        guidance=guidance,
        guidance_prev_mask=prev_mask,
        guidance_zoom=zoom,
    )
