"""A real webhook receiver for tests: ``http.server`` on a loopback port, in a thread.

It answers each POST with the next status of its script (then 204), records every request, and checks the
signature the way a pipeline's receiver would: HMAC-SHA256 over ``<timestamp>.<raw body>`` with the shared
secret, compared in constant time, and a timestamp close to its own clock. Written from the documented
scheme with the standard library only (it does not import the service's signing code).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_CLOCK_SKEW_S = 300


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    received_at: float
    signature_ok: bool

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.body)


def signature_ok(secret: bytes, headers: dict[str, str], body: bytes, now: float) -> bool:
    timestamp = headers.get("x-smartcash-timestamp", "")
    signature = headers.get("x-smartcash-signature", "")
    if not timestamp.isdigit() or abs(now - int(timestamp)) > MAX_CLOCK_SKEW_S:
        return False
    expected = "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


class Receiver:
    def __init__(self, secret: bytes, statuses: list[int] | None = None, location: str = "") -> None:
        self.secret = secret
        self.statuses = list(statuses or [])
        self.location = location
        self.deliveries: list[Delivery] = []
        self._changed = threading.Condition()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, name="webhook-receiver", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/smartcash"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, count: int, timeout: float = 60.0) -> list[Delivery]:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.deliveries) >= count, timeout):
                raise AssertionError(f"{len(self.deliveries)} of {count} deliveries in {timeout} s")
            return list(self.deliveries)

    def _record(self, headers: dict[str, str], body: bytes) -> int:
        now = time.time()
        with self._changed:
            verified = signature_ok(self.secret, headers, body, now)
            self.deliveries.append(Delivery(headers, body, now, verified))
            status = self.statuses.pop(0) if self.statuses else 204
            self._changed.notify_all()
        return status

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {name.lower(): value for name, value in self.headers.items()}
                status = receiver._record(headers, body)
                self.send_response(status)
                if receiver.location and 300 <= status < 400:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                return

        return Handler
