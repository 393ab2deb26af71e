"""The model spec: a JSON file that says everything needed to build, run and gate a model."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from medviewer.imaging.palette import class_colour
from medviewer.models.errors import SpecError

TASKS = ("segmentation", "classification", "segmentation+classification")
LABEL_MODES = ("multilabel", "multiclass")
LARGE_IMAGE = ("resize", "tile")
GATES = ("none", "pixel_count", "classifier", "two_stage")
COLOURS = ("any", "grey", "colour")
MIN_SIDE = 32  # five stride-2 stages of an smp encoder: the smallest image any model can take


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
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "spec") -> ModelSpec:
        return _parse(data, source)

    @classmethod
    def load(cls, path: Path | str) -> ModelSpec:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except OSError as e:
            raise SpecError(f"{path}: cannot read the model spec: {e.strerror}") from e
        except json.JSONDecodeError as e:
            raise SpecError(f"{path}: not valid JSON: {e.msg} at line {e.lineno}") from e
        if not isinstance(data, dict):
            raise SpecError(f"{path}: a model spec is a JSON object")
        return _parse(data, str(path))


def _choice(
    data: dict[str, Any], key: str, allowed: tuple[str, ...], default: str, src: str
) -> str:
    value = data.get(key, default)
    if value not in allowed:
        raise SpecError(f"{src}: {key} is {value!r}; valid: {', '.join(allowed)}")
    return value


def _number(
    data: dict[str, Any], key: str, default: float, src: str, lo: float, hi: float
) -> float:
    value = data.get(key, default)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not lo <= value <= hi:
        raise SpecError(f"{src}: {key} must be a number from {lo} to {hi}, got {value!r}")
    return value


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


def _strings(data: dict[str, Any], key: str, src: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise SpecError(f"{src}: {key} must be a list of names, got {value!r}")
    return tuple(v.strip().upper() for v in value)


def _scope(data: dict[str, Any], src: str) -> Scope:
    raw = data.get("applies_to", {})
    where = f"{src}: applies_to"
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
        min_size=int(_number(raw, "min_size", MIN_SIDE, where, MIN_SIDE, 1e6)),
        series_description=pattern,
    )


def _encoder_depth(data: dict[str, Any], src: str) -> int:
    depth = data.get("encoder_depth", 5)
    if depth not in (3, 4, 5) or isinstance(depth, bool):
        raise SpecError(f"{src}: encoder_depth must be 3, 4 or 5, got {depth!r}")
    return int(depth)


def _parse(data: dict[str, Any], src: str) -> ModelSpec:
    known = set(ModelSpec.__dataclass_fields__) | {"input", "normalization", "postprocess"}
    unknown = set(data) - known
    if unknown:
        raise SpecError(f"{src}: unknown field(s) {', '.join(sorted(unknown))}")
    for key in ("name", "encoder"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise SpecError(f"{src}: {key} is required (a non-empty string)")
    task = _choice(data, "task", TASKS, "", src)
    classes = _classes(data, src)
    labels = tuple(data.get("labels", ()))
    if task != "classification":
        if not isinstance(data.get("architecture"), str):
            raise SpecError(f"{src}: a {task} model needs an architecture (e.g. Unet, FPN)")
        if len(classes) < 2:
            raise SpecError(f"{src}: segmentation needs at least 2 classes (background first)")
    if task != "segmentation" and not labels:
        raise SpecError(f"{src}: a {task} model needs labels")
    inp = data.get("input", {})
    norm = data.get("normalization", {})
    post = data.get("postprocess", {})
    size = inp.get("size", data.get("input_size", [256, 256]))
    if not (isinstance(size, (list, tuple)) and len(size) == 2
            and all(isinstance(s, int) and s >= 32 and s % 32 == 0 for s in size)):  # fmt: skip
        raise SpecError(f"{src}: input size must be [height, width], multiples of 32, got {size!r}")
    in_channels = int(_number(data, "in_channels", 1, src, 1, 4))
    mean = tuple(norm.get("mean", data.get("mean", [0.5] * in_channels)))
    std = tuple(norm.get("std", data.get("std", [0.25] * in_channels)))
    if len(mean) != in_channels or len(std) != in_channels or not all(s > 0 for s in std):
        raise SpecError(f"{src}: normalization mean/std need {in_channels} value(s), std > 0")
    window = norm.get("window", data.get("window"))
    gate_raw = data.get("gate", {"type": "none"})
    if isinstance(gate_raw, str):
        gate_raw = {"type": gate_raw}
    gate = Gate(
        type=_choice(gate_raw, "type", GATES, "none", f"{src}: gate"),
        min_pixels=int(_number(gate_raw, "min_pixels", 0, f"{src}: gate", 0, 1e9)),
        label=gate_raw.get("label"),
        threshold=_number(gate_raw, "threshold", 0.5, f"{src}: gate", 0, 1),
        model=gate_raw.get("model"),
    )
    if gate.type in ("classifier", "two_stage") and gate.label is None and labels:
        gate = Gate(gate.type, gate.min_pixels, labels[0], gate.threshold, gate.model)
    if gate.type == "classifier" and task != "segmentation+classification":
        raise SpecError(f"{src}: gate 'classifier' needs task segmentation+classification")
    if gate.type == "two_stage" and not gate.model:
        raise SpecError(f"{src}: gate 'two_stage' needs gate.model, the classifier to run first")
    if gate.type == "classifier" and gate.label not in labels:
        raise SpecError(f"{src}: gate label {gate.label!r} is not one of the labels")
    decoder = data.get("decoder_channels")
    if decoder is not None and not (
        isinstance(decoder, (list, tuple))
        and decoder
        and all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in decoder)
    ):
        raise SpecError(f"{src}: decoder_channels must be a list of positive integers")
    thresholds = data.get("label_thresholds", {})
    if set(thresholds) - set(labels):
        raise SpecError(f"{src}: label_thresholds names unknown labels")
    return ModelSpec(
        name=data["name"],
        task=task,
        encoder=data["encoder"],
        in_channels=in_channels,
        architecture=data.get("architecture"),
        decoder_channels=tuple(decoder) if decoder else None,
        encoder_depth=_encoder_depth(data, src),
        encoder_weights=data.get("encoder_weights"),
        classes=classes,
        labels=labels,
        label_mode=_choice(data, "label_mode", LABEL_MODES, "multilabel", src),
        input_size=(size[0], size[1]),
        large_image=_choice(
            inp, "large_image", LARGE_IMAGE, data.get("large_image", "resize"), src
        ),
        tile_overlap=_number(inp, "tile_overlap", data.get("tile_overlap", 0.25), src, 0, 0.75),
        mean=mean,
        std=std,
        window=tuple(window) if window else None,  # type: ignore[arg-type]
        mask_threshold=_number(data, "mask_threshold", 0.5, src, 0, 1),
        label_thresholds=dict(thresholds),
        min_component_pixels=int(
            post.get("min_component_pixels", data.get("min_component_pixels", 0))
        ),
        fill_holes=bool(post.get("fill_holes", data.get("fill_holes", False))),
        gate=gate,
        applies_to=_scope(data, src),
    )
