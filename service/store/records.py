"""What the job store holds: job statuses, job records and per-image queries.

Status lifecycle (every transition is one conditional UPDATE in the store, so two replicas never disagree):

```
queued ──claim──> running ──finish──> succeeded | failed | cancelled
  │                  │   └─cancel──> cancelling ──finish──> cancelled (or succeeded: it ended first)
  ├─cancel──> cancelled
  └─(pinned to a replica that died or stopped)──> interrupted
running / cancelling ──(lease expired, or the replica stopped)──> interrupted
```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal


class JobStatus(str, Enum):
    """Every status a job can have; the store writes ``.value``."""

    QUEUED = "queued"  # in the shared queue; no replica has claimed it yet
    RUNNING = "running"  # claimed: one replica holds its lease and runs it
    CANCELLING = "cancelling"  # running, cancel requested: the owner stops it between batches
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # its replica died or stopped; never retried (a job runs at most once)


FINAL_STATUSES: frozenset[str] = frozenset(
    s.value for s in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.INTERRUPTED)
)
ACTIVE_STATUSES: tuple[str, ...] = (
    JobStatus.QUEUED.value,
    JobStatus.RUNNING.value,
    JobStatus.CANCELLING.value,
)
RUNNING_STATUSES: tuple[str, ...] = (JobStatus.RUNNING.value, JobStatus.CANCELLING.value)
UNFINISHED_STATUSES = ACTIVE_STATUSES  # the name of the single-node store, kept for readers of old code


@dataclass
class JobRecord:
    """One validation job as stored. ``result`` excludes ``per_image`` (rows of their own, paged).

    ``model_sha256`` is the file digest of the checkpoint the job was submitted against: only a replica that
    has those exact bytes loaded claims it. ``owner`` is the replica that holds (or held) the job's lease;
    ``pinned_to`` names the only replica allowed to claim it (uploads: their bytes live in its memory).
    ``checkpoint`` (instead of a loaded model's name) is a file under the checkpoint root that the claiming
    replica loads; ``tags`` are the client's labels (run history); ``map50``/``map50_95`` copy the result's
    headline once it succeeded; ``callback_url`` is only written (with a notification), never read back.
    """

    id: str
    status: str
    model: str
    source_kind: str
    source: str
    params: dict[str, Any]
    created_at: float
    model_sha256: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    done: int = 0
    total: int = 0
    stage: str = ""
    error: dict[str, Any] | None = None
    owner: str | None = None
    pinned_to: str | None = None
    attempts: int = 0
    lease_expires_at: float | None = None
    tags: dict[str, str] = field(default_factory=dict)
    checkpoint: str | None = None
    map50: float | None = None
    map50_95: float | None = None
    callback_url: str | None = field(default=None, repr=False)
    result: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass(frozen=True)
class CancelOutcome:
    """What a cancel request found (``before``) and left (``after``)."""

    before: str
    after: str


ImageSort = Literal["order", "fp", "fn", "errors"]


@dataclass(frozen=True)
class ImageQuery:
    """One page of a job's per-image rows: sort key, filters, paging.

    ``order`` keeps the processing order (what ``result.per_image`` always had); ``fp``/``fn``/``errors``
    (fp + fn) put the worst images first. Denominations are mapped class ids (``true_denomination`` and
    ``predicted_denomination`` of a row, ``None`` when the image has no whole banknote);
    ``misclassified=True`` keeps rows where the two differ (a missed or a hallucinated banknote counts),
    ``False`` where they agree.
    """

    offset: int = 0
    limit: int = 100
    sort: ImageSort = "order"
    true_denomination: int | None = None
    predicted_denomination: int | None = None
    misclassified: bool | None = None


@dataclass(frozen=True)
class ImagePage:
    items: list[dict[str, Any]]
    total: int


NotificationState = Literal["pending", "delivered", "failed"]


@dataclass
class NotificationRecord:
    """A job's completion webhook: ``pending`` until delivered (2xx) or out of attempts (``failed``).

    ``owner``/``lease_expires_at`` name the replica delivering it right now; ``next_attempt_at`` (Unix
    seconds) is when it may be tried again after a failure."""

    job_id: str
    url: str
    state: str
    attempts: int
    next_attempt_at: float
    created_at: float
    owner: str | None = None
    lease_expires_at: float | None = None
    last_error: str | None = None
    last_status_code: int | None = None
    delivered_at: float | None = None
