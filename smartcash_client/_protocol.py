"""The HTTP conversation without the I/O: request bodies, error bodies, retry delays, SSE parsing.

``Client`` and ``AsyncClient`` only send what this module builds and feed it what comes back, so both
behave the same and the rules live in one place.
"""

from __future__ import annotations

import json
import mimetypes
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from smartcash_client.errors import ApiError, WaitTimeout, error_class
from smartcash_client.models import Event

API_KEY_HEADER = "X-API-Key"
RECONNECT_BASE_S = 0.5
RECONNECT_MAX_S = 10.0
FilePart = tuple[str, tuple[str, bytes, str]]


@dataclass(frozen=True)
class Submission:
    """What ``validate`` sends: a JSON body (dataset) or form fields plus files (upload)."""

    path: str
    json: dict[str, Any] | None = None
    data: dict[str, str] | None = None
    files: list[FilePart] = field(default_factory=list)


def submission(
    *,
    dataset: str | None,
    files: Sequence[str | Path] | None,
    model: str | None,
    checkpoint: str | None,
    split: str,
    params: Mapping[str, Any] | None,
    tags: Mapping[str, Any] | None,
    callback_url: str | None,
) -> Submission:
    """The request of a validation: exactly one of ``dataset``/``files`` and of ``model``/``checkpoint``."""
    if (dataset is None) == (files is None):
        raise ValueError("give exactly one of dataset= (a path under the data root) or files= (local files)")
    if (model is None) == (checkpoint is None):
        raise ValueError("give exactly one of model= (a loaded model's name) or checkpoint= (a file)")
    which = {"model": model} if model is not None else {"checkpoint": checkpoint}
    tag_map = {str(key): str(value) for key, value in (tags or {}).items()}
    if dataset is not None:
        body: dict[str, Any] = {**which, "dataset": dataset, "split": split, "params": dict(params or {})}
        if tag_map:
            body["tags"] = tag_map
        if callback_url is not None:
            body["callback_url"] = callback_url
        return Submission("/v1/validations", json=body)
    data = {**which, "params": json.dumps(dict(params or {}))}  # type: ignore[dict-item]
    if tag_map:
        data["tags"] = json.dumps(tag_map)
    if callback_url is not None:
        data["callback_url"] = callback_url
    return Submission("/v1/validations/upload", data=data, files=file_parts(files or []))


def file_parts(paths: Sequence[str | Path]) -> list[FilePart]:
    """Multipart ``files`` parts of local images and labels (or one archive)."""
    if not paths:
        raise ValueError("files= needs at least one file (images with their .txt labels, or one archive)")
    parts: list[FilePart] = []
    for item in paths:
        path = Path(item)
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        parts.append(("files", (path.name, path.read_bytes(), content_type)))
    return parts


def api_error(status_code: int, headers: Mapping[str, str], content: bytes) -> ApiError:
    """The typed error of a non-2xx answer, with the service's code, message and fix when it sent them."""
    try:
        body: Any = json.loads(content) if content else None
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code, message = str(error.get("code", "")), str(error.get("message", ""))
        fix = str(error.get("fix", ""))
    else:  # not the service's JSON (a proxy, a crash): say what came back
        code, message, fix = "http_error", content[:200].decode("utf-8", "replace") or "no body", ""
    request_id = body.get("request_id") if isinstance(body, dict) else None
    return error_class(status_code)(
        status_code, code, message, fix, request_id, body, retry_after=retry_after(headers)
    )


def retry_after(headers: Mapping[str, str]) -> float | None:
    """The ``Retry-After`` header in seconds (the delta form; an HTTP date is not used by this service)."""
    value = headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def queue_full_delay(
    status_code: int, headers: Mapping[str, str], attempt: int, max_retries: int, max_wait_s: float
) -> float | None:
    """Seconds to wait before retrying a 429 (the server's ``Retry-After``, capped), or ``None``: do not."""
    if status_code != 429 or attempt >= max_retries:
        return None
    hint = retry_after(headers)
    delay = hint if hint is not None else min(max_wait_s, 2.0**attempt)
    return min(delay, max_wait_s)


def reconnect_delay(failures: int) -> float:
    """Backoff before the ``failures``-th consecutive reconnect of an event stream (with jitter)."""
    return min(RECONNECT_MAX_S, RECONNECT_BASE_S * 2 ** max(0, failures - 1)) * random.uniform(0.8, 1.2)


def events_headers(last_event_id: str | None) -> dict[str, str]:
    headers = {"Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    return headers


class SseParser:
    """Server-Sent Events, line by line (the WHATWG rules this service needs): fields gathered until a
    blank line; ``data`` lines joined with newlines; comments and unknown fields ignored."""

    def __init__(self) -> None:
        self._fields: dict[str, str] = {}
        self._data: list[str] = []

    def feed(self, line: str) -> Event | None:
        """The event a blank line completes, else ``None``."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            self._data.append(value)
        elif name in ("event", "id"):
            self._fields[name] = value
        return None

    def _dispatch(self) -> Event | None:
        fields, data = self._fields, self._data
        self._fields, self._data = {}, []
        if not data:
            return None
        try:
            payload = json.loads("\n".join(data))
        except ValueError:
            payload = {"raw": "\n".join(data)}
        return Event(fields.get("event", "message"), fields.get("id"), payload)


def jobs_query(tags: Mapping[str, Any] | None, status: str | None, limit: int, offset: int) -> dict[str, Any]:
    """The query of ``GET /v1/validations``: every tag as ``tag=key:value`` (all must match), a status."""
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    if tags:
        params["tag"] = [f"{key}:{value}" for key, value in tags.items()]
    if status is not None:
        params["status"] = status
    return params


def run_path(name: str) -> str:
    return f"/v1/runs/{quote(name, safe='')}"


def comparison_body(
    baseline: str, candidate: str, resamples: int, seed: int, confidence: float
) -> dict[str, Any]:
    return {
        "baseline": baseline,
        "candidate": candidate,
        "resamples": resamples,
        "seed": seed,
        "confidence": confidence,
    }


def read_timeout(timeout: float, deadline: float | None) -> float:
    """A stream read waits at most ``timeout`` (then reconnects), and never past the deadline."""
    if deadline is None:
        return timeout
    return max(0.05, min(timeout, deadline - time.monotonic()))


def check_deadline(deadline: float | None, job_id: str) -> None:
    if deadline is not None and time.monotonic() >= deadline:
        raise WaitTimeout(f"job {job_id} did not finish in time")
