"""Validation jobs: submit (dataset path or upload), list, read, follow (SSE), cancel, per-image results."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterable
from functools import partial
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import ValidationError

from service.artifacts import no_result_reason
from service.budget import check_job_memory
from service.deps import JobRecordDep, JobsDep, ServiceState, StateDep
from service.errors import Conflict, Unprocessable
from service.jobs import JobManager
from service.openapi_examples import error_responses
from service.pipeline_schemas import NotificationOut
from service.pipeline_submit import (
    checked_callback,
    model_for,
    parse_tag_filter,
    tags_from_field,
)
from service.schemas import (
    MODEL_NAME_PATTERN,
    ImageSort,
    JobStatusName,
    PerImagePage,
    PlotInfo,
    PlotList,
    ProgressEvent,
    ValidationJob,
    ValidationPage,
    ValidationParamsIn,
    ValidationRequest,
)
from service.sources import inspect_dataset
from service.store import ImageQuery
from service.streams import StreamSlotDep
from service.summaries import headline_metrics
from service.uploads import parse_multipart, samples_from_files
from smartcash_core.validation.imgsz import with_default_imgsz
from smartcash_core.validation.precision import check_precision_for_device

router = APIRouter(prefix="/v1/validations", tags=["validations"])
_SUBMIT_ERRORS = error_responses(400, 401, 404, 422, 429, examples={400: "dataset_split_missing"})
_UPLOAD_ERRORS = error_responses(400, 401, 404, 413, 415, 422, 429, examples={400: "bad_upload"})
_READ_ERRORS = error_responses(401, 404, 409, 422)
_SSE_POLL_S = 0.1  # a job running on this replica: its memory is read this often
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "model": {
                            "type": "string",
                            "description": "name of a loaded model (or send `checkpoint`)",
                            "example": "demo",
                        },
                        "checkpoint": {
                            "type": "string",
                            "description": "instead of `model`: a checkpoint file under the checkpoint root",
                        },
                        "tags": {
                            "type": "string",
                            "description": 'JSON object of string tags, e.g. {"run": "exp7", "epoch": "3"}',
                        },
                        "callback_url": {
                            "type": "string",
                            "description": "webhook called when the job ends (allowed hosts only)",
                        },
                        "params": {
                            "type": "string",
                            "description": 'JSON object of ValidationParamsIn, e.g. {"imgsz": 320}',
                            "example": '{"imgsz": 320}',
                        },
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "images plus same-stem .txt YOLO labels, or one .zip/.tar/.tar.gz",
                        },
                    },
                }
            }
        },
    }
}


def _accepted(job_id: str, jobs: JobManager, response_status: int = 202) -> JSONResponse:
    body = ValidationJob.from_record(jobs.record(job_id, with_result=response_status == 200))
    location = f"/v1/validations/{job_id}"
    return JSONResponse(
        body.model_dump(mode="json"), status_code=response_status, headers={"Location": location}
    )


async def _wait(jobs: JobManager, job_id: str, timeout_s: float) -> bool:
    """Wait for the job off the event loop; ``True`` when it finished in time."""
    return await anyio.to_thread.run_sync(jobs.wait, job_id, timeout_s, abandon_on_cancel=True)


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ValidationJob,
    responses={**_SUBMIT_ERRORS, 200: {"model": ValidationJob, "description": "finished result (wait=true)"}},
    summary="Validate a model on a dataset under the data root",
)
async def submit_dataset(
    body: ValidationRequest,
    state: StateDep,
    wait: Annotated[bool, Query(description="answer with the finished result (small datasets only)")] = False,
) -> JSONResponse:
    callback = await checked_callback(state, body.callback_url)
    # checked here for a 4xx now; the replica that claims the job resolves it again under its own data root
    _, images = await run_in_threadpool(inspect_dataset, state.settings.data_root, body.dataset, body.split)
    _check_wait(wait, images, state.settings.wait_max_images, "datasets")
    entry = await model_for(state, body.model, body.checkpoint)  # a checkpoint loads on a worker thread
    params = with_default_imgsz(body.params.to_params(device=entry.device, split=body.split), entry.loaded)
    check_precision_for_device(params, entry.device)  # 400 now, not a failed job later
    await run_in_threadpool(check_job_memory, state.settings, entry, params, images)
    submit = partial(state.jobs.submit, tags=body.tags, callback_url=callback)
    job_id = await run_in_threadpool(submit, entry, "dataset", body.dataset, params)
    if wait and await _wait(state.jobs, job_id, state.settings.wait_timeout_s):
        return await run_in_threadpool(_accepted, job_id, state.jobs, 200)
    return await run_in_threadpool(_accepted, job_id, state.jobs)


def _check_wait(wait: bool, images: int, wait_max: int, what: str) -> None:
    if wait and images > wait_max:
        raise Unprocessable(
            f"wait=true is for {what} of at most {wait_max} images, got {images}",
            "drop wait=true and follow the job's events, or send a smaller batch",
        )


@router.post(
    "/upload",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ValidationJob,
    responses={**_UPLOAD_ERRORS, 200: {"model": ValidationJob, "description": "finished result (wait=true)"}},
    openapi_extra=_UPLOAD_BODY,
    summary="Validate a model on uploaded images + labels (or one archive)",
)
async def submit_upload(
    request: Request,
    state: StateDep,
    wait: Annotated[bool, Query(description="answer with the finished result (small uploads only)")] = False,
) -> JSONResponse:
    with state.upload_slots.slot():  # before the body is read: its bytes are what the slot bounds
        job_id = await _submit_upload_body(request, state, wait)
    if wait and await _wait(state.jobs, job_id, state.settings.wait_timeout_s):
        return await run_in_threadpool(_accepted, job_id, state.jobs, 200)
    return await run_in_threadpool(_accepted, job_id, state.jobs)


async def _submit_upload_body(request: Request, state: ServiceState, wait: bool) -> str:
    parsed = await parse_multipart(request, state.upload_limits)
    model_name, checkpoint = parsed.fields.get("model"), parsed.fields.get("checkpoint")
    if model_name is not None and checkpoint is not None:
        raise Unprocessable("form fields 'model' and 'checkpoint' are both set", "send one of them")
    if checkpoint is None:
        model_name = _check_model_field(model_name or "")
    params = _params_from_field(parsed.fields.get("params"))
    tags = tags_from_field(parsed.fields.get("tags"))
    callback = await checked_callback(state, parsed.fields.get("callback_url"))
    samples = await run_in_threadpool(samples_from_files, parsed.files, state.upload_limits)
    _check_wait(wait, len(samples), state.settings.wait_max_images, "uploads")
    entry = await model_for(state, model_name, checkpoint)
    label = f"upload ({len(samples)} images)"
    chosen = with_default_imgsz(params.to_params(entry.device), entry.loaded)
    check_precision_for_device(chosen, entry.device)  # 400 now, not a failed job later
    await run_in_threadpool(check_job_memory, state.settings, entry, chosen, len(samples))
    submit = partial(state.jobs.submit, tags=tags, callback_url=callback)
    return await run_in_threadpool(submit, entry, "upload", label, chosen, samples)


def _check_model_field(value: str) -> str:
    if not re.fullmatch(MODEL_NAME_PATTERN, value or ""):
        raise Unprocessable(
            f"form field 'model' is missing or invalid ({value!r})",
            "add -F model=<loaded name> or -F checkpoint=<file under the checkpoint root> (not both)",
        )
    return value


def _params_from_field(raw: str | None) -> ValidationParamsIn:
    if raw is None or not raw.strip():
        return ValidationParamsIn()
    try:
        return ValidationParamsIn.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'params'}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise Unprocessable(
            f"form field 'params' is not valid ({problems})", 'send a JSON object such as {"imgsz": 320}'
        ) from exc


@router.get("", response_model=ValidationPage, responses=_READ_ERRORS, summary="Jobs, newest first (paged)")
def list_validations(
    jobs: JobsDep,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    status_filter: Annotated[JobStatusName | None, Query(alias="status")] = None,
    tag: Annotated[
        list[str] | None,
        Query(
            max_length=16,
            description="`key:value`; repeat for several tags (a job must carry all of them)",
            examples=["run:exp7"],
        ),
    ] = None,
) -> ValidationPage:
    tag_filter = parse_tag_filter(tag or [])
    if tag_filter is None:  # the same key asked with two values: no job carries both
        return ValidationPage(items=[], total=0, offset=offset, limit=limit)
    records, total = jobs.store.list(offset, limit, status_filter, tag_filter)
    items = [ValidationJob.from_record(jobs.with_live_progress(record)) for record in records]
    return ValidationPage(items=items, total=total, offset=offset, limit=limit)


@router.get(
    "/{job_id}", response_model=ValidationJob, responses=_READ_ERRORS, summary="Status, progress, result"
)
def get_validation(
    record: JobRecordDep,
    jobs: JobsDep,
    include_per_image: Annotated[bool, Query(description="also embed result.per_image")] = False,
) -> ValidationJob:
    job = ValidationJob.from_record(jobs.record(record.id))
    if include_per_image and job.result is not None:
        job.result["per_image"] = jobs.store.per_image_all(record.id)
    notification = jobs.store.notification(record.id)
    if notification is not None:
        job.notification = NotificationOut.from_record(notification)
    return job


@router.post(
    "/{job_id}/cancel",
    response_model=ValidationJob,
    responses=_READ_ERRORS,
    summary="Cancel: queued jobs stop at once, running ones between batches",
)
def cancel_validation(record: JobRecordDep, jobs: JobsDep) -> ValidationJob:
    return ValidationJob.from_record(jobs.cancel(record.id), include_result=False)


@router.delete(
    "/{job_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_READ_ERRORS,
    summary="Delete a finished job with its per-image results and plots (409 while it is queued or runs)",
)
def delete_validation(record: JobRecordDep, jobs: JobsDep) -> Response:
    jobs.delete(record.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{job_id}/images",
    response_model=PerImagePage,
    responses=_READ_ERRORS,
    summary="Per-image results of a finished job (paged)",
)
def per_image_results(
    record: JobRecordDep,
    jobs: JobsDep,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    sort: Annotated[
        ImageSort,
        Query(description="order: processing order; fp, fn, errors (fp + fn): worst images first"),
    ] = "order",
    true_denomination: Annotated[
        int | None, Query(ge=0, le=255, description="mapped class id of the image's true banknote")
    ] = None,
    predicted_denomination: Annotated[
        int | None, Query(ge=0, le=255, description="mapped class id of the most confident predicted note")
    ] = None,
    misclassified: Annotated[
        bool | None, Query(description="true: the predicted denomination differs from the true one")
    ] = None,
) -> PerImagePage:
    if record.status != "succeeded":
        message, fix = no_result_reason(record.id, record.status, record.error)
        raise Conflict(message, fix)
    query = ImageQuery(offset, limit, sort, true_denomination, predicted_denomination, misclassified)
    page = jobs.store.per_image_page(record.id, query)
    return PerImagePage(items=page.items, total=page.total, offset=offset, limit=limit, sort=sort)


@router.get(
    "/{job_id}/plots",
    response_model=PlotList,
    responses=_READ_ERRORS,
    summary="PNG plots of a succeeded job (404 while it runs, when it failed, or without matplotlib)",
)
def list_plots(record: JobRecordDep, jobs: JobsDep) -> PlotList:
    names = jobs.plots.names(record.id, record.status)
    return PlotList(
        items=[PlotInfo(name=name, url=f"/v1/validations/{record.id}/plots/{name}") for name in names]
    )


@router.get(
    "/{job_id}/plots/{name}",
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}}, "description": "the PNG"}, **_READ_ERRORS},
    summary="One plot as image/png (rendered on first request)",
)
def get_plot(
    record: JobRecordDep,
    jobs: JobsDep,
    name: Annotated[str, PathParam(max_length=64, description="a name from GET .../plots")],
) -> FileResponse:
    # a sync route: FastAPI runs it on a worker thread, so rendering never blocks the event loop
    return FileResponse(jobs.plots.path(record.id, name, record.status), media_type="image/png")


@router.get(
    "/{job_id}/events",
    response_class=EventSourceResponse,
    responses=error_responses(401, 404, 409, 422, 429, examples={429: "too_many_streams"}),
    summary="Server-Sent Events: `progress` while it runs, then one `status` with the final state",
    description=(
        "Each event has an `id` (`<done>.<phase>` for progress, `final` for the last one). A client that "
        "reconnects with `Last-Event-ID` gets only newer progress, then the final event (always sent). The "
        "final `status` event of a succeeded job carries `metrics`: map50, map50_95 and per_class_ap50."
    ),
)
async def validation_events(
    record: JobRecordDep,
    jobs: JobsDep,
    state: StateDep,
    _slot: StreamSlotDep,
    last_event_id: Annotated[str | None, Header(max_length=64)] = None,
) -> AsyncIterable[ServerSentEvent]:
    # The job may run on this replica (memory, every batch) or another one (its store row, throttled).
    seen = _position_of(last_event_id)
    last: tuple[Any, ...] | None = None
    while True:
        progress, finished, local = await run_in_threadpool(jobs.progress, record.id)
        if finished:
            break
        current = (progress["status"], progress["done"], progress["total"], progress["stage"])
        position = _position(progress)
        if current != last and (seen is None or position > seen):
            last = current
            yield _event("progress", record.id, progress, event_id=f"{position[0]}.{position[1]}")
        await asyncio.sleep(_SSE_POLL_S if local else state.settings.sse_poll_s)
    final = await run_in_threadpool(jobs.record, record.id, True)
    state_ = {"status": final.status, "done": final.done, "total": final.total, "stage": final.stage}
    metrics = headline_metrics(final.result) if final.status == "succeeded" else None
    yield _event("status", record.id, state_, error=final.error, metrics=metrics, event_id="final")


# the phase of a progress event id: later phases of the same image count are newer events
_PHASES = {"queued": 0, "running": 1, "cancelling": 2}


def _position(progress: dict[str, Any]) -> tuple[int, int]:
    return int(progress["done"]), _PHASES.get(str(progress["status"]), 0)


def _position_of(event_id: str | None) -> tuple[int, int] | None:
    """The position a ``Last-Event-ID`` names; ``None`` (send everything) when absent or not ours."""
    match = re.fullmatch(r"(\d{1,12})\.(\d)", (event_id or "").strip())
    return None if match is None else (int(match.group(1)), int(match.group(2)))


def _event(
    kind: str,
    job_id: str,
    state: dict[str, Any],
    error: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    event_id: str | None = None,
) -> ServerSentEvent:
    data = ProgressEvent(
        id=job_id, status=state["status"], done=state["done"], total=state["total"], stage=state["stage"]
    ).model_dump(exclude_none=True)
    if metrics is not None:
        data["metrics"] = metrics
    if error is not None:
        data["error"] = error
    return ServerSentEvent(event=kind, data=data, id=event_id)
