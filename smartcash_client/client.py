"""The blocking client: ``Client(base_url, api_key=None, timeout=30)``.

    with Client("http://validator:8000", api_key=key) as client:
        result = client.validate(checkpoint="exp7/epoch3.safetensors", dataset="banknotes",
                                 tags={"run": "exp7", "epoch": 3})
        print(result.map50_95)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, overload

import httpx

from smartcash_client import _protocol as protocol
from smartcash_client.errors import ApiError, JobFailed, TransportError
from smartcash_client.models import Comparison, Event, Job, RunHistory, ValidationResult

ProgressCallback = Callable[[int, int, str], None]  # (done images, total images, stage)
MAX_RECONNECTS = 8  # consecutive failed connections of an event stream before giving up


class Client:
    """Talks to one SmartCash validation service. Thread-safe as far as ``httpx.Client`` is.

    429 answers are retried after the server's ``Retry-After`` (at most ``max_retries`` times, each wait
    capped at ``max_retry_wait_s``); errors raise ``ApiError`` subclasses carrying the server's code,
    message and fix. Pass ``http`` to bring your own ``httpx.Client`` (proxies, TLS, tests)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        *,
        max_retries: int = 5,
        max_retry_wait_s: float = 60.0,
        http: httpx.Client | None = None,
    ) -> None:
        self._http = http if http is not None else httpx.Client(base_url=base_url, timeout=timeout)
        self._headers = {protocol.API_KEY_HEADER: api_key} if api_key else {}
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_retry_wait_s = max_retry_wait_s

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- plumbing ----------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, headers=self._headers, **kwargs)
            except httpx.TransportError as exc:
                raise TransportError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
            delay = protocol.queue_full_delay(
                response.status_code, response.headers, attempt, self.max_retries, self.max_retry_wait_s
            )
            if delay is None:
                break
            attempt += 1
            time.sleep(delay)
        if response.is_error:
            raise protocol.api_error(response.status_code, response.headers, response.content)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    # -- models ------------------------------------------------------------------------------------------
    def load_model(self, name: str, checkpoint: str, device: str = "auto") -> dict[str, Any]:
        """Load a checkpoint (relative to the checkpoint root) under ``name``; the model's description."""
        body = {"name": name, "checkpoint": checkpoint, "device": device}
        return dict(self._json("POST", "/v1/models", json=body))

    # -- validations -------------------------------------------------------------------------------------
    @overload
    def validate(self, *, wait: Literal[True] = ..., **kwargs: Any) -> ValidationResult: ...

    @overload
    def validate(self, *, wait: Literal[False], **kwargs: Any) -> Job: ...

    def validate(
        self,
        *,
        dataset: str | None = None,
        files: Sequence[str | Path] | None = None,
        model: str | None = None,
        checkpoint: str | None = None,
        split: str = "val",
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        callback_url: str | None = None,
        wait: bool = True,
        on_progress: ProgressCallback | None = None,
        wait_timeout_s: float | None = None,
    ) -> ValidationResult | Job:
        """Submit a validation of ``model`` (a loaded name) or ``checkpoint`` (a file under the service's
        checkpoint root) on ``dataset`` (under its data root) or local ``files`` (uploaded). With ``wait``
        (default) follow it to the end and return the result (``JobFailed`` if it did not succeed);
        without, return the queued ``Job``. Tag values are sent as strings (``epoch=3`` -> ``"3"``)."""
        request = protocol.submission(
            dataset=dataset,
            files=files,
            model=model,
            checkpoint=checkpoint,
            split=split,
            params=params,
            tags=tags,
            callback_url=callback_url,
        )
        sent = {"json": request.json, "data": request.data, "files": request.files or None}
        job = Job.from_dict(self._json("POST", request.path, **sent))
        return self.wait(job.id, on_progress, wait_timeout_s) if wait else job

    def wait(
        self, job_id: str, on_progress: ProgressCallback | None = None, timeout_s: float | None = None
    ) -> ValidationResult:
        """Follow the job's events to its end (reconnecting with ``Last-Event-ID``); its result."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for event in self.events(job_id, deadline=deadline):
            if event.kind == "progress" and on_progress is not None:
                on_progress(int(event.data["done"]), int(event.data["total"]), str(event.data["stage"]))
        return succeeded(self.job(job_id))

    def events(
        self, job_id: str, last_event_id: str | None = None, deadline: float | None = None
    ) -> Iterator[Event]:
        """The job's events until the final ``status`` one, across reconnects (each resumes after the last
        event received). ``TransportError`` after ``MAX_RECONNECTS`` failed connections in a row."""
        failures = 0
        while True:
            try:
                for event in self._stream(job_id, last_event_id, deadline):
                    failures = 0
                    last_event_id = event.id if event.id is not None else last_event_id
                    yield event
                    if event.kind == "status":
                        return
                    protocol.check_deadline(deadline, job_id)
            except httpx.TransportError as exc:  # dropped, refused or silent too long: reconnect
                failures += 1
                if failures > MAX_RECONNECTS:
                    raise TransportError(f"events of job {job_id}: {type(exc).__name__}: {exc}") from exc
            protocol.check_deadline(deadline, job_id)
            time.sleep(protocol.reconnect_delay(max(failures, 1)))

    def _stream(self, job_id: str, last_event_id: str | None, deadline: float | None) -> Iterator[Event]:
        headers = {**self._headers, **protocol.events_headers(last_event_id)}
        timeout = httpx.Timeout(self.timeout, read=protocol.read_timeout(self.timeout, deadline))
        path = f"/v1/validations/{job_id}/events"
        with self._http.stream("GET", path, headers=headers, timeout=timeout) as response:
            if response.is_error:
                response.read()
                raise protocol.api_error(response.status_code, response.headers, response.content)
            parser = protocol.SseParser()
            for line in response.iter_lines():
                event = parser.feed(line)
                if event is not None:
                    yield event

    def job(self, job_id: str) -> Job:
        return Job.from_dict(self._json("GET", f"/v1/validations/{job_id}"))

    def jobs(
        self,
        tags: Mapping[str, Any] | None = None,
        status: str | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> list[Job]:
        """Jobs newest first, filtered by every tag given (and a status)."""
        params = protocol.jobs_query(tags, status, limit, offset)
        return [Job.from_dict(item) for item in self._json("GET", "/v1/validations", params=params)["items"]]

    def run(self, name: str) -> RunHistory:
        """The jobs tagged ``run=<name>`` by epoch, and the best by mAP50-95."""
        return RunHistory.from_dict(self._json("GET", protocol.run_path(name)))

    def cancel(self, job_id: str) -> Job:
        return Job.from_dict(self._json("POST", f"/v1/validations/{job_id}/cancel"))

    def compare(
        self,
        baseline: str,
        candidate: str,
        resamples: int = 1000,
        seed: int = 0,
        confidence: float = 0.95,
    ) -> Comparison:
        """Paired bootstrap comparison of two succeeded jobs over the same images (``POST /v1/comparisons``).
        ``raw`` holds the deltas with their intervals and verdicts as the service reports them."""
        body = protocol.comparison_body(baseline, candidate, resamples, seed, confidence)
        return Comparison.from_dict(self._json("POST", "/v1/comparisons", json=body), baseline, candidate)


def succeeded(job: Job) -> ValidationResult:
    """The job's result; ``JobFailed`` (with the server's error code and message) when it has none."""
    if job.status != "succeeded":
        error = job.error or {}
        raise JobFailed(job.id, job.status, str(error.get("code", job.status)), str(error.get("message", "")))
    return ValidationResult.from_job(job.raw)


__all__ = ["ApiError", "Client", "ProgressCallback", "succeeded"]
