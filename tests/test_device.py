"""Device selection: auto picks the best device present; absent devices are clear errors."""

from __future__ import annotations

import pytest
import torch

from smartcash_core.device import select_device
from smartcash_core.errors import DeviceError


def test_cpu_is_always_available() -> None:
    assert select_device("cpu") == torch.device("cpu")
    assert select_device(" CPU ") == torch.device("cpu")


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("smartcash_core.device.mps_available", lambda: False)
    assert select_device("auto") == torch.device("cpu")
    monkeypatch.setattr("smartcash_core.device.mps_available", lambda: True)
    assert select_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device(None) == torch.device("cuda", 0)


def test_cuda_index_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert select_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(DeviceError, match="cuda:2"):
        select_device("cuda:2")


def test_missing_devices_are_clear_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("smartcash_core.device.mps_available", lambda: False)
    with pytest.raises(DeviceError, match="not available here"):
        select_device("cuda")
    with pytest.raises(DeviceError, match="not available here"):
        select_device("mps")
    with pytest.raises(DeviceError, match="unknown device"):
        select_device("tpu")
