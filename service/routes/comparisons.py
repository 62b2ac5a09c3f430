"""Comparisons: is the candidate validation really better than the baseline? (paired bootstrap over images)"""

from __future__ import annotations

from functools import partial
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from service.comparisons import ComparisonSlots, check_records, check_resamples, compare_jobs
from service.deps import StateDep
from service.schemas import ErrorResponse
from service.schemas_comparisons import ComparisonRequest, ComparisonResponse

router = APIRouter(prefix="/v1/comparisons", tags=["comparisons"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 409, 422, 429)
}


@router.post(
    "",
    response_model=ComparisonResponse,
    responses=_ERRORS,
    summary="Compare two succeeded validations of the same images: deltas with bootstrap intervals",
)
async def create_comparison(body: ComparisonRequest, state: StateDep, request: Request) -> dict[str, Any]:
    settings = state.settings
    check_resamples(body.resamples, settings.comparison_max_resamples)
    baseline = await run_in_threadpool(state.jobs.record, body.baseline, False)
    candidate = await run_in_threadpool(state.jobs.record, body.candidate, False)
    check_records(baseline, candidate)
    slots: ComparisonSlots = request.app.state.comparison_slots
    options = {"resamples": body.resamples, "seed": body.seed, "confidence": body.confidence}
    work = partial(compare_jobs, state.jobs.store, baseline, candidate, options, settings.comparison_threads)
    with slots.slot():  # the bootstrap runs on a worker thread: the event loop keeps answering
        return await anyio.to_thread.run_sync(work)
