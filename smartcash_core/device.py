"""Device selection: ``auto | cpu | cuda | cuda:N | mps``."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import torch

from smartcash_core.errors import DeviceError

_CUDA_PATTERN = re.compile(r"^cuda(?::(\d+))?$")


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def select_device(spec: str | torch.device | None = "auto") -> torch.device:
    """Resolve a device spec. ``auto`` picks CUDA, then MPS, then CPU.

    Asking for a device that is not present raises :class:`DeviceError` naming what is available.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    text = (spec or "auto").strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", 0)
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "mps":
        if not mps_available():
            raise DeviceError(f"device 'mps' was requested but is not available here ({describe_devices()})")
        return torch.device("mps")
    match = _CUDA_PATTERN.match(text)
    if match is None:
        raise DeviceError(f"unknown device {spec!r}: use auto, cpu, cuda, cuda:N or mps")
    index = int(match.group(1) or 0)
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if index >= count:
        raise DeviceError(f"device {text!r} was requested but is not available here ({describe_devices()})")
    return torch.device("cuda", index)


def describe_devices() -> str:
    """A short human-readable list of the devices present."""
    available = ["cpu"]
    if torch.cuda.is_available():
        available += [f"cuda:{index}" for index in range(torch.cuda.device_count())]
    if mps_available():
        available.append("mps")
    return "available: " + ", ".join(available)


_CGROUP_LIMITS = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))


def system_memory_bytes() -> int | None:
    """Physical memory, or the container's (cgroup) memory limit when that is lower; None if unknown."""
    known = []
    with contextlib.suppress(AttributeError, ValueError, OSError):  # not a POSIX system that reports it
        known.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    for limit_file in _CGROUP_LIMITS:
        try:
            text = limit_file.read_text().strip()
        except OSError:
            continue
        if text.isdigit():  # "max" (cgroup v2) means no limit; v1 reports a huge number instead
            known.append(int(text))
    return min(known) if known else None


def device_memory_bytes(device: torch.device) -> int | None:
    """Total memory of ``device``: the GPU's own on CUDA, the system's (see above) on CPU and MPS."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    return system_memory_bytes()
