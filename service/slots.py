"""A bound on how many requests hold some scarce thing at once (uploads being received, comparisons being
computed, event streams open): one counter, one refusal (429 with ``Retry-After``) per kind."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from service.errors import ServiceError


class BoundedSlots:
    """At most ``limit`` holders at once; a subclass says how the next one is refused (``refusal``)."""

    def __init__(self, limit: int, retry_after_s: int) -> None:
        self.limit, self.retry_after_s, self.used = limit, retry_after_s, 0
        self._lock = threading.Lock()

    def refusal(self) -> ServiceError:
        raise NotImplementedError

    def acquire(self) -> None:
        """Take a slot, or raise :meth:`refusal` (a 429 carrying ``Retry-After``) when all are in use."""
        with self._lock:
            if self.used >= self.limit:
                raise self.refusal()
            self.used += 1

    def release(self) -> None:
        with self._lock:
            self.used -= 1

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold a slot for the block."""
        self.acquire()
        try:
            yield
        finally:
            self.release()

    @property
    def retry_headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}
