"""Jobs this replica holds in memory: the ones it runs, and uploads it keeps until its worker runs them.

The store has the durable, shared copy of every job; this is the fresher, per-batch view of the jobs running
here (SSE and GET read it when the job is local) plus the things that cannot go through the store: the
cancel event the validation loop polls, the uploaded bytes, the "finished" event a ``?wait=true`` blocks on.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from service.registry import ModelEntry
from smartcash_core.validation.params import UploadedSample

StopReason = Literal["cancelled", "stopping", "lost"]


@dataclass
class Job:
    """A job's live state on this replica.

    ``since`` is when this replica took charge of it (submitted an upload it holds, or claimed it): the lease
    keeper only judges jobs it had before its last look at the store.
    """

    id: str
    model: str
    total: int = 0
    status: str = "queued"
    done: int = 0
    stage: str = ""
    version: int = 0
    samples: list[UploadedSample] | None = field(default=None, repr=False)
    running: bool = False
    entry: ModelEntry | None = field(default=None, repr=False)
    source_kind: str = "dataset"
    source: str = ""
    checkpoint: str | None = None  # a checkpoint-in-request job: loaded by the replica that runs it
    model_sha256: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    since: float = field(default_factory=time.monotonic)
    stop_reason: StopReason | None = None
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

    def stop(self, reason: StopReason) -> None:
        """Ask the validation loop to stop between batches; the first reason given is the one kept."""
        with self.lock:
            if self.stop_reason is None:
                self.stop_reason = reason
            if reason == "cancelled" and self.status == "running":
                self.status, self.version = "cancelling", self.version + 1
        self.cancel.set()

    def take(self) -> bool:
        """Claim the right to write the job's end (worker, cancel or lease keeper: exactly one wins)."""
        with self.lock:
            if self.closing:
                return False
            self.closing = True
            return True


class LiveJobs:
    """Thread-safe ``job id -> Job`` of this replica."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def add(self, job: Job) -> None:
        with self._lock:
            self._jobs[job.id] = job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def pop(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.pop(job_id, None)

    def values(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())
