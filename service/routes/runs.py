"""Run history: every job tagged ``run=<name>`` with its epoch and headline metrics, and the best so far."""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from service.deps import JobsDep
from service.pipeline_schemas import TAG_VALUE_PATTERN, RunEntry, RunHistory
from service.schemas import ErrorResponse
from service.store import JobRecord
from service.store.sql import headline_numbers

router = APIRouter(prefix="/v1/runs", tags=["runs"])
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse} for code in (401, 422)}
Headline = tuple[float | None, float | None]


@router.get(
    "/{run}",
    response_model=RunHistory,
    responses=_ERRORS,
    summary="A run's jobs by epoch, with headline metrics and the best job (by map50_95)",
    description=(
        "Jobs tagged `run=<run>` (submit them with `tags: {'run': ..., 'epoch': ...}`), ordered by "
        "their `epoch` tag as a number; jobs without a numeric epoch follow in submission order. `best` is "
        "the succeeded job with the highest mAP50-95 (the earliest in that order on ties). A run nobody "
        "tagged is an empty history, not a 404."
    ),
)
def run_history(
    jobs: JobsDep,
    run: Annotated[str, Path(pattern=TAG_VALUE_PATTERN, description="the `run` tag's value")],
    limit: Annotated[int, Query(ge=1, le=5000, description="most jobs listed (the newest)")] = 1000,
) -> RunHistory:
    records, total = jobs.store.list(0, limit, tag_filter={"run": run})
    entries = [
        RunEntry.from_record(record, _headline(jobs, record)) for record in sorted(records, key=_epoch_order)
    ]
    return RunHistory(
        run=run, jobs=entries, total=total, truncated=total > len(records), best=_best(entries)
    )


def _headline(jobs: JobsDep, record: JobRecord) -> Headline:
    """The stored headline; a job finished before the columns existed has it only in its result."""
    if record.status != "succeeded" or (record.map50 is not None and record.map50_95 is not None):
        return record.map50, record.map50_95
    full = jobs.store.get(record.id, with_result=True)
    return headline_numbers(full.result if full is not None else None)


def _epoch_order(record: JobRecord) -> tuple[int, float, float]:
    epoch = _number(record.tags.get("epoch"))
    return (0, epoch, record.created_at) if epoch is not None else (1, 0.0, record.created_at)


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def _best(entries: list[RunEntry]) -> RunEntry | None:
    scored = [entry for entry in entries if entry.status == "succeeded" and entry.map50_95 is not None]
    return max(scored, key=lambda entry: entry.map50_95 or 0.0, default=None)  # max keeps the first of ties
