"""Memory of another process from ``/proc/<pid>/status`` (Linux): current RSS and its peak since a reset.

Writing ``5`` to ``/proc/<pid>/clear_refs`` resets the peak (``VmHWM``) to the current RSS, so the peak
read after an attack is what that attack added, even in a server that peaked higher at start-up.
"""

from __future__ import annotations

import contextlib
from pathlib import Path


def _field_kb(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    raise AssertionError(f"/proc/{pid}/status has no {name}")


def rss_mb(pid: int) -> float:
    return _field_kb(pid, "VmRSS") / 1024


def peak_mb(pid: int) -> float:
    return _field_kb(pid, "VmHWM") / 1024


def reset_peak(pid: int) -> float:
    """Reset the peak to the current RSS (where the kernel allows it); returns the current RSS in MB."""
    with contextlib.suppress(OSError):  # an older kernel: the peak then includes earlier ones
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    return rss_mb(pid)


class PeakGrowth:
    """``with PeakGrowth(pid) as growth: ...``; then ``growth.mb`` is the peak RSS growth during the block."""

    def __init__(self, pid: int) -> None:
        self.pid, self.before, self.mb = pid, 0.0, 0.0

    def __enter__(self) -> PeakGrowth:
        self.before = reset_peak(self.pid)
        return self

    def __exit__(self, *exc: object) -> None:
        self.mb = max(0.0, peak_mb(self.pid) - self.before)
