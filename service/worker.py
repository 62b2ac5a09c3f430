"""Threads of a replica: one worker per device that claims jobs from the shared queue, and one lease keeper.

A worker with nothing to do sleeps until a local submission wakes it, or ``claim_poll_s`` passes (jobs
submitted to other replicas only reach it that way). torch only ever runs on these worker threads, so the
event loop keeps answering (health probes, SSE, other requests) while a validation runs.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("smartcash.service.worker")


def lower_thread_priority(increment: int) -> None:
    """Raise the calling thread's niceness by ``increment`` (Linux: niceness is per thread).

    Threads started from this one inherit it: torch's intra-op pool and the decode workers. With the
    validation work niced, the event loop wins the CPU whenever it has a request, so health probes stay fast
    while a validation keeps every core busy; the pass itself loses almost nothing (the loop is mostly idle).
    """
    if increment <= 0 or not hasattr(os, "setpriority"):
        return
    thread_id = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, thread_id)
        os.setpriority(os.PRIO_PROCESS, thread_id, min(19, current + increment))
    except OSError as exc:  # not permitted or not supported: keep running at normal priority
        log.warning("could not lower the worker thread's priority: %s", exc)


class DeviceWorker:
    """One thread that runs one job at a time on one device: claim, run, repeat."""

    def __init__(
        self,
        device: str,
        claim: Callable[[str], Any | None],
        run_job: Callable[[Any], None],
        poll_s: float = 0.5,
        nice_increment: int = 0,
    ) -> None:
        self.device = device
        self._claim = claim
        self._run_job = run_job
        self._poll_s = poll_s
        self._nice_increment = nice_increment
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._claim_failing = False
        self.busy = False  # running a job (not looking for one)
        self._attempts = threading.Condition()
        self._started = self._finished = 0  # claim attempts begun / completed
        self.thread = threading.Thread(target=self._loop, name=f"smartcash-worker-{device}", daemon=True)
        self.thread.start()

    def wake(self) -> None:
        """Look for a job now (a job was submitted here, or a model was loaded)."""
        self._wake.set()

    def wait_for_claim(self, timeout_s: float) -> None:
        """After ``wake()``: wait until a claim attempt that began after it has completed (or timeout).

        A submission to a replica whose worker is idle returns once that worker has looked at the queue, so
        its job counts as running, not waiting, when the next submission checks the queue bound."""
        with self._attempts:
            goal = self._started + 1
            self._attempts.wait_for(lambda: self._finished >= goal or self._stopping.is_set(), timeout_s)

    def _loop(self) -> None:
        lower_thread_priority(self._nice_increment)
        while not self._stopping.is_set():
            self._wake.clear()  # before the claim: a wake-up during it is not lost
            with self._attempts:
                self._started += 1
                attempt = self._started
            job = self._next_job()
            with self._attempts:
                self._finished = attempt
                self._attempts.notify_all()
            if job is None:
                self._wake.wait(self._poll_s)
                continue
            self.busy = True
            try:
                self._run_job(job)
            except Exception:  # a bug in job bookkeeping must not kill the device's only worker
                log.exception("worker %s: job bookkeeping failed", self.device)
            finally:
                self.busy = False

    def _next_job(self) -> Any | None:
        try:
            job = self._claim(self.device)
        except Exception as exc:  # the store is down: keep polling, say so once per outage
            if not self._claim_failing:
                log.warning("worker %s: cannot claim jobs: %s", self.device, exc)
            self._claim_failing = True
            return None
        if self._claim_failing:
            log.info("worker %s: claiming jobs again", self.device)
            self._claim_failing = False
        return job

    def stop(self, timeout: float) -> None:
        """Stop after the current job (the caller has asked it to stop); wait at most ``timeout``."""
        self._stopping.set()
        self._wake.set()
        with self._attempts:
            self._attempts.notify_all()
        self.thread.join(timeout)
        if self.thread.is_alive():
            log.warning("worker %s still busy at shutdown, left to exit with the process", self.device)


class LeaseKeeper:
    """Calls ``tick`` every ``interval_s`` on its own thread (renew leases, reconcile, sweep expired ones)."""

    def __init__(self, tick: Callable[[], None], interval_s: float) -> None:
        self._tick = tick
        self._interval_s = interval_s
        self._stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="smartcash-lease-keeper", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _loop(self) -> None:
        while not self._stopping.wait(self._interval_s):
            try:
                self._tick()
            except Exception as exc:  # the store is down: the next tick tries again
                log.warning("lease keeper: %s", exc)

    def stop(self, timeout: float) -> None:
        self._stopping.set()
        if self.thread.is_alive():
            self.thread.join(timeout)
