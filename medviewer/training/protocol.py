"""The training job protocol: what a job asks for (`JobRequest`) and what it reports (one type
per event). The trainer, the JobManager, the CLI and the Retrain dialog write and read jobs
only through this module, so an option or an event field is defined once. No torch here.

A job is a JSON file (`JobRequest.write`); the trainer prints one JSON line per event
(`Event.to_json`) and everything that follows it reads them back with `parse_event`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from medviewer.atomic import atomic_write_json
from medviewer.training.errors import TrainingError

LOSSES = ("dice+ce", "dice+focal", "ce")
DEVICES = ("auto", "cpu", "cuda")
JOB_FILE = "job.json"
VAL_FRACTION = 0.2  # share of patients held out for validation, by default
RESULT_FILE = "result.json"  # in the run folder: the Done event, so a rerun never trains twice


@dataclass(frozen=True)
class TrainConfig:
    """How to train; the defaults are what the CLI, the dialog and a bare job file get."""

    epochs: int = 20
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    device: str = "auto"
    seed: int = 0
    freeze_encoder_epochs: int = 0
    loss: str = "dice+ce"
    class_weights: bool = True
    patience: int = 5  # epochs without a better validation metric; 0 never stops early
    augment: bool = True

    def check(self) -> None:
        if self.loss not in LOSSES:
            raise TrainingError(f"unknown loss {self.loss!r}; valid: {', '.join(LOSSES)}")
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise TrainingError(f"unknown device {self.device!r}; valid: {', '.join(DEVICES)}")
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise TrainingError("epochs and batch_size must be at least 1 and lr above 0")
        if self.patience < 0 or self.freeze_encoder_epochs < 0 or self.weight_decay < 0:
            raise TrainingError(
                "patience, freeze_encoder_epochs and weight_decay cannot be negative"
            )


_TRAIN_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
# Options a caller may set (besides the workspace, model and run folder).
OPTIONS = (*_TRAIN_FIELDS, "val_fraction", "auto_activate")
_WHAT = {int: "a whole number", float: "a number", bool: "true or false", str: "text"}


def _typed(key: str, value: Any, kind: type) -> Any:
    ok = isinstance(value, kind) or (kind is float and isinstance(value, int))
    if not ok or (kind is not bool and isinstance(value, bool)):
        raise TrainingError(f"job {key} must be {_WHAT.get(kind, kind)}, got {value!r}")
    return kind(value)


@dataclass(frozen=True)
class JobRequest:
    """One training job: train `model` (from its active version) in `workspace`."""

    workspace: str
    model: str
    run_dir: str | None = None  # checkpoints; a job resumes from the one it holds
    val_fraction: float = VAL_FRACTION
    auto_activate: bool = False
    train: TrainConfig = TrainConfig()

    @classmethod
    def create(
        cls, workspace: Path | str, model: str, run_dir: Path | str | None = None, **options: Any
    ) -> JobRequest:
        """A checked request from keyword options (see OPTIONS); unknown ones are refused."""
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise TrainingError(
                f"unknown training option(s) {', '.join(unknown)}; valid: {', '.join(OPTIONS)}"
            )
        return cls.from_dict(
            {
                "workspace": str(workspace),
                "model": model,
                "run_dir": None if run_dir is None else str(run_dir),
                **options,
            }
        )

    @classmethod
    def from_dict(cls, data: Any) -> JobRequest:
        """Checked values from a job file's JSON object."""
        if not isinstance(data, dict):
            raise TrainingError("a job file holds a JSON object")
        for key in ("workspace", "model"):
            if not isinstance(data.get(key), str) or not data[key]:
                raise TrainingError(f"the job file needs {key!r} (a non-empty string)")
        unknown = sorted(set(data) - {*OPTIONS, "workspace", "model", "run_dir"})
        if unknown:
            raise TrainingError(f"unknown job option(s) {', '.join(unknown)}")
        given = {
            key: _typed(key, data[key], type(f.default))
            for key, f in _TRAIN_FIELDS.items()
            if data.get(key) is not None
        }
        train = TrainConfig(**given)
        train.check()
        val_fraction = _typed("val_fraction", data.get("val_fraction", VAL_FRACTION), float)
        if not 0 < val_fraction < 1:
            raise TrainingError(f"job val_fraction must be between 0 and 1, got {val_fraction!r}")
        run_dir = data.get("run_dir")
        if run_dir is not None and not isinstance(run_dir, str):
            raise TrainingError(f"job run_dir must be a folder path, got {run_dir!r}")
        return cls(
            data["workspace"],
            data["model"],
            run_dir,
            val_fraction,
            _typed("auto_activate", data.get("auto_activate", False), bool),
            train,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "workspace": self.workspace,
            "model": self.model,
            "run_dir": self.run_dir,
            "val_fraction": self.val_fraction,
            "auto_activate": self.auto_activate,
            **dataclasses.asdict(self.train),
        }

    def write(self, path: Path) -> None:
        atomic_write_json(path, self.to_dict())

    @classmethod
    def read(cls, path: Path | str) -> JobRequest:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as e:
            raise TrainingError(f"{path}: cannot read the job file: {e.strerror}") from e
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise TrainingError(f"{path}: not a valid job file: {e}") from e
        return cls.from_dict(data)


# -- click metrics ---------------------------------------------------------------------------

VALIDATION_MAX_CLICKS = 10  # the click robot's clicks per image in training's validation
CLICK_DICE_AFTER = (1, 3, 5)  # clicks after which the Dice is reported


@dataclass(frozen=True)
class ClickMetrics:
    """How a click-guided model follows clicks (`training.click_metrics`): the mean number of
    the robot's clicks to reach Dice 0.85 / 0.90 (NoC, 0 when the proposal without clicks
    already does, `max_clicks` when never), the mean Dice after 1, 3 and 5 clicks (and with
    none: the model's own proposal), and the share of objects never reaching 0.90. Reported in
    a guided model's validation metrics under "clicks", and by `medviewer evaluate-clicks`."""

    noc85: float | None = None
    noc90: float | None = None
    dice_after: dict[str, float | None] = field(default_factory=dict)  # "0", "1", "3", "5"
    never_90: float | None = None
    objects: int = 0  # robot sessions: one per image and class present in its truth
    max_clicks: int = VALIDATION_MAX_CLICKS

    def to_dict(self) -> dict[str, Any]:
        return finite(dataclasses.asdict(self))


# -- events ----------------------------------------------------------------------------------


def finite(value: Any) -> Any:
    """JSON has no NaN: non-finite numbers become null (nested too)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        return finite({"event": self.kind, **dataclasses.asdict(self)})

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


@dataclass(frozen=True)
class Start(Event):
    kind: ClassVar[str] = "start"
    epochs: int = 0
    train_images: int = 0
    val_images: int = 0
    negatives: int = 0
    device: str = ""
    model: str = ""
    trained_from: str | None = None
    world_size: int = 1
    skipped: int = 0


@dataclass(frozen=True)
class Batch(Event):
    kind: ClassVar[str] = "batch"
    epoch: int = 0
    step: int = 0
    steps: int = 1
    loss: float | None = None


@dataclass(frozen=True)
class Epoch(Event):
    kind: ClassVar[str] = "epoch"
    epoch: int = 0
    epochs: int = 1
    train_loss: float | None = None
    val_loss: float | None = None
    val_metric: float | None = None
    seconds: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Done(Event):
    """The new version is registered; `activated` when the job activated it."""

    kind: ClassVar[str] = "done"
    version: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    active_metrics: dict[str, Any] | None = None
    active_version: str | None = None
    better: bool = False
    activated: bool = False

    @property
    def message(self) -> str:
        return f"version {self.version} registered" + (" and activated" if self.activated else "")


@dataclass(frozen=True)
class Error(Event):
    kind: ClassVar[str] = "error"
    message: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class Ended(Event):
    """Sent by the JobManager (not the trainer) once the job's final state is saved."""

    kind: ClassVar[str] = "ended"
    state: str = ""
    message: str = ""


EVENTS: dict[str, type[Event]] = {e.kind: e for e in (Start, Batch, Epoch, Done, Error, Ended)}


def event_from_dict(data: Any) -> Event | None:
    """The typed event of a decoded JSON object; None when it is not one of ours. Fields it
    does not know are ignored, missing ones take their defaults."""
    if not isinstance(data, dict):
        return None
    cls = EVENTS.get(data.get("event"))  # type: ignore[arg-type]
    if cls is None:
        return None
    names = {f.name for f in dataclasses.fields(cls)}
    try:
        return cls(**{k: v for k, v in data.items() if k in names})
    except TypeError:
        return None


def parse_event(line: str | bytes) -> Event | None:
    """One line of a trainer's output -> its event, or None for any other output."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", "replace")
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        return event_from_dict(json.loads(line))
    except json.JSONDecodeError:
        return None


def write_result(run_dir: Path, done: Done) -> None:
    atomic_write_json(run_dir / RESULT_FILE, done.to_dict())


def read_result(run_dir: Path) -> Done | None:
    """The Done event a finished trainer left in its run folder, if any."""
    try:
        event = event_from_dict(json.loads((run_dir / RESULT_FILE).read_text()))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return event if isinstance(event, Done) else None
