"""Running claimed jobs: claim from the shared queue, resolve the source here, validate, write the end once.

A replica only claims jobs whose checkpoint (file sha256) it has loaded on the worker's device, so a job
never runs with other weights than the ones it was submitted against, even when replicas bind the same
model name to different files. Checkpoint-in-request jobs name their file instead: the worker of the
replica's default device claims them and loads the file (or reuses a loaded model of the same sha256)
before the pass; a file whose bytes changed since the submit fails the job (``checkpoint_changed``).

The owner writes progress (which renews the lease and reports a cancel request from any replica) and the
final state, all conditional on still holding the job: once another replica has marked it ``interrupted``
(lease expired), nothing this one writes lands.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.artifacts import PlotArtifacts
from service.comparisons import state_artifact
from service.dataset_errors import job_error_code
from service.errors import ServiceError
from service.live import Job, LiveJobs
from service.redact import no_redaction, redact_reports
from service.registry import ModelEntry, ModelRegistry
from service.store import JobRecord, JobStore, StoreUnavailable
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
DatasetResolver = Callable[[str, str], Path]  # (relative dataset, split) -> path under the data root
PROGRESS_WRITE_INTERVAL_S = 0.5  # progress reaches the store at most this often (memory is always current)
_FINISH_ATTEMPTS = 3  # a store blip at the very end must not lose a finished result


@dataclass(frozen=True)
class Outcome:
    status: str
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    artifacts: dict[str, bytes] | None = None


def error_body(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


class JobExecutor:
    def __init__(
        self,
        replica: str,
        store: JobStore,
        registry: ModelRegistry,
        runner: ValidationRunner,
        resolve_dataset: DatasetResolver,
        live: LiveJobs,
        plots: PlotArtifacts,
        telemetry: ServiceTelemetry,
        redact_paths: Callable[[str], str] = no_redaction,
    ) -> None:
        self.replica = replica
        self._redact = redact_paths  # job errors name paths relative to their root
        self.store = store
        self.registry = registry
        self._runner = runner
        self._resolve_dataset = resolve_dataset
        self.live = live
        self.plots = plots
        self._telemetry = telemetry
        self.stopping = False  # the replica shuts down: claim nothing more
        self.on_final: Callable[[], None] = lambda: None  # a job ended here (wakes the webhook thread)

    # -- claim ---------------------------------------------------------------------------------------
    def claim(self, device: str) -> Job | None:
        if self.stopping:
            return None
        digests = sorted({entry.file_sha256 for entry in self.registry.entries() if entry.device == device})
        record = self.store.claim(self.replica, digests, checkpoints=device == self._checkpoint_device())
        if record is None:
            return None
        job = self.live.get(record.id) or Job(id=record.id, model=record.model)  # a held upload, or new
        # a checkpoint job finds (or loads) its model in run(): on this worker thread, with errors reported
        entries = self.registry.entries()
        entry = None if record.checkpoint else _entry_for(entries, record.model_sha256, device)
        job.update(
            checkpoint=record.checkpoint,
            model_sha256=record.model_sha256,
            status="running",
            running=True,
            total=record.total,
            since=time.monotonic(),
            entry=entry,
            source_kind=record.source_kind,
            source=record.source,
            params=_params_for(record, device),
        )
        self.live.add(job)
        log.info("job claimed", extra={"job_id": job.id, "model": record.model, "device": device})
        return job

    def _checkpoint_device(self) -> str | None:
        try:
            return self.registry.default_device_name()
        except SmartCashError:  # the configured default device is absent: no checkpoint jobs here
            return None

    # -- run -----------------------------------------------------------------------------------------
    def run(self, job: Job) -> None:
        if self.stopping:
            job.stop("stopping")  # claimed while the replica began to stop: end it before it starts
        started = time.perf_counter()
        try:
            model, source, params = self._inputs(job)
            result = self._runner(model, source, params, self._progress_callback(job), job.cancel)
        except Cancelled:
            outcome = self._stopped_outcome(job)
        except (ServiceError, SmartCashError) as exc:
            code = exc.code if isinstance(exc, ServiceError) else job_error_code(exc)
            outcome = Outcome("failed", error=error_body(code, self._redact(_message(exc))))
        except Exception as exc:  # report the job as failed and keep serving
            outcome = self._crash_outcome(job, exc)
        else:
            summary = redact_reports(result.to_dict(), self._redact)
            artifacts = {**self.plots.collect(job.id, result), **state_artifact(job, result)}
            outcome = Outcome("succeeded", summary, artifacts=artifacts)
        self.finish(job, outcome, started)

    def _inputs(self, job: Job) -> tuple[LoadedModel, ValidationSource, ValidationParams]:
        if job.entry is None and job.checkpoint is not None:
            job.update(stage="loading", entry=self.registry.for_checkpoint(job.checkpoint, job.model_sha256))
        if job.entry is None:  # unloaded between the claim and now
            raise ServiceError(f"model {job.model!r} was unloaded before the job started", "load it again")
        if job.samples is not None:
            return job.entry.loaded, job.samples, ValidationParams(**job.params)
        if job.source_kind == "upload":  # pinned here by an earlier process with the same replica id
            raise ServiceError("the uploaded files were lost: the replica restarted", "upload them again")
        split = str(job.params.get("split", "val"))
        return job.entry.loaded, self._resolve_dataset(job.source, split), ValidationParams(**job.params)

    def _crash_outcome(self, job: Job, exc: Exception) -> Outcome:
        if self.stopping:  # the process exits under the job (its thread pools refuse work): not a bug
            job.stop("stopping")
            return self._stopped_outcome(job)
        log.exception("job %s crashed", job.id)
        return Outcome("failed", error=error_body("internal_error", f"{type(exc).__name__}: {exc}"))

    @staticmethod
    def _stopped_outcome(job: Job) -> Outcome:
        reason = job.stop_reason
        if reason == "cancelled" or job.snapshot()["status"] == "cancelling":
            return Outcome("cancelled", error=error_body("cancelled", "cancelled while running"))
        message = "the replica running this job stopped" if reason == "stopping" else "the job lost its lease"
        return Outcome("interrupted", error=error_body("interrupted", message))

    def _progress_callback(self, job: Job) -> ProgressCallback:
        def on_progress(done: int, total: int, stage: str) -> None:
            job.update(done=done, total=total, stage=stage)
            now = time.monotonic()
            if now - job.last_write < PROGRESS_WRITE_INTERVAL_S and done < total:
                return
            job.last_write = now
            try:
                status = self.store.report_progress(job.id, self.replica, done, total, stage)
            except StoreUnavailable as exc:  # keep validating; the lease keeper retries the renewal
                log.warning("job %s: progress not stored: %s", job.id, exc)
                return
            if status is None:
                job.stop("lost")
            elif status == "cancelling":
                job.stop("cancelled")

        return on_progress

    # -- the end -------------------------------------------------------------------------------------
    def finish(self, job: Job, outcome: Outcome, started: float | None = None) -> None:
        """Write the job's end once (if this replica still holds it), then release it here."""
        if not job.take():
            return
        written = self._write_final(job, outcome)
        status = outcome.status
        if not written:
            record = self.store.get(job.id, with_result=False)
            status = record.status if record is not None else "interrupted"
            log.warning(
                "job %s: not written (%s), the store says %s",
                job.id,
                outcome.status,
                status,
                extra={"job_id": job.id},
            )
        done = (job.total or job.done) if outcome.result is not None and written else job.done
        job.update(status=status, samples=None, entry=None, done=done)  # drop uploaded bytes at once
        self.live.pop(job.id)
        job.finished.set()  # after the store write, so a waiter always reads the final record
        self.on_final()
        seconds = None if started is None else time.perf_counter() - started
        if written:
            self._telemetry.job_finished(status, seconds)
        log.info("job finished", extra={"job_id": job.id, "status": status, "seconds": seconds})

    def _write_final(self, job: Job, outcome: Outcome) -> bool:
        for attempt in range(1, _FINISH_ATTEMPTS + 1):
            try:
                return self.store.finish(
                    job.id, self.replica, outcome.status, outcome.result, outcome.error, outcome.artifacts
                )
            except StoreUnavailable as exc:
                log.warning("job %s: final state not stored (attempt %d): %s", job.id, attempt, exc)
                time.sleep(attempt)
        return False


def _entry_for(entries: list[ModelEntry], digest: str, device: str) -> ModelEntry | None:
    return next((e for e in entries if e.file_sha256 == digest and e.device == device), None)


def _params_for(record: JobRecord, device: str) -> dict[str, Any]:
    """The stored parameters (fields this release knows) on the device of the model that will run them."""
    known = {item.name for item in dataclasses.fields(ValidationParams)}
    params = {name: value for name, value in record.params.items() if name in known}
    return {**params, "device": device}


def _message(exc: Exception) -> str:
    return exc.message if isinstance(exc, ServiceError) else str(exc)
