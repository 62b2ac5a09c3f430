"""Errors the client raises. Server errors carry the service's ``code``, ``message`` and ``fix``."""

from __future__ import annotations

from typing import Any


class SmartCashClientError(Exception):
    """Base of every error this package raises."""


class TransportError(SmartCashClientError):
    """The service could not be reached (connection refused, timeout, broken stream), after retries."""


class ApiError(SmartCashClientError):
    """The service answered with an error body ``{"error": {"code", "message", "fix"}}``."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        fix: str = "",
        request_id: str | None = None,
        body: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status_code} {code}: {message}" + (f" (fix: {fix})" if fix else ""))
        self.status_code = status_code
        self.code = code
        self.message = message
        self.fix = fix
        self.request_id = request_id
        self.body = body
        self.retry_after = retry_after


class BadRequest(ApiError):
    """400: a path outside its root, a refused callback_url, a bad upload."""


class Unauthorized(ApiError):
    """401: the API key is missing or wrong."""


class NotFound(ApiError):
    """404: no such job, model, checkpoint or dataset."""


class Conflict(ApiError):
    """409: e.g. a model name bound to other bytes, or cancelling a finished job."""


class Unprocessable(ApiError):
    """422: the request does not match the schema, or a checkpoint/dataset cannot be used."""


class QueueFull(ApiError):
    """429: the queue stayed full through every retry (``retry_after``: the server's last hint)."""


class ServerError(ApiError):
    """5xx: the service (or its job store) failed; retrying later may help."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    404: NotFound,
    409: Conflict,
    422: Unprocessable,
    429: QueueFull,
}


def error_class(status_code: int) -> type[ApiError]:
    if status_code >= 500:
        return ServerError
    return _BY_STATUS.get(status_code, ApiError)


class JobFailed(SmartCashClientError):
    """A job ended without a result (``failed``, ``cancelled`` or ``interrupted``)."""

    def __init__(self, job_id: str, status: str, code: str, message: str) -> None:
        super().__init__(f"job {job_id} {status}: {code}: {message}")
        self.job_id = job_id
        self.status = status
        self.code = code
        self.message = message


class WaitTimeout(SmartCashClientError):
    """The job did not finish within the time ``wait``/``validate`` was given."""
