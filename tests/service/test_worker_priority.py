"""Validation threads run niced, so the event loop (health probes, polling) wins the CPU."""

from __future__ import annotations

import os
import threading

import pytest

from service.worker import DeviceWorker

pytestmark = pytest.mark.skipif(not hasattr(os, "getpriority"), reason="per-thread niceness is POSIX/Linux")


def _niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.parametrize("increment", [0, 7])
def test_worker_and_the_threads_it_starts_run_at_the_raised_niceness(increment: int) -> None:
    seen: dict[str, int] = {}
    done = threading.Event()

    def run_job(_job: object) -> None:
        seen["worker"] = _niceness()
        child = threading.Thread(target=lambda: seen.__setitem__("child", _niceness()))
        child.start()
        child.join()
        done.set()

    jobs = [object()]
    base = _niceness()
    worker = DeviceWorker(
        "cpu", claim=lambda _device: jobs.pop() if jobs else None, run_job=run_job, nice_increment=increment
    )
    assert done.wait(10)
    worker.stop(timeout=5)
    expected = min(19, base + increment)
    assert seen == {"worker": expected, "child": expected}
    assert _niceness() == base  # the caller's own priority is untouched
