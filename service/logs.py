"""Structured logs: one JSON object per line, each carrying the id of the request that caused it."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("smartcash_request_id", default=None)
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Attributes every LogRecord has; anything else was passed with ``extra=`` and belongs in the JSON.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "request_id"}


def new_request_id(client_value: str | None) -> str:
    """The client's ``X-Request-ID`` when it is a sane token, else a fresh one (never trust raw input)."""
    # fullmatch: ``$`` in ``match`` also accepts a trailing newline, which must not reach logs or headers
    if client_value and _CLIENT_ID.fullmatch(client_value):
        return client_value
    return uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    """Stamps the current request id onto every record (``None`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        payload.update({k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS})
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def configure_logging(level: str = "info", as_json: bool = True) -> None:
    """Send the service's and uvicorn's logs to stderr, as JSON lines when ``as_json``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(
        JsonFormatter() if as_json else logging.Formatter("%(levelname)s %(name)s %(message)s")
    )
    for name in ("smartcash", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
