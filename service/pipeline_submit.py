"""What a submission needs beyond the dataset: its model (a loaded name, or a checkpoint loaded for it),
its tags and its checked ``callback_url``. Shared by the JSON and the multipart submit routes."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from fastapi.concurrency import run_in_threadpool
from pydantic import TypeAdapter, ValidationError

from service.deps import ServiceState
from service.errors import Unprocessable
from service.pipeline_schemas import TAG_KEY_PATTERN, TAG_VALUE_PATTERN, Tags
from service.registry import ModelEntry
from service.webhooks.policy import CallbackRefused

_TAGS = TypeAdapter(Tags)
_TAG_FIX = 'send tags as a JSON object of strings, e.g. {"run": "exp7", "epoch": "3"}'


async def model_for(state: ServiceState, model: str | None, checkpoint: str | None) -> ModelEntry:
    """The loaded model named ``model``, or ``checkpoint`` loaded (or reused) for this job on a worker
    thread: hashing and loading never run on the event loop."""
    if model is not None:
        return state.registry.get(model)
    if checkpoint is None:
        raise Unprocessable("no model given", "send `model` (a loaded name) or `checkpoint` (a file)")
    return await run_in_threadpool(state.registry.for_checkpoint, checkpoint)


async def checked_callback(state: ServiceState, url: str | None) -> str | None:
    """``url`` if the service may call it (the host check resolves DNS: on a worker thread), else 400."""
    if url is None:
        return None
    if state.webhooks is None:
        raise CallbackRefused("this service sends no webhooks", "drop callback_url")
    return await run_in_threadpool(state.webhooks.check_callback, url)


def tags_from_field(raw: str | None) -> dict[str, str]:
    """The multipart ``tags`` field (a JSON object) checked like the JSON body's ``tags``."""
    if raw is None or not raw.strip():
        return {}
    try:
        return _TAGS.validate_python(json.loads(raw))
    except (ValueError, ValidationError) as exc:
        raise Unprocessable(f"form field 'tags' is not valid ({_first_problem(exc)})", _TAG_FIX) from exc


def _first_problem(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        error = exc.errors()[0]
        return f"{'.'.join(map(str, error['loc'])) or 'tags'}: {error['msg']}"
    return str(exc)


def parse_tag_filter(items: Sequence[str]) -> dict[str, str] | None:
    """``["run:exp7", "epoch:3"]`` as a dict; ``None`` when one key is asked with two values (no job can
    match). A malformed item is a 422 naming it."""
    wanted: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition(":")
        if not sep or not re.fullmatch(TAG_KEY_PATTERN, key) or not re.fullmatch(TAG_VALUE_PATTERN, value):
            raise Unprocessable(
                f"tag filter {item[:80]!r} is not key:value",
                "filter with ?tag=run:exp7 (keys [A-Za-z0-9_.-], values printable); repeat for more tags",
            )
        if wanted.setdefault(key, value) != value:
            return None
    return wanted
