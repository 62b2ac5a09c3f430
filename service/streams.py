"""A cap on the Server-Sent Event streams one replica keeps open (``SMARTCASH_MAX_SSE_CONNECTIONS``).

Each stream holds a connection and polls the job's progress until the job ends, which may take hours:
without a cap, a client opening streams in a loop holds sockets and thread-pool time without bound. The
slot is a dependency with ``yield``: FastAPI runs its exit after the streamed response has finished (or
the client went away), so the slot is held exactly as long as the stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request

from service.errors import TooManyStreams
from service.slots import BoundedSlots


class StreamSlots(BoundedSlots):
    def refusal(self) -> TooManyStreams:
        return TooManyStreams(
            f"{self.limit} event streams are already open on this replica",
            f"retry after {self.retry_after_s} s, poll GET /v1/validations/{{id}} instead, or raise "
            "SMARTCASH_MAX_SSE_CONNECTIONS",
            headers=self.retry_headers,
        )


def stream_slot(request: Request) -> Iterator[None]:
    slots: StreamSlots = request.app.state.smartcash.stream_slots
    with slots.slot():
        yield


StreamSlotDep = Annotated[None, Depends(stream_slot)]
