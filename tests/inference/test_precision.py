"""MEDVIEWER_CPU_NO_BF16=1 takes the fp32 CPU path that CPUs without bf16 take."""

from __future__ import annotations

import pytest
import torch

from medviewer.inference.device import NO_BF16_ENV, autocast_dtype, cpu_has_fast_bf16


def test_the_switch_forces_fp32_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(NO_BF16_ENV, raising=False)
    native = cpu_has_fast_bf16()
    assert autocast_dtype(torch.device("cpu")) == (torch.bfloat16 if native else None)
    monkeypatch.setenv(NO_BF16_ENV, "1")
    assert not cpu_has_fast_bf16() and autocast_dtype(torch.device("cpu")) is None
    assert autocast_dtype(torch.device("cpu"), "bf16") == torch.bfloat16  # asked for by name
    monkeypatch.setenv(NO_BF16_ENV, "0")
    assert cpu_has_fast_bf16() == native
