"""A cap on the Server-Sent Event streams one replica keeps open (``SMARTCASH_MAX_SSE_CONNECTIONS``).

Each stream holds a connection and polls the job's progress until the job ends, which may take hours:
without a cap, a client opening streams in a loop holds sockets and thread-pool time without bound. The
slot is a dependency with ``yield``: FastAPI runs its exit after the streamed response has finished (or
the client went away), so the slot is held exactly as long as the stream.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request

from service.errors import TooManyStreams


class StreamSlots:
    def __init__(self, limit: int, retry_after_s: int) -> None:
        self.limit, self._retry_after_s, self.used = limit, retry_after_s, 0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Take a slot, or ``TooManyStreams`` (429 + ``Retry-After``) when all are in use."""
        with self._lock:
            if self.used >= self.limit:
                raise TooManyStreams(
                    f"{self.limit} event streams are already open on this replica",
                    f"retry after {self._retry_after_s} s, poll GET /v1/validations/{{id}} instead, or raise "
                    "SMARTCASH_MAX_SSE_CONNECTIONS",
                    headers={"Retry-After": str(self._retry_after_s)},
                )
            self.used += 1

    def release(self) -> None:
        with self._lock:
            self.used -= 1


def stream_slot(request: Request) -> Iterator[None]:
    slots: StreamSlots = request.app.state.smartcash.stream_slots
    slots.acquire()
    try:
        yield
    finally:
        slots.release()


StreamSlotDep = Annotated[None, Depends(stream_slot)]
