"""The request guard: an ASGI middleware that runs before FastAPI reads or parses anything of a request.

FastAPI reads and parses a JSON body (on the event loop) before any dependency runs, so a dependency
cannot refuse a body early: a 24 MB body of 10^6 keys used to cost 2 s of event loop before its 401. Here,
in order, before a byte of body is read:

1. the API key of protected paths (``/v1/*``, ``/metrics``): 401 without touching the body;
2. request bodies of every route but the upload are read here, whole, capped at ``max_json_bytes`` (413
   from ``Content-Length`` at once, or as soon as a chunked body crosses it) and then replayed to FastAPI,
   so at most ``max_json_bytes`` of JSON is ever parsed;
3. every body (uploads included, which stream into their own capped parser) must arrive in time: after
   ``timeout_s`` of grace it must average ``min_bytes_per_s``, else 408 and the connection is closed,
   which frees an upload slot held by a stalled client.

Starlette's ``RequestBodyLimitMiddleware`` (``FastAPI(max_body_size=...)``) caps sizes too, but it checks
no key first, has no read deadline and answers plain text; one small middleware does all three in the
service's error shape.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from service.errors import PayloadTooLarge, RequestTimeout, ServiceError, Unauthorized

log = logging.getLogger("smartcash.service.guard")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PROTECTED_PREFIXES = ("/v1/", "/metrics")  # the routers mounted with ``require_api_key`` (a test checks)
STREAMED_PATHS = frozenset({"/v1/validations/upload"})  # bodies read by their route, with their own cap
CLIENT_CLOSED = 499  # nginx's "client closed request": recorded for aborted requests, never sent
_CLOSE = {"Connection": "close"}


@dataclass(frozen=True)
class GuardConfig:
    api_key: str | None
    max_json_bytes: int
    timeout_s: float  # grace before a body must flow at ``min_bytes_per_s``
    min_bytes_per_s: int


class ClientGone(Exception):
    """The client disconnected before its request body was complete."""


def is_protected(path: str) -> bool:
    return path.startswith(PROTECTED_PREFIXES) or path == "/v1"


def check_api_key(expected: str | None, supplied: str | None) -> None:
    """``Unauthorized`` (401) unless the service is open or ``supplied`` matches (constant-time)."""
    if expected is None:
        return
    if supplied is None or not secrets.compare_digest(supplied.encode(), expected.encode()):
        reason = "missing" if supplied is None else "wrong"
        raise Unauthorized(
            f"{reason} API key",
            "send the key configured in SMARTCASH_API_KEY in the X-API-Key header",
            headers={"WWW-Authenticate": "APIKey"},
        )


class BodyDeadline:
    """The receive channel of one request with a deadline on the body: ``RequestTimeout`` (408) when the
    body has not arrived ``timeout_s`` + ``received / min_bytes_per_s`` seconds after the request began.

    A stall is caught ``timeout_s`` after the last byte that was due; a trickle slower than the minimum
    rate falls behind its deadline; an honest slow client gets one second per ``min_bytes_per_s`` it sent.
    Once the body is complete, ``receive`` passes through untouched (SSE waits on it for a disconnect).
    """

    def __init__(self, receive: Receive, config: GuardConfig) -> None:
        self._receive, self._config = receive, config
        self._started, self.received, self.complete = time.monotonic(), 0, False

    async def __call__(self) -> Message:
        if self.complete:
            return await self._receive()
        due = self._started + self._config.timeout_s + self.received / self._config.min_bytes_per_s
        try:
            message = await asyncio.wait_for(self._receive(), max(0.0, due - time.monotonic()))
        except asyncio.TimeoutError:
            raise RequestTimeout(
                f"the request body did not arrive in time ({self.received} bytes received; after "
                f"{self._config.timeout_s:g} s it must average {self._config.min_bytes_per_s} bytes/s)",
                "send the body without pauses, or raise SMARTCASH_BODY_TIMEOUT_S",
                headers=_CLOSE,
            ) from None
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            self.complete = not message.get("more_body", False)
        return message


class RequestGuard:
    """The middleware (see the module docstring). Sits inside ``RequestContextMiddleware``, so its
    answers carry the request id and are counted in the request metrics like any other."""

    def __init__(self, app: ASGIApp, config: GuardConfig) -> None:
        self.app, self.config = app, config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            if is_protected(scope["path"]):
                check_api_key(self.config.api_key, _header(scope, b"x-api-key"))
            body = BodyDeadline(receive, self.config)
            if scope["path"] in STREAMED_PATHS:
                await self.app(scope, body, send)
                return
            replay = await self._read_body(scope, body)
        except ServiceError as exc:
            await _send_error(scope, send, exc)
            return
        except ClientGone:
            await _client_gone(scope, send)
            return
        await self.app(scope, replay, send)

    async def _read_body(self, scope: Scope, body: BodyDeadline) -> Receive:
        """The whole body (at most ``max_json_bytes``), then a receive channel that replays it."""
        cap = self.config.max_json_bytes
        declared = _declared_length(scope)
        if declared is not None and declared > cap:
            raise _too_large(f"a request body of {declared} bytes", cap, close=False)
        chunks: list[bytes] = []
        while not body.complete:
            message = await body()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunks.append(message.get("body", b""))
            if body.received > cap:  # chunked, or a lying Content-Length: stop reading, close
                raise _too_large(f"the request body (stopped at {body.received} bytes)", cap, close=True)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await body()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        return replay


def _too_large(what: str, cap: int, close: bool) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"{what} exceeds the {cap}-byte limit of JSON bodies",
        "send a smaller JSON body (uploads go to /v1/validations/upload), or raise SMARTCASH_MAX_JSON_BYTES",
        headers=dict(_CLOSE) if close else None,
    )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _declared_length(scope: Scope) -> int | None:
    value = _header(scope, b"content-length")
    if value is None or not (value.isascii() and value.strip().isdigit()):
        return None  # absent or malformed: the server's HTTP parser refuses the latter; counted anyway
    return int(value)


async def _send_error(scope: Scope, send: Send, exc: ServiceError) -> None:
    request_id = (scope.get("state") or {}).get("request_id")
    body = {"error": {"code": exc.code, "message": exc.message, "fix": exc.fix}, "request_id": request_id}
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    extra = exc.headers.items()
    headers += [(key.lower().encode("latin-1"), value.encode("latin-1")) for key, value in extra]
    await send({"type": "http.response.start", "status": exc.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def _client_gone(scope: Scope, send: Send) -> None:
    """Nothing can reach the client; the (ignored) 499 start tells the request metrics what happened."""
    log.info("client disconnected before its request body was complete", extra={"path": scope["path"]})
    await send({"type": "http.response.start", "status": CLIENT_CLOSED, "headers": []})
    await send({"type": "http.response.body", "body": b""})
