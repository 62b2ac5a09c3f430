"""Latency of ``/v2/health/live`` while something else keeps the server busy (shared by tests and bench).

A thread sends sequential probes over one keep-alive connection until the action returns; the caller
gets every probe's latency, so it can report p50/p99/max. Probes measure the event loop's availability:
``/live`` touches no model and no lock, so a slow probe means the loop itself was blocked.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx

T = TypeVar("T")


@dataclass(frozen=True)
class ProbeStats:
    """Latencies in milliseconds of the probes sent while the action ran."""

    samples_ms: list[float]

    @property
    def count(self) -> int:
        return len(self.samples_ms)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.samples_ms)
        return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]

    @property
    def max_ms(self) -> float:
        return max(self.samples_ms)

    def summary(self) -> str:
        return (f"{self.count} probes: p50 {statistics.median(self.samples_ms):.1f} ms, "
                f"p99 {self.percentile(99):.1f} ms, max {self.max_ms:.1f} ms")


def probe_live_during(
    base_url: str, action: Callable[[], T], interval_s: float = 0.002, path: str = "/v2/health/live"
) -> tuple[T, ProbeStats]:
    """Run ``action`` while probing ``path``; returns the action's result and the probes' latencies.

    Any status is accepted for ``/v2/health/ready`` (503 until a model is loaded); ``/live`` must be 200.
    """
    samples: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=base_url, timeout=30.0) as client:
            while not stop.is_set():
                started = time.perf_counter()
                response = client.get(path)
                samples.append((time.perf_counter() - started) * 1000)
                if path.endswith("/live") and response.status_code != 200:
                    raise AssertionError(f"/live answered {response.status_code}")
                time.sleep(interval_s)

    thread = threading.Thread(target=probe, name="live-probe", daemon=True)
    thread.start()
    time.sleep(0.05)  # the first probes open the connection before the action starts
    try:
        result = action()
    finally:
        stop.set()
        thread.join(60)
    if not samples:
        raise AssertionError("no /live probe completed while the action ran")
    return result, ProbeStats(samples)
