"""HTTP errors of the service and the handlers that turn every error into one JSON body shape.

Every 4xx body is ``{"error": {"code", "message", "fix"}, "request_id"}``: ``message`` names the problem,
``fix`` says how to change the call. Library errors (``smartcash_core.errors``) map to status codes here,
so the library never knows about HTTP.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from smartcash_core.errors import (
    CheckpointError,
    CheckpointMetadataError,
    CheckpointTooLargeError,
    ClassTableError,
    DatasetError,
    DeviceError,
    InvalidParamsError,
    ModelConfigError,
    SmartCashError,
    UnsafeDatasetFile,
    UnsafePickleError,
)
from smartcash_core.validation.precision import UnsupportedPrecisionError

log = logging.getLogger("smartcash.service")
_MAX_ERRORS_SHOWN = 10  # validation errors listed in a 422 body (``error_count`` says how many there were)


class ServiceError(Exception):
    """An error with an HTTP status, a stable machine code and a hint on how to fix the call."""

    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, fix: str = "", headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.headers = headers or {}


class NotFound(ServiceError):
    status_code = 404
    code = "not_found"


class PathRejected(ServiceError):
    """A client path is absolute, climbs out with ``..`` or resolves (via a symlink) outside its root."""

    status_code = 400
    code = "path_rejected"


class UnsafeDatasetRejected(ServiceError):
    """A dataset file is refused unparsed: over its size cap, YAML aliases, nested too deep."""

    status_code = 400
    code = "unsafe_dataset_file"


class Conflict(ServiceError):
    status_code = 409
    code = "conflict"


class Unprocessable(ServiceError):
    status_code = 422
    code = "unprocessable"


class BadUpload(ServiceError):
    """The upload body cannot be used (malformed multipart, bad archive, no images)."""

    status_code = 400
    code = "bad_upload"


class UnsupportedMedia(ServiceError):
    status_code = 415
    code = "unsupported_media_type"


class PayloadTooLarge(ServiceError):
    status_code = 413
    code = "payload_too_large"


class QueueFull(ServiceError):
    status_code = 429
    code = "queue_full"


class TooManyStreams(ServiceError):
    status_code = 429
    code = "too_many_streams"


class RequestTimeout(ServiceError):
    """The request body did not arrive in time (a stalled or too slow client); the connection is closed."""

    status_code = 408
    code = "request_timeout"


class Unauthorized(ServiceError):
    status_code = 401
    code = "unauthorized"


class NotReady(ServiceError):
    status_code = 503
    code = "not_ready"


# Library error -> (status, code, fix). Most specific class first: the first isinstance match wins.
_LIBRARY_ERRORS: list[tuple[type[SmartCashError], int, str, str]] = [
    (
        UnsafePickleError,
        422,
        "unsafe_checkpoint",
        "the pickle asks for code or writes this loader refuses; re-export the weights from a trusted "
        "environment with `smartcash convert` (native format, nothing pickled)",
    ),
    (
        CheckpointMetadataError,
        422,
        "bad_checkpoint_metadata",
        "the named metadata field is missing, mistyped or outside YOLOv5's bounds (image size 32..4096 "
        "and a multiple of the stride, 1..1000 classes, depth/width multiples up to 2.0); re-save the "
        "checkpoint with save_checkpoint() or `smartcash convert`",
    ),
    (
        CheckpointTooLargeError,
        422,
        "checkpoint_too_large",
        "the checkpoint exceeds a safety cap named in the message (parameters, header, pickle or "
        "archive member sizes); use a smaller model or a checkpoint written by torch.save/save_checkpoint",
    ),
    (
        CheckpointError,
        422,
        "bad_checkpoint",
        "point `checkpoint` at a native .safetensors or YOLOv5 .pt file",
    ),
    (DeviceError, 422, "bad_device", "use auto, cpu, or a device listed in the message"),
    (
        UnsupportedPrecisionError,
        400,
        "unsupported_precision",
        "ask for a precision the model's device offers (fp32 everywhere; see the message)",
    ),
    (InvalidParamsError, 400, "invalid_params", "change the parameter named in the message"),
    (ClassTableError, 422, "bad_class_table", "fix the class table the checkpoint carries"),
    (ModelConfigError, 422, "bad_model_config", "use a YOLOv5 n/s/m/l/x model"),
    (
        UnsafeDatasetFile,
        400,
        "unsafe_dataset_file",
        "write data.yaml as plain YAML of a few KB: no aliases (*name), little nesting",
    ),
    (DatasetError, 422, "bad_dataset", "point `dataset` at a YOLO directory with images/ and labels/"),
]


def error_body(request: Request, code: str, message: str, fix: str = "", **extra: Any) -> dict[str, Any]:
    """The JSON body of every error response; server paths in it are made relative to their root."""
    redact = getattr(request.app.state, "redact_paths", None)
    if redact is not None:
        message, fix = redact(message), redact(fix)
    error: dict[str, Any] = {"code": code, "message": message, "fix": fix, **extra}
    return {"error": error, "request_id": getattr(request.state, "request_id", None)}


def library_error_status(exc: SmartCashError) -> tuple[int, str, str]:
    """``(status, code, fix)`` for a library error; unknown library errors are 422."""
    for error_type, status, code, fix in _LIBRARY_ERRORS:
        if isinstance(exc, error_type):
            return status, code, fix
    return 422, "library_error", ""


async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
    body = error_body(request, exc.code, exc.message, exc.fix, **getattr(exc, "details", {}))
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def _library_error(request: Request, exc: SmartCashError) -> JSONResponse:
    status, code, fix = library_error_status(exc)
    extra = {"field": exc.field} if isinstance(exc, CheckpointMetadataError) and exc.field else {}
    return JSONResponse(error_body(request, code, str(exc), fix, **extra), status_code=status)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    # A summary, never the input: a body of 200k unknown fields used to answer an 18 MB list of errors.
    problems = exc.errors()
    details = [_summarised(item) for item in problems[:_MAX_ERRORS_SHOWN]]
    where = "; ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in details[:5])
    more = f" and {len(problems) - 5} more" if len(problems) > 5 else ""
    body = error_body(
        request,
        "invalid_request",
        f"the request does not match the schema ({where}{more})",
        "see /docs for the expected fields and types",
        details=details,
        error_count=len(problems),
    )
    return JSONResponse(body, status_code=422)


def _summarised(item: Any) -> dict[str, Any]:
    """One validation error with its location and message cut short, and without the offending input."""
    loc = [part if isinstance(part, int) else _shortened(str(part), 64) for part in item.get("loc", ())]
    msg, kind = _shortened(str(item.get("msg", "")), 200), _shortened(str(item.get("type", "")), 64)
    return {"loc": loc[:8], "msg": msg, "type": kind}


def _shortened(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    body = error_body(request, code, str(exc.detail), "see /docs for the endpoints and their methods")
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def _client_disconnected(request: Request, exc: ClientDisconnect) -> Response:
    # The client went away mid-body (an aborted upload): nothing to answer and nothing went wrong here.
    # 499 (nginx's "client closed request") never reaches the client; it keeps these out of the 5xx count.
    log.info("client disconnected before its request body was complete")
    return Response(status_code=499)


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    body = error_body(
        request,
        "internal_error",
        f"internal error ({type(exc).__name__})",
        "retry; if it persists, report the request_id",
    )
    return JSONResponse(body, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers so every error leaves the service as the same JSON shape."""
    # Starlette types handlers as taking ``Exception``; each one is registered for its own class only.
    app.add_exception_handler(ServiceError, _service_error)  # type: ignore[arg-type]
    app.add_exception_handler(SmartCashError, _library_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(ClientDisconnect, _client_disconnected)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _internal_error)


class CheckpointChanged(ServiceError):
    """A queued job's checkpoint file no longer has the bytes (sha256) it was submitted with."""

    status_code = 409
    code = "checkpoint_changed"
