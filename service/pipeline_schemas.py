"""Wire schemas of the pipeline features: job tags, run history, completion-notification state.

Separate from ``service.schemas`` (which imports the tag type from here) to keep that module small.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from service.store import JobRecord, NotificationRecord

TAG_KEY_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
TAG_VALUE_PATTERN = r"^[^\x00-\x1f\x7f]{1,256}$"  # printable: no control characters
MAX_TAGS = 16
TagKey = Annotated[str, StringConstraints(pattern=TAG_KEY_PATTERN)]
TagValue = Annotated[str, StringConstraints(pattern=TAG_VALUE_PATTERN)]
Tags = Annotated[
    dict[TagKey, TagValue],
    Field(
        max_length=MAX_TAGS,
        description=f"labels of the job (at most {MAX_TAGS}; keys [A-Za-z0-9_.-]{{1,64}}, values 1-256 "
        "printable characters); `run` and `epoch` drive GET /v1/runs/{run}",
        examples=[{"run": "exp7", "epoch": "12"}],
    ),
]


class Headline(BaseModel):
    """The job's headline metrics (mapped view), ``null`` until it succeeded."""

    map50: float | None = None
    map50_95: float | None = None


class NotificationOut(BaseModel):
    """Delivery state of the job's completion webhook."""

    url: str
    state: Literal["pending", "delivered", "failed"] = Field(
        description="pending: the job is not final yet, or the next attempt is due at next_attempt_at"
    )
    attempts: int
    next_attempt_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    delivered_at: datetime | None = None

    @classmethod
    def from_record(cls, record: NotificationRecord) -> NotificationOut:
        return cls(
            url=record.url,
            state=record.state,  # type: ignore[arg-type]
            attempts=record.attempts,
            next_attempt_at=_time(record.next_attempt_at) if record.state == "pending" else None,
            last_status_code=record.last_status_code,
            last_error=record.last_error,
            delivered_at=_time(record.delivered_at),
        )


class RunEntry(BaseModel):
    """One job of a run: its epoch tag and headline metrics."""

    id: str
    epoch: str | None = Field(description="the job's `epoch` tag, if any")
    status: str
    map50: float | None = None
    map50_95: float | None = None
    model: str | None = None
    checkpoint: str | None = None
    tags: dict[str, str]
    created_at: datetime
    link: str

    @classmethod
    def from_record(cls, record: JobRecord, headline: tuple[float | None, float | None]) -> RunEntry:
        return cls(
            id=record.id,
            epoch=record.tags.get("epoch"),
            status=record.status,
            map50=headline[0],
            map50_95=headline[1],
            model=record.model or None,
            checkpoint=record.checkpoint,
            tags=record.tags,
            created_at=_time(record.created_at) or datetime.now(timezone.utc),
            link=f"/v1/validations/{record.id}",
        )


class RunHistory(BaseModel):
    """The jobs tagged ``run=<run>``, ordered by their ``epoch`` tag numerically (jobs without a numeric
    epoch follow, in submission order), and the best succeeded job by mAP50-95."""

    run: str
    jobs: list[RunEntry]
    total: int = Field(description="jobs tagged with this run (jobs lists at most `limit` of them)")
    truncated: bool = Field(description="true when the run has more jobs than `limit`: the newest are listed")
    best: RunEntry | None = Field(description="the succeeded job with the highest map50_95 (first on ties)")
    best_by: Literal["map50_95"] = "map50_95"


def _time(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, tz=timezone.utc)
