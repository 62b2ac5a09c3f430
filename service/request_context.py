"""The outermost middleware of the app: request ids, the access log and the request-duration histogram."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from service.logs import new_request_id, request_id_var
from service.telemetry import ServiceTelemetry

log = logging.getLogger("smartcash.service")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequestContextMiddleware:
    """Request id (``X-Request-ID`` in and out), access log, and the request-duration histogram.

    Pure ASGI (not ``BaseHTTPMiddleware``) so streaming responses such as SSE pass through untouched.
    """

    def __init__(self, app: ASGIApp, telemetry: ServiceTelemetry) -> None:
        self.app = app
        self.telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        request_id = new_request_id(headers.get(b"x-request-id", b"").decode("latin-1"))
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        status_code = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._record(scope, status_code, time.perf_counter() - started)
            request_id_var.reset(token)

    def _record(self, scope: Scope, status_code: int, seconds: float) -> None:
        template = _route_template(scope)
        self.telemetry.observe_request(scope["method"], template, status_code, seconds)
        log.info(
            "request",
            extra={
                "method": scope["method"],
                "route": template,
                "status": status_code,
                "ms": round(seconds * 1000, 2),
            },
        )


def _route_template(scope: Scope) -> str:
    """The matched route's template (not the raw path: metric labels stay bounded). A mount (the offline
    docs assets) has no route object: it is labelled by its prefix."""
    template = getattr(scope.get("route"), "path", None)
    if template:
        return str(template)
    if scope.get("endpoint") is not None and scope.get("root_path"):
        return f"{scope['root_path']}/{{path}}"
    return "unmatched"
