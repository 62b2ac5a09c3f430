"""The job store interface of both backends (SQLite: embedded default; PostgreSQL: shared by replicas).

The store is the single source of truth for jobs: submission, the queue, the leases of running jobs, their
progress, cancel requests, results, per-image rows and artifacts. Replicas talk to each other only through
it. Every state change is one conditional statement (or one short transaction), so racing replicas and
threads leave exactly one winner; methods that can lose such a race say so in their return value.

Clocks: lease times are the database's clock on PostgreSQL (replicas' clocks may disagree), the host's on
SQLite (one host). ``*_at`` values are Unix seconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from service.store.records import CancelOutcome, ImagePage, ImageQuery, JobRecord, NotificationRecord


@runtime_checkable
class JobStore(Protocol):
    backend: str  # "sqlite" | "postgresql"
    shared: bool  # True: other replicas use this store too (start-up must not touch their jobs)
    lease_s: float  # how long a claimed job stays owned without a renewal

    def close(self) -> None: ...

    def schema_version(self) -> int:
        """The highest migration applied (migrations run when the store opens)."""
        ...

    # -- submit and the queue ---------------------------------------------------------------------------
    def create(self, record: JobRecord, max_queued: int) -> bool:
        """Insert a ``queued`` job unless ``max_queued`` jobs already wait (then ``False``, nothing written).

        A record with ``pinned_to`` set gets a lease owned by that replica, so the job is interrupted if the
        replica dies before running it. Its ``tags`` are written with it (filterable), and a ``callback_url``
        becomes a pending notification in the same transaction."""
        ...

    def queued_count(self) -> int: ...

    def claim(
        self, owner: str, model_digests: Sequence[str], checkpoints: bool = False
    ) -> JobRecord | None:
        """Atomically take the oldest queued job whose checkpoint digest is in ``model_digests`` (or, with
        ``checkpoints``, any job naming a checkpoint file, which the claimer loads itself) and which is not
        pinned to another replica: it becomes ``running``, owned by ``owner`` under a fresh lease.
        ``None`` when there is none. Two claimers never get the same job."""
        ...

    # -- while a job runs (owner only) -----------------------------------------------------------------
    def report_progress(self, job_id: str, owner: str, done: int, total: int, stage: str) -> str | None:
        """Write progress and renew the lease; returns the job's status (``cancelling``: stop it), or
        ``None`` when ``owner`` no longer holds the job (its lease expired: stop and discard the run)."""
        ...

    def renew_leases(self, owner: str) -> dict[str, str]:
        """Extend the leases of every active job ``owner`` holds; returns ``{job id: status}`` of those jobs
        (a job missing from it was finished, cancelled or interrupted by someone else)."""
        ...

    def finish(
        self,
        job_id: str,
        owner: str,
        status: str,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        artifacts: Mapping[str, bytes] | None = None,
    ) -> bool:
        """Store the final status with the result (its ``per_image`` rows go to their own table; its headline
        mAPs to columns of their own) or the error, and the job's artifacts, in one transaction. ``False``
        (nothing written) when ``owner`` no longer holds the job."""
        ...

    # -- recovery --------------------------------------------------------------------------------------
    def expire_leases(self) -> int:
        """Mark active jobs whose lease ran out ``interrupted``; returns how many."""
        ...

    def release(self, owner: str, message: str) -> int:
        """Mark every active job ``owner`` holds ``interrupted`` (a replica stopping); returns how many."""
        ...

    def interrupt_unfinished(self) -> int:
        """Mark every active job ``interrupted`` (start of an unshared store: a dead process left them)."""
        ...

    # -- any replica -----------------------------------------------------------------------------------
    def cancel(self, job_id: str) -> CancelOutcome | None:
        """Queued: ``cancelled`` at once. Running: ``cancelling`` (the owner stops between batches). Final:
        unchanged. ``None``: no such job."""
        ...

    def get(self, job_id: str, with_result: bool = True) -> JobRecord | None: ...

    def delete(self, job_id: str) -> str | None:
        """Delete a finished job with its per-image rows and artifacts; returns the status it had (an
        unfinished job is left as it is: the caller refuses), ``None`` when there is no such job."""
        ...

    def delete_finished(self, older_than_s: float | None, keep_newest: int | None) -> list[str]:
        """Retention: delete finished jobs that finished more than ``older_than_s`` seconds ago, and every
        finished job but the ``keep_newest`` most recently submitted ones (``None``: no such limit), with
        their rows and artifacts; returns their ids. Active jobs are never touched."""
        ...

    def list(
        self,
        offset: int,
        limit: int,
        status: str | None = None,
        tag_filter: Mapping[str, str] | None = None,
    ) -> tuple[list[JobRecord], int]:
        """Newest first; one page and the total count (with the same filters: status, and every tag given)."""
        ...

    def per_image_page(self, job_id: str, query: ImageQuery) -> ImagePage:
        """One page of a job's per-image rows (one indexed query) and how many rows match the filters."""
        ...

    def per_image_all(self, job_id: str) -> list[dict[str, Any]]:
        """Every per-image row of a job, in processing order."""
        ...

    def put_artifact(self, job_id: str, name: str, content: bytes) -> None: ...

    def get_artifact(self, job_id: str, name: str) -> bytes | None: ...

    # -- completion webhooks (any replica delivers) -----------------------------------------------------
    def claim_notification(self, owner: str, lease_s: float) -> NotificationRecord | None:
        """Take the pending notification due longest ago whose job is final and whose lease is free or ran
        out; ``owner`` holds it for ``lease_s`` seconds. Two claimers never get the same one at once."""
        ...

    def notification_attempted(
        self,
        job_id: str,
        owner: str,
        delivered: bool,
        status_code: int | None = None,
        error: str | None = None,
        retry_in_s: float | None = None,
    ) -> bool:
        """Record a delivery attempt and release the lease: delivered, due again in ``retry_in_s`` seconds,
        or ``failed`` for good (``retry_in_s`` ``None``). ``False`` when ``owner`` no longer holds it."""
        ...

    def release_notifications(self, owner: str | None) -> int:
        """Free the notification leases ``owner`` holds (all of them when ``None``)."""
        ...

    def notification(self, job_id: str) -> NotificationRecord | None: ...
