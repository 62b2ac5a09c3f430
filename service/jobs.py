"""Validation jobs: one worker thread per device, each fed by a bounded queue.

torch only ever runs on these worker threads, so the event loop keeps answering (health probes, SSE,
other requests) while a validation runs. Every state change is mirrored into the SQLite store so results
outlive the process; live progress is also kept in memory for SSE.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.errors import Conflict, NotFound, QueueFull
from service.registry import ModelEntry
from service.store import FINAL_STATUSES, JobRecord, JobStore
from service.telemetry import ServiceTelemetry
from smartcash_core.checkpoint import LoadedModel
from smartcash_core.errors import Cancelled, SmartCashError
from smartcash_core.validation.params import (
    ProgressCallback,
    ValidationParams,
    ValidationResult,
    ValidationSource,
)

log = logging.getLogger("smartcash.service.jobs")

ValidationRunner = Callable[
    [LoadedModel, ValidationSource, ValidationParams, ProgressCallback | None, threading.Event | None],
    ValidationResult,
]
_STOP = object()  # queue sentinel that ends a worker thread
_PROGRESS_WRITE_INTERVAL_S = 0.5  # progress reaches SQLite at most this often (memory is always current)


@dataclass
class Job:
    """A job's live state; the durable copy lives in the store."""

    id: str
    model: ModelEntry
    source: ValidationSource | None
    params: ValidationParams
    status: str = "queued"
    done: int = 0
    total: int = 0
    stage: str = ""
    version: int = 0
    cancel: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    last_write: float = 0.0
    closing: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "status": self.status,
                "done": self.done,
                "total": self.total,
                "stage": self.stage,
                "version": self.version,
            }

    def update(self, **changes: Any) -> None:
        with self.lock:
            for name, value in changes.items():
                setattr(self, name, value)
            self.version += 1


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
    """One thread that runs the jobs of one device, in order, from a bounded queue."""

    def __init__(
        self, device: str, max_queue: int, run_job: Callable[[Job], None], nice_increment: int = 0
    ) -> None:
        self.device = device
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._run_job = run_job
        self._nice_increment = nice_increment
        self.thread = threading.Thread(target=self._loop, name=f"smartcash-worker-{device}", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        lower_thread_priority(self._nice_increment)
        while True:
            item = self.queue.get()
            if item is _STOP:
                return
            try:
                self._run_job(item)
            except Exception:  # a bug in job bookkeeping must not kill the device's only worker
                log.exception("worker %s: job bookkeeping failed", self.device)

    def stop(self, timeout: float) -> None:
        # Put blocks only if the queue is full; bound it so shutdown never hangs.
        try:
            self.queue.put(_STOP, timeout=timeout)
        except queue.Full:
            log.warning(
                "worker %s: queue full at shutdown, thread left to exit with the process", self.device
            )
            return
        self.thread.join(timeout)


class JobManager:
    """Submits, runs, cancels and tracks validation jobs."""

    def __init__(
        self,
        store: JobStore,
        runner: ValidationRunner,
        max_queue: int,
        retry_after_s: int,
        telemetry: ServiceTelemetry,
        worker_nice: int = 0,
    ) -> None:
        self.store = store
        self._worker_nice = worker_nice
        self._runner = runner
        self._max_queue = max_queue
        self._retry_after_s = retry_after_s
        self._telemetry = telemetry
        self._workers: dict[str, DeviceWorker] = {}
        self._live: dict[str, Job] = {}
        self._lock = threading.Lock()
        # <state_dir>/plots/<job id>/: plot data saved at job time, PNGs rendered on first request
        self.plots_root = Path(store.path).parent / "plots"
        self._plots_enabled = importlib.util.find_spec("matplotlib") is not None

    # -- workers ---------------------------------------------------------------------------------------
    def ensure_worker(self, device: str) -> DeviceWorker:
        with self._lock:
            worker = self._workers.get(device)
            if worker is None:
                worker = DeviceWorker(device, self._max_queue, self._run, self._worker_nice)
                self._workers[device] = worker
            return worker

    def workers_alive(self) -> bool:
        with self._lock:
            workers = list(self._workers.values())
        return bool(workers) and all(worker.thread.is_alive() for worker in workers)

    def queue_depth(self) -> int:
        with self._lock:
            return sum(worker.queue.qsize() for worker in self._workers.values())

    def shutdown(self, timeout: float = 5.0) -> None:
        """Cancel what runs, stop the workers; unfinished jobs read ``interrupted`` after a restart."""
        with self._lock:
            live, workers = list(self._live.values()), list(self._workers.values())
        for job in live:
            job.cancel.set()
        for worker in workers:
            worker.stop(timeout)

    # -- submit / cancel / read -------------------------------------------------------------------------
    def submit(
        self,
        model: ModelEntry,
        source: ValidationSource,
        source_kind: str,
        source_label: str,
        params: ValidationParams,
        total: int = 0,
    ) -> Job:
        """Record and enqueue a job; ``QueueFull`` (429) when the device's queue has no room."""
        job = Job(id=uuid.uuid4().hex, model=model, source=source, params=params, total=total)
        record = JobRecord(
            id=job.id,
            status="queued",
            model=model.name,
            source_kind=source_kind,
            source=source_label,
            params=params.to_dict(),
            created_at=time.time(),
            total=total,
        )
        worker = self.ensure_worker(model.device)
        with self._lock:  # record + enqueue atomically, so a refused job leaves no trace
            self.store.create(record)
            try:
                worker.queue.put_nowait(job)
            except queue.Full:
                self.store.delete(job.id)
                raise QueueFull(
                    f"the {model.device} queue already holds {self._max_queue} waiting jobs",
                    f"retry after {self._retry_after_s} s, or raise SMARTCASH_MAX_QUEUE",
                    headers={"Retry-After": str(self._retry_after_s)},
                ) from None
            self._live[job.id] = job
        log.info("job queued", extra={"job_id": job.id, "model": model.name, "source": source_label})
        return job

    def live(self, job_id: str) -> Job | None:
        with self._lock:
            return self._live.get(job_id)

    def record(self, job_id: str, with_result: bool = True) -> JobRecord:
        record = self.store.get(job_id, with_result=with_result)
        if record is None:
            raise NotFound(f"no validation job {job_id!r}", "GET /v1/validations lists the known jobs")
        job = self.live(job_id)
        if job is not None:  # memory is fresher than the throttled progress in SQLite
            state = job.snapshot()
            if record.status not in FINAL_STATUSES and state["status"] not in FINAL_STATUSES:
                record.status, record.done, record.total, record.stage = (
                    state["status"],
                    state["done"],
                    state["total"],
                    state["stage"],
                )
        return record

    def cancel(self, job_id: str) -> JobRecord:
        """Queued jobs cancel at once; running ones stop between batches (status ``cancelling``)."""
        job = self.live(job_id)
        if job is None:
            record = self.record(job_id, with_result=False)
            raise Conflict(f"job {job_id} already finished ({record.status})", "only unfinished jobs cancel")
        with job.lock:
            job.cancel.set()
            status = job.status
            if status == "running" and not job.closing:
                job.status, job.version = "cancelling", job.version + 1
        if status == "queued":
            self._finish(job, "cancelled", error=_error("cancelled", "cancelled before it started"))
        elif status == "running":
            self.store.set_status(job.id, "cancelling")
        return self.record(job_id, with_result=False)

    # -- running (worker threads) -----------------------------------------------------------------------
    def _run(self, job: Job) -> None:
        with job.lock:  # queued -> running is atomic with cancel()'s check of the status
            if job.cancel.is_set() or job.closing:
                return  # cancelled while it waited in the queue
            job.status, job.version = "running", job.version + 1
        self.store.set_running(job.id)
        started = time.perf_counter()
        try:
            result = self._runner(
                job.model.loaded, job.source or [], job.params, self._progress_callback(job), job.cancel
            )
        except Cancelled:
            self._finish(
                job, "cancelled", error=_error("cancelled", "cancelled while running"), started=started
            )
        except SmartCashError as exc:
            self._finish(job, "failed", error=_error(type(exc).__name__, str(exc)), started=started)
        except Exception as exc:  # report the job as failed and keep serving
            log.exception("job %s crashed", job.id)
            self._finish(
                job, "failed", error=_error("internal_error", f"{type(exc).__name__}: {exc}"), started=started
            )
        else:
            self._save_plot_data(job.id, result)
            self._finish(job, "succeeded", result=result.to_dict(), started=started)

    def _progress_callback(self, job: Job) -> ProgressCallback:
        def on_progress(done: int, total: int, stage: str) -> None:
            job.update(done=done, total=total, stage=stage)
            now = time.monotonic()
            if now - job.last_write >= _PROGRESS_WRITE_INTERVAL_S or done >= total:
                job.last_write = now
                self.store.set_progress(job.id, done, total, stage)

        return on_progress

    def _finish(
        self,
        job: Job,
        status: str,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        started: float | None = None,
    ) -> None:
        with job.lock:  # exactly one caller (worker or cancel) writes the final state
            if job.closing:
                return
            job.closing = True
        self.store.finish(job.id, status, result=result, error=error)
        done = (job.total or job.done) if result is not None else job.done
        job.update(status=status, source=None, done=done)  # drop uploaded bytes as soon as the job ends
        with self._lock:
            self._live.pop(job.id, None)
        job.finished.set()  # after the store write, so a waiter always reads the final record
        seconds = None if started is None else time.perf_counter() - started
        self._telemetry.job_finished(status, seconds)
        log.info("job finished", extra={"job_id": job.id, "status": status, "seconds": seconds})

    # -- plots ------------------------------------------------------------------------------------------
    def _save_plot_data(self, job_id: str, result: ValidationResult) -> None:
        """Keep the job's fixed-size plot data (curves, matrices: tens of kB); rendering waits for a GET.

        Plots are an extra: without matplotlib, or when this fails, the job still succeeds (no plots).
        """
        if not self._plots_enabled or result.evaluator is None:
            return
        from smartcash_core.validation.plots import PLOT_DATA_FILE, plot_data, save_plot_data

        try:
            save_plot_data(plot_data(result), self.plots_root / job_id / PLOT_DATA_FILE)
        except (OSError, SmartCashError, ValueError, KeyError):
            log.exception("job %s: plot data not saved; the job has no plots", job_id)

    def plot_names(self, job_id: str) -> list[str]:
        """Names of the job's plots; ``NotFound`` when it has none (unfinished, failed, no matplotlib)."""
        from smartcash_core.validation.plots import PLOT_DATA_FILE, PLOT_NAMES

        if not (self.plots_root / job_id / PLOT_DATA_FILE).is_file():
            record = self.record(job_id, with_result=False)
            fix = (
                "plots exist for succeeded jobs once the service has matplotlib "
                "(pip install 'smartcash-validation[plots]')"
            )
            raise NotFound(f"job {job_id} has no plots ({record.status})", fix)
        return list(PLOT_NAMES)

    def plot_path(self, job_id: str, name: str) -> Path:
        """The PNG of plot ``name`` (rendered from the saved plot data on first request)."""
        from smartcash_core.validation.plots import PLOT_DATA_FILE, load_plot_data, render_plot

        names = self.plot_names(job_id)
        if name not in names:  # the fixed set: nothing from the URL reaches the filesystem unchecked
            raise NotFound(f"job {job_id} has no plot named {name!r}", f"known plots: {', '.join(names)}")
        path = self.plots_root / job_id / name
        if not path.is_file():
            render_plot(load_plot_data(self.plots_root / job_id / PLOT_DATA_FILE), name, path)
        return path


def _error(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}
