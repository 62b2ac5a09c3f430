"""Validation jobs of one replica: submit to the shared queue, read, follow, cancel; workers and leases.

Every job lives in the job store (SQLite for one replica, PostgreSQL shared by several), which is also the
queue: a submission is a ``queued`` row, and any replica's device worker with the job's checkpoint loaded
claims it (see ``service.execution``). Reads go to the store, so any replica answers for any job; for jobs
running here, memory has fresher progress than the throttled store copy. Uploads are held in the memory of
the replica that received them and pinned to it: only it can run them.

One lease keeper thread per replica renews the leases of the jobs it holds, stops the ones cancelled from
another replica, and marks other replicas' jobs ``interrupted`` once their lease has run out.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from service.artifacts import PlotArtifacts
from service.errors import Conflict, NotFound, QueueFull
from service.execution import DatasetResolver, JobExecutor, ValidationRunner
from service.live import Job, LiveJobs
from service.redact import no_redaction
from service.registry import ModelEntry, ModelRegistry
from service.store import FINAL_STATUSES, JobRecord, JobStore
from service.telemetry import ServiceTelemetry
from service.worker import DeviceWorker, LeaseKeeper
from smartcash_core.errors import SmartCashError
from smartcash_core.validation.params import UploadedSample, ValidationParams

__all__ = ["Job", "JobManager", "QueueConfig", "ValidationRunner"]
log = logging.getLogger("smartcash.service.jobs")
_CLAIM_HANDOFF_S = 0.5  # longest a submission waits for an idle local worker to look at the queue


@dataclass(frozen=True)
class QueueConfig:
    replica: str  # this replica's id: the owner name on its leases
    max_queue: int  # queued jobs in the store (all replicas) before 429
    retry_after_s: int
    claim_poll_s: float = 0.5
    worker_nice: int = 0


STOP_TIMEOUT_S = 30.0  # how long shutdown waits for a cancelled pass to reach its next batch


def _stop_passes_at_exit(manager_ref: weakref.ref[JobManager]) -> None:
    """The last line of defence when a process exits without its app's shutdown (a server thread that
    did not stop in time): cancel and wait, so no pass is running while the interpreter finalizes."""
    manager = manager_ref()
    if manager is not None:
        manager.stop_running_passes()


class JobManager:
    """Submits, tracks and cancels validation jobs; runs the device workers and the lease keeper."""

    def __init__(
        self,
        store: JobStore,
        registry: ModelRegistry,
        runner: ValidationRunner,
        resolve_dataset: DatasetResolver,
        plots: PlotArtifacts,
        telemetry: ServiceTelemetry,
        config: QueueConfig,
        redact_paths: Callable[[str], str] = no_redaction,
    ) -> None:
        self.store = store
        self.plots = plots
        self.config = config
        self.replica = config.replica
        self._telemetry = telemetry
        self._live = LiveJobs()
        self._executor = JobExecutor(
            config.replica, store, registry, runner, resolve_dataset, self._live, plots, telemetry,
            redact_paths=redact_paths,
        )
        self._workers: dict[str, DeviceWorker] = {}
        self._keeper = LeaseKeeper(self._keep_leases, interval_s=max(0.05, store.lease_s / 3))
        self._workers_lock = threading.Lock()
        self._started = False

    # -- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> None:
        """Recover what a previous process left, then keep leases. Unshared store: every active job in it
        belongs to a dead process. Shared store: only this replica id's (a restart with a fixed id);
        other replicas' jobs are left to their leases."""
        if self._started:  # an app's lifespan may be entered more than once (test clients do)
            return
        self._started = True
        atexit.register(_stop_passes_at_exit, weakref.ref(self))
        if self.store.shared:
            recovered = self.store.release(self.replica, "the replica restarted while this job was active")
        else:
            recovered = self.store.interrupt_unfinished()
        if recovered:
            log.warning("marked %d jobs of a previous run interrupted", recovered)
        self._keeper.start()
        try:  # checkpoint-in-request jobs submitted to any replica run on the default device's worker
            self.ensure_worker(self._executor.registry.default_device_name())
        except SmartCashError as exc:
            log.error("no worker for checkpoint jobs: the default device is unusable: %s", exc)

    @property
    def on_final(self) -> Callable[[], None]:
        """Called (no arguments) whenever a job reaches a final status on this replica."""
        return self._executor.on_final

    @on_final.setter
    def on_final(self, callback: Callable[[], None]) -> None:
        self._executor.on_final = callback

    def ensure_worker(self, device: str) -> DeviceWorker:
        with self._workers_lock:
            worker = self._workers.get(device)
            if worker is None:
                worker = DeviceWorker(
                    device,
                    self._executor.claim,
                    self._executor.run,
                    poll_s=self.config.claim_poll_s,
                    nice_increment=self.config.worker_nice,
                )
                self._workers = {**self._workers, device: worker}  # copy-on-write: readers need no lock
        worker.wake()
        return worker

    def workers_alive(self) -> bool:
        workers = list(self._workers.values())
        return bool(workers) and all(worker.thread.is_alive() for worker in workers)

    def queue_depth(self) -> float:
        """Jobs queued in the store (all replicas); NaN while the store does not answer."""
        try:
            return float(self.store.queued_count())
        except Exception:
            return float("nan")

    def shutdown(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop the jobs running here (they end ``interrupted``), the workers and the lease keeper; jobs
        this replica still holds (uploads not started yet) are marked ``interrupted`` too."""
        self.stop_running_passes(timeout)
        self._keeper.stop(timeout)
        try:
            self.store.release(self.replica, "the replica stopped while this job was active")
        except Exception as exc:  # the store is down: the leases run out and another replica sweeps
            log.warning("could not release this replica's jobs: %s", exc)

    def stop_running_passes(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Cancel the passes running here and wait (up to ``timeout`` a worker) until their workers leave
        them: a cancelled pass stops at its next batch. The process must not exit while a pass runs on a
        worker thread: torch's and OpenCV's native threads then abort the exit ("terminate called without
        an active exception", status 134)."""
        self._executor.stopping = True  # no new claims; a job claimed in this very moment stops at once
        for job in self._live.values():
            if job.running:
                job.stop("stopping")
        for worker in list(self._workers.values()):
            worker.stop(timeout)

    # -- submit ----------------------------------------------------------------------------------------
    def submit(
        self,
        model: ModelEntry,
        source_kind: str,
        source_label: str,
        params: ValidationParams,
        samples: list[UploadedSample] | None = None,
        tags: Mapping[str, str] | None = None,
        callback_url: str | None = None,
    ) -> str:
        """Queue a job; ``QueueFull`` (429) when the store already holds ``max_queue`` queued jobs.

        ``samples`` (an upload) stay in this replica's memory, and the job is pinned here. An ephemeral
        ``model`` (checkpoint in the request) makes the job name its checkpoint file, so any replica can run
        it. ``callback_url`` (already checked against the policy) becomes a pending notification."""
        total = len(samples) if samples is not None else 0
        record = JobRecord(
            id=uuid.uuid4().hex,
            status="queued",
            model=model.name,
            model_sha256=model.file_sha256,
            source_kind=source_kind,
            source=source_label,
            params=params.to_dict(),
            created_at=time.time(),
            total=total,
            pinned_to=self.replica if samples is not None else None,
            tags=dict(tags or {}),
            checkpoint=model.checkpoint if model.ephemeral else None,
            callback_url=callback_url,
        )
        # since=inf: the lease keeper must not judge the job before its row exists (set just below)
        held = Job(id=record.id, model=model.name, total=total, samples=samples, since=float("inf"))
        if samples is not None:  # held before the row exists: a worker may claim it the moment it does
            self._live.add(held)
        if not self.store.create(record, self.config.max_queue):
            self._live.pop(record.id)
            raise QueueFull(
                f"the queue already holds {self.config.max_queue} waiting jobs",
                f"retry after {self.config.retry_after_s} s, or raise SMARTCASH_MAX_QUEUE",
                headers={"Retry-After": str(self.config.retry_after_s)},
            )
        held.since = min(held.since, time.monotonic())
        own = self.ensure_worker(model.device)
        for worker in list(self._workers.values()):
            worker.wake()
        if not own.busy:
            own.wait_for_claim(_CLAIM_HANDOFF_S)
        log.info("job queued", extra={"job_id": record.id, "model": model.name, "source": source_label})
        return record.id

    # -- read ------------------------------------------------------------------------------------------
    def live(self, job_id: str) -> Job | None:
        return self._live.get(job_id)

    def record(self, job_id: str, with_result: bool = True) -> JobRecord:
        record = self.store.get(job_id, with_result=with_result)
        if record is None:
            raise NotFound(f"no validation job {job_id!r}", "GET /v1/validations lists the known jobs")
        return self.with_live_progress(record)

    def with_live_progress(self, record: JobRecord) -> JobRecord:
        """The record with this replica's in-memory progress when the job runs here (fresher than the
        throttled copy in the store). A record read before the job's claim (``started_at`` unset) stays
        as read: ``queued`` with no start time, never ``running`` without one."""
        job = self.live(record.id)
        if job is not None and job.running and record.started_at is not None:
            state = job.snapshot()
            if record.status not in FINAL_STATUSES and state["status"] not in FINAL_STATUSES:
                record.done, record.total, record.stage = state["done"], state["total"], state["stage"]
                if record.status != "cancelling":  # a cancel from another replica is news to memory
                    record.status = state["status"]
        return record

    def progress(self, job_id: str) -> tuple[dict[str, Any], bool, bool]:
        """``(state, finished, local)``: the job's status and progress, from memory when it runs here."""
        job = self.live(job_id)
        if job is not None and job.running and not job.finished.is_set():
            return job.snapshot(), False, True
        record = self.record(job_id, with_result=False)
        state = {"status": record.status, "done": record.done, "total": record.total, "stage": record.stage}
        return state, record.finished, False

    def wait(self, job_id: str, timeout_s: float, poll_s: float = 0.2) -> bool:
        """Block until the job is final (at most ``timeout_s``); ``True`` when it is."""
        job = self.live(job_id)
        if job is not None:
            return job.finished.wait(timeout_s)
        deadline = time.monotonic() + timeout_s
        while not self.record(job_id, with_result=False).finished:
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll_s)
        return True

    # -- cancel ----------------------------------------------------------------------------------------
    def cancel(self, job_id: str) -> JobRecord:
        """From any replica: queued jobs cancel at once; running ones end between batches (``cancelling``)."""
        outcome = self.store.cancel(job_id)
        if outcome is None:
            raise NotFound(f"no validation job {job_id!r}", "GET /v1/validations lists the known jobs")
        if outcome.before in FINAL_STATUSES:
            raise Conflict(f"job {job_id} already finished ({outcome.before})", "only unfinished jobs cancel")
        job = self.live(job_id)
        if outcome.after == "cancelled":
            self._telemetry.job_finished("cancelled", None)
            self.on_final()
            if job is not None:
                self._release_held(job, "cancelled")
        elif outcome.after == "cancelling" and job is not None and job.running:
            job.stop("cancelled")  # the owner is here: no need to wait for its next look at the store
        return self.record(job_id, with_result=False)

    def delete(self, job_id: str) -> None:
        """A finished job with its per-image rows, artifacts and this replica's plot cache; 409 while it
        is queued or runs (cancel it first), 404 when there is no such job."""
        status = self.store.delete(job_id)
        if status is None:
            raise NotFound(f"no validation job {job_id!r}", "GET /v1/validations lists the known jobs")
        if status not in FINAL_STATUSES:
            raise Conflict(
                f"job {job_id} is {status}: only finished jobs can be deleted",
                f"cancel it first (POST /v1/validations/{job_id}/cancel), then delete it once it is final",
            )
        self.plots.forget(job_id)
        log.info("job deleted", extra={"job_id": job_id})

    def _release_held(self, job: Job, status: str) -> None:
        """A job held here (an upload) ended without running here: drop its bytes, wake its waiters."""
        if job.running or not job.take():
            return
        job.update(status=status, samples=None)
        self._live.pop(job.id)
        job.finished.set()

    # -- leases (the keeper thread) --------------------------------------------------------------------
    def _keep_leases(self) -> None:
        looked_at = time.monotonic()
        held = self.store.renew_leases(self.replica)
        for job in self._live.values():
            if job.since >= looked_at:  # taken after the renewal read the store: judged next time
                continue
            status = held.get(job.id)
            if job.running and status is None:
                job.stop("lost")  # marked interrupted elsewhere: stop, and nothing it writes will land
            elif job.running and status == "cancelling":
                job.stop("cancelled")
            elif not job.running and status is None:  # cancelled from another replica before it ran
                record = self.store.get(job.id, with_result=False)
                self._release_held(job, record.status if record is not None else "interrupted")
        expired = self.store.expire_leases()
        if expired:
            log.warning("marked %d jobs interrupted: their replica stopped renewing the lease", expired)
            for _ in range(expired):
                self._telemetry.job_finished("interrupted", None)
            self.on_final()
