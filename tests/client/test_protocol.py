"""The client's rules against scripted HTTP answers (``httpx.MockTransport``): 429 and Retry-After, typed
errors, SSE reconnects with Last-Event-ID, submissions, and the comparison call (a stub route: the
comparison endpoint is another component's)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import smartcash_client.aio as aio_module
import smartcash_client.client as client_module
from smartcash_client import (
    AsyncClient,
    BadRequest,
    Client,
    JobFailed,
    NotFound,
    QueueFull,
    ServerError,
    TransportError,
    Unprocessable,
    verify_signature,
)
from smartcash_client._protocol import SseParser

JOB_ID = "a" * 32
Handler = Callable[[httpx.Request], httpx.Response]


def _job(status: str = "queued", result: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": JOB_ID,
        "status": status,
        "model": None,
        "checkpoint": "exp7/e3.safetensors",
        "tags": {"run": "exp7", "epoch": "3"},
        "headline": {"map50": 0.9 if result else None, "map50_95": 0.6 if result else None},
        "progress": {"done": 24 if result else 0, "total": 24, "stage": "done", "fraction": 1.0},
        "error": extra.get("error"),
        "result": result,
    }


RESULT = {
    "metrics": {
        "map50": 0.9,
        "map50_95": 0.6,
        "precision": 0.8,
        "recall": 0.7,
        "protocol": "yolo",
        "per_class": [
            {
                "id": 0,
                "name": "1000",
                "ap50": 0.95,
                "ap50_95": 0.7,
                "precision": 0.9,
                "recall": 0.8,
                "instances": 12,
            },
        ],
        "fine": {"map50": 0.85, "map50_95": 0.55, "precision": None, "recall": None, "per_class": []},
    },
    "dataset": {"images": 24, "instances": 40, "skipped": []},
    "speed_ms_per_image": {"inference": 9.5, "nms": 0.5},
    "cache": {"image": {"hits": 3, "misses": 21}},
    "warnings": [{"code": "few_images", "message": "only 24 images"}],
}


def _error(status: int, code: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"error": {"code": code, "message": f"{code} happened", "fix": f"fix {code}"}, "request_id": "r1"}
    return httpx.Response(status, json=body, headers=headers)


def _client(handler: Handler, **kwargs: Any) -> Client:
    http = httpx.Client(base_url="http://svc", transport=httpx.MockTransport(handler))
    return Client("http://svc", api_key="k", http=http, **kwargs)


@pytest.fixture()
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(client_module.time, "sleep", slept.append)
    return slept


def test_429_is_retried_after_the_servers_retry_after(sleeps: list[float]) -> None:
    answers = iter(
        [
            _error(429, "queue_full", {"Retry-After": "3"}),
            _error(429, "queue_full", {"Retry-After": "1"}),
            httpx.Response(202, json=_job()),
        ]
    )
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return next(answers)

    job = _client(handler).validate(
        checkpoint="exp7/e3.safetensors", dataset="ds", tags={"epoch": 3}, wait=False
    )
    assert job.id == JOB_ID and job.checkpoint == "exp7/e3.safetensors" and sleeps == [3.0, 1.0]
    assert len(seen) == 3 and all(request.headers["x-api-key"] == "k" for request in seen)
    assert json.loads(seen[0].content) == {
        "checkpoint": "exp7/e3.safetensors",
        "dataset": "ds",
        "split": "val",
        "params": {},
        "tags": {"epoch": "3"},
    }


def test_retries_are_bounded_and_each_wait_capped(sleeps: list[float]) -> None:
    client = _client(
        lambda request: _error(429, "queue_full", {"Retry-After": "600"}), max_retries=2, max_retry_wait_s=5
    )
    with pytest.raises(QueueFull) as raised:
        client.validate(model="m", dataset="ds", wait=False)
    assert sleeps == [5.0, 5.0]
    error = raised.value
    assert (error.status_code, error.code, error.fix, error.request_id) == (
        429,
        "queue_full",
        "fix queue_full",
        "r1",
    )
    assert error.retry_after == 600.0 and "queue_full happened" in str(error)


@pytest.mark.parametrize(
    ("status", "kind", "code"),
    [
        (400, BadRequest, "callback_refused"),
        (404, NotFound, "not_found"),
        (422, Unprocessable, "bad_checkpoint"),
        (503, ServerError, "store_unavailable"),
    ],
)
def test_errors_are_typed_and_carry_code_message_and_fix(status: int, kind: type, code: str) -> None:
    with pytest.raises(kind) as raised:
        _client(lambda request: _error(status, code)).job(JOB_ID)
    assert raised.value.code == code and raised.value.message == f"{code} happened"
    assert raised.value.fix == f"fix {code}" and raised.value.status_code == status


def test_an_answer_that_is_not_the_services_json_still_raises_typed() -> None:
    with pytest.raises(ServerError) as raised:
        _client(lambda request: httpx.Response(502, text="<html>bad gateway</html>")).job(JOB_ID)
    assert raised.value.code == "http_error" and "bad gateway" in raised.value.message


def test_a_refused_connection_is_a_transport_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(TransportError, match="ConnectError"):
        _client(handler).job(JOB_ID)


class _DroppingStream(httpx.SyncByteStream):
    """Sends ``chunks``, then breaks the connection (a proxy timeout, a restarted load balancer)."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks
        raise httpx.ReadError("connection reset by peer")


def _sse(kind: str, event_id: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data)}\nid: {event_id}\n\n".encode()


def _progress(done: int) -> dict[str, Any]:
    return {"id": JOB_ID, "status": "running", "done": done, "total": 24, "stage": "batch"}


def test_wait_reconnects_with_last_event_id_and_returns_the_typed_result(sleeps: list[float]) -> None:
    streams: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            streams.append(request.headers.get("last-event-id"))
            if len(streams) == 1:
                return httpx.Response(200, stream=_DroppingStream([_sse("progress", "8.1", _progress(8))]))
            if len(streams) == 2:  # the server is restarting
                raise httpx.ConnectError("refused", request=request)
            final = {**_progress(24), "status": "succeeded", "metrics": {"map50": 0.9}}
            body = (
                _sse("progress", "16.1", _progress(16)) + b": keep-alive\n\n" + _sse("status", "final", final)
            )
            return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})
        return httpx.Response(200, json=_job("succeeded", RESULT))

    progress: list[tuple[int, int, str]] = []
    result = _client(handler).wait(JOB_ID, on_progress=lambda *args: progress.append(args))
    assert streams == [None, "8.1", "8.1"]  # each reconnect resumes after the last event received
    assert progress == [(8, 24, "batch"), (16, 24, "batch")] and len(sleeps) == 2
    assert (result.map50, result.map50_95, result.images) == (0.9, 0.6, 24)
    assert (
        result.per_class[0].name == "1000" and result.ap50("1000") == 0.95 and result.ap50("feature") is None
    )
    assert (
        result.fine.map50 == 0.85 and result.speed["inference"] == 9.5 and result.cache["image"]["hits"] == 3
    )
    assert result.warnings[0].code == "few_images" and result.tags == {"run": "exp7", "epoch": "3"}


def test_reconnects_give_up_after_a_bound(sleeps: list[float]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(TransportError, match="events of job"):
        _client(handler).wait(JOB_ID)
    assert len(sleeps) == client_module.MAX_RECONNECTS


def test_a_job_that_did_not_succeed_raises_with_the_servers_error(sleeps: list[float]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return httpx.Response(200, content=_sse("status", "final", {**_progress(3), "status": "failed"}))
        return httpx.Response(
            200, json=_job("failed", error={"code": "checkpoint_changed", "message": "rewritten"})
        )

    with pytest.raises(JobFailed) as raised:
        _client(handler).wait(JOB_ID)
    assert (raised.value.status, raised.value.code, raised.value.message) == (
        "failed",
        "checkpoint_changed",
        "rewritten",
    )


def test_submissions_need_exactly_one_source_and_one_model(tmp_path: Path) -> None:
    client = _client(lambda request: httpx.Response(500))
    for kwargs in (
        {"dataset": "d"},
        {"model": "m"},
        {"dataset": "d", "files": ["x"], "model": "m"},
        {"dataset": "d", "model": "m", "checkpoint": "c"},
        {"files": [], "model": "m"},
    ):
        with pytest.raises(ValueError):
            client.validate(wait=False, **kwargs)


def test_an_upload_sends_files_tags_and_callback_as_form_fields(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"\xff\xd8jpeg")
    (tmp_path / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202, json=_job())

    _client(handler).validate(
        files=[tmp_path / "a.jpg", tmp_path / "a.txt"],
        checkpoint="c.safetensors",
        params={"imgsz": 320},
        tags={"run": "r"},
        callback_url="https://h/x",
        wait=False,
    )
    body = seen[0].read()
    assert seen[0].url.path == "/v1/validations/upload" and b'name="checkpoint"' in body
    assert b'{"run": "r"}' in body and b"https://h/x" in body and b'filename="a.jpg"' in body
    assert b'{"imgsz": 320}' in body


def test_jobs_run_cancel_and_compare_call_their_routes() -> None:
    seen: list[httpx.Request] = []
    comparison = {"mapped": {"map50_95": {"delta": -0.1, "ci": [-0.15, -0.05], "verdict": "worse"}}}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        path = request.url.path
        if path == "/v1/validations":
            return httpx.Response(200, json={"items": [_job()], "total": 1, "offset": 0, "limit": 20})
        if path.startswith("/v1/runs/"):
            entry = {
                "id": JOB_ID,
                "epoch": "3",
                "status": "succeeded",
                "map50": 0.9,
                "map50_95": 0.6,
                "tags": {},
            }
            return httpx.Response(
                200,
                json={
                    "run": "exp 7/a",
                    "jobs": [entry],
                    "best": entry,
                    "total": 1,
                    "truncated": False,
                    "best_by": "map50_95",
                },
            )
        if path == "/v1/comparisons":  # a stub of the comparison endpoint
            return httpx.Response(200, json=comparison)
        return httpx.Response(200, json=_job("cancelled"))

    client = _client(handler)
    assert [job.id for job in client.jobs(tags={"run": "exp7", "epoch": 3}, status="succeeded")] == [JOB_ID]
    assert seen[-1].url.params.get_list("tag") == ["run:exp7", "epoch:3"]
    history = client.run("exp 7/a")
    assert seen[-1].url.raw_path == b"/v1/runs/exp%207%2Fa" and history.best is not None
    assert history.best.map50_95 == 0.6 and history.jobs[0].epoch == "3"
    assert client.cancel(JOB_ID).status == "cancelled" and seen[-1].url.path.endswith("/cancel")
    compared = client.compare("b" * 32, "c" * 32, resamples=200, seed=4)
    assert json.loads(seen[-1].content) == {
        "baseline": "b" * 32,
        "candidate": "c" * 32,
        "resamples": 200,
        "seed": 4,
        "confidence": 0.95,
    }
    assert compared.verdict == "worse" and compared.estimate()["ci"] == [-0.15, -0.05]


def test_the_async_client_behaves_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def no_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(aio_module.asyncio, "sleep", no_sleep)
    answers = iter([_error(429, "queue_full", {"Retry-After": "2"}), httpx.Response(202, json=_job())])
    streams: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            streams.append(request.headers.get("last-event-id"))
            if len(streams) == 1:
                raise httpx.ReadError("reset", request=request)
            return httpx.Response(
                200, content=_sse("status", "final", {**_progress(24), "status": "succeeded"})
            )
        if request.method == "POST":
            return next(answers)
        return httpx.Response(200, json=_job("succeeded", RESULT))

    async def main() -> Any:
        http = httpx.AsyncClient(base_url="http://svc", transport=httpx.MockTransport(handler))
        async with AsyncClient("http://svc", http=http) as client:
            return await client.validate(model="m", dataset="ds")

    result = asyncio.run(main())
    assert result.map50_95 == 0.6 and slept[0] == 2.0 and streams == [None, None]


def test_sse_parser_follows_the_wire_format() -> None:
    parser = SseParser()
    lines = [": comment", "event: progress", "id: 1.1", 'data: {"a":', "data: 1}", "", "", "data: x", ""]
    events = [event for event in map(parser.feed, lines) if event is not None]
    assert [(e.kind, e.id, e.data) for e in events] == [
        ("progress", "1.1", {"a": 1}),
        ("message", None, {"raw": "x"}),
    ]


def test_verify_signature_checks_body_secret_and_age() -> None:
    import hashlib
    import hmac

    body = b'{"event":"validation.finished"}'
    digest = hmac.new(b"s", b"1000." + body, hashlib.sha256).hexdigest()
    headers = {"X-SmartCash-Timestamp": "1000", "X-SmartCash-Signature": f"sha256={digest}"}
    assert verify_signature("s", headers, body, now=1100)
    assert not verify_signature("s", headers, body + b" ", now=1100)
    assert not verify_signature("other", headers, body, now=1100)
    assert not verify_signature("s", headers, body, now=1000 + 301)  # too old: a replay
    assert not verify_signature("s", {**headers, "X-SmartCash-Timestamp": "x"}, body, now=1000)
