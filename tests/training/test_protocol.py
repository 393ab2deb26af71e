"""The job protocol: one request type and one type per event, written and read by one module."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from medviewer.training.errors import TrainingError
from medviewer.training.protocol import (
    OPTIONS,
    Batch,
    Done,
    Epoch,
    Error,
    JobRequest,
    Start,
    TrainConfig,
    parse_event,
    read_result,
    write_result,
)


def test_request_round_trip_and_defaults(tmp_path: Path) -> None:
    request = JobRequest.create(tmp_path, "chest", tmp_path / "run", epochs=3, auto_activate=True)
    assert request.train == TrainConfig(epochs=3) and request.auto_activate
    request.write(tmp_path / "job.json")
    assert JobRequest.read(tmp_path / "job.json") == request
    assert set(json.loads((tmp_path / "job.json").read_text())) == {
        "workspace", "model", "run_dir", *OPTIONS,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"epoch": 3}, "unknown training option(s) epoch; valid: epochs"),
        ({"epochs": 0}, "epochs and batch_size must be at least 1"),
        ({"epochs": 2.5}, "job epochs must be a whole number, got 2.5"),
        ({"augment": "yes"}, "job augment must be true or false"),
        ({"loss": "l2"}, "unknown loss 'l2'; valid: dice+ce, dice+focal, ce"),
        ({"device": "tpu"}, "unknown device 'tpu'"),
        ({"val_fraction": 1.5}, "val_fraction must be between 0 and 1"),
    ],
)
def test_bad_options_are_refused_before_anything_runs(options: dict, message: str) -> None:
    with pytest.raises(TrainingError, match=re.escape(message)):
        JobRequest.create("/ws", "chest", **options)


def test_bad_job_files(tmp_path: Path) -> None:
    path = tmp_path / "job.json"
    path.write_text("{not json")
    with pytest.raises(TrainingError, match=f"{path}: not a valid job file"):
        JobRequest.read(path)
    path.write_text(json.dumps({"workspace": "/ws", "model": "m", "stray": 1}))
    with pytest.raises(TrainingError, match="unknown job option"):
        JobRequest.read(path)
    with pytest.raises(TrainingError, match="cannot read the job file"):
        JobRequest.read(tmp_path / "missing.json")


def test_events_are_written_and_parsed_by_the_same_types(tmp_path: Path) -> None:
    events = [
        Start(epochs=2, train_images=4, val_images=1, negatives=1, device="cpu", model="m"),
        Batch(epoch=1, step=1, steps=3, loss=float("nan")),  # JSON has no NaN: null
        Epoch(epoch=1, epochs=2, train_loss=0.5, val_loss=None, val_metric=0.7, seconds=1.0),
        Done(version="v2", metrics={"score": 0.7}, activated=True),
        Error(message="disk full"),
    ]
    parsed = [parse_event(e.to_json()) for e in events]
    assert parsed[1] == Batch(epoch=1, step=1, steps=3, loss=None)
    assert parsed[:1] + parsed[2:] == events[:1] + events[2:]
    assert parse_event("a warning printed by a library") is None
    assert parse_event('{"event": "unheard-of"}') is None
    assert parse_event('{"event": "batch", "extra": 1}') == Batch()  # unknown fields ignored
    assert Done(version="v3", activated=True).message == "version v3 registered and activated"
    write_result(tmp_path, events[3])
    assert read_result(tmp_path) == events[3]
    (tmp_path / "result.json").write_text("{truncated")
    assert read_result(tmp_path) is None
