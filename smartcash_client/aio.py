"""The asyncio client: ``AsyncClient``, the same calls as ``Client`` awaited.

    async with AsyncClient("http://validator:8000", api_key=key) as client:
        result = await client.validate(checkpoint="exp7/epoch3.safetensors", dataset="banknotes")
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from smartcash_client import _protocol as protocol
from smartcash_client.client import MAX_RECONNECTS, ProgressCallback, succeeded
from smartcash_client.errors import TransportError
from smartcash_client.models import Comparison, Event, Job, RunHistory, ValidationResult


class AsyncClient:
    """``Client`` for asyncio code: same arguments, same retries, reconnects and errors."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        *,
        max_retries: int = 5,
        max_retry_wait_s: float = 60.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._http = http if http is not None else httpx.AsyncClient(base_url=base_url, timeout=timeout)
        self._headers = {protocol.API_KEY_HEADER: api_key} if api_key else {}
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_retry_wait_s = max_retry_wait_s

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = await self._http.request(method, path, headers=self._headers, **kwargs)
            except httpx.TransportError as exc:
                raise TransportError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
            delay = protocol.queue_full_delay(
                response.status_code, response.headers, attempt, self.max_retries, self.max_retry_wait_s
            )
            if delay is None:
                break
            attempt += 1
            await asyncio.sleep(delay)
        if response.is_error:
            raise protocol.api_error(response.status_code, response.headers, response.content)
        return response

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return (await self._request(method, path, **kwargs)).json()

    async def load_model(self, name: str, checkpoint: str, device: str = "auto") -> dict[str, Any]:
        body = {"name": name, "checkpoint": checkpoint, "device": device}
        return dict(await self._json("POST", "/v1/models", json=body))

    async def validate(
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
        """See ``Client.validate``. Local files are read on a worker thread."""
        request = await asyncio.to_thread(
            protocol.submission,
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
        job = Job.from_dict(await self._json("POST", request.path, **sent))
        return await self.wait(job.id, on_progress, wait_timeout_s) if wait else job

    async def wait(
        self, job_id: str, on_progress: ProgressCallback | None = None, timeout_s: float | None = None
    ) -> ValidationResult:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        async for event in self.events(job_id, deadline=deadline):
            if event.kind == "progress" and on_progress is not None:
                on_progress(int(event.data["done"]), int(event.data["total"]), str(event.data["stage"]))
        return succeeded(await self.job(job_id))

    async def events(
        self, job_id: str, last_event_id: str | None = None, deadline: float | None = None
    ) -> AsyncIterator[Event]:
        failures = 0
        while True:
            try:
                async for event in self._stream(job_id, last_event_id, deadline):
                    failures = 0
                    last_event_id = event.id if event.id is not None else last_event_id
                    yield event
                    if event.kind == "status":
                        return
                    protocol.check_deadline(deadline, job_id)
            except httpx.TransportError as exc:
                failures += 1
                if failures > MAX_RECONNECTS:
                    raise TransportError(f"events of job {job_id}: {type(exc).__name__}: {exc}") from exc
            protocol.check_deadline(deadline, job_id)
            await asyncio.sleep(protocol.reconnect_delay(max(failures, 1)))

    async def _stream(
        self, job_id: str, last_event_id: str | None, deadline: float | None
    ) -> AsyncIterator[Event]:
        headers = {**self._headers, **protocol.events_headers(last_event_id)}
        timeout = httpx.Timeout(self.timeout, read=protocol.read_timeout(self.timeout, deadline))
        path = f"/v1/validations/{job_id}/events"
        async with self._http.stream("GET", path, headers=headers, timeout=timeout) as response:
            if response.is_error:
                await response.aread()
                raise protocol.api_error(response.status_code, response.headers, response.content)
            parser = protocol.SseParser()
            async for line in response.aiter_lines():
                event = parser.feed(line)
                if event is not None:
                    yield event

    async def job(self, job_id: str) -> Job:
        return Job.from_dict(await self._json("GET", f"/v1/validations/{job_id}"))

    async def jobs(
        self,
        tags: Mapping[str, Any] | None = None,
        status: str | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> list[Job]:
        params = protocol.jobs_query(tags, status, limit, offset)
        page = await self._json("GET", "/v1/validations", params=params)
        return [Job.from_dict(item) for item in page["items"]]

    async def run(self, name: str) -> RunHistory:
        return RunHistory.from_dict(await self._json("GET", protocol.run_path(name)))

    async def cancel(self, job_id: str) -> Job:
        return Job.from_dict(await self._json("POST", f"/v1/validations/{job_id}/cancel"))

    async def compare(
        self,
        baseline: str,
        candidate: str,
        resamples: int = 1000,
        seed: int = 0,
        confidence: float = 0.95,
    ) -> Comparison:
        body = protocol.comparison_body(baseline, candidate, resamples, seed, confidence)
        answer = await self._json("POST", "/v1/comparisons", json=body)
        return Comparison.from_dict(answer, baseline, candidate)
