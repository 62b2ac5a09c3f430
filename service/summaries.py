"""The short forms of a job that travel without the full result: the final SSE event, webhook payloads and
run history all carry the same headline (mapped view), so a pipeline needs no extra GET for its number."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from service.store import JobRecord


def headline_metrics(result: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``{map50, map50_95, per_class_ap50: {mapped class name: AP50}}`` of a result; ``None`` without one."""
    metrics = (result or {}).get("metrics")
    if not isinstance(metrics, Mapping):
        return None
    per_class = metrics.get("per_class") or []
    return {
        "map50": metrics.get("map50"),
        "map50_95": metrics.get("map50_95"),
        "per_class_ap50": {
            str(entry.get("name")): entry.get("ap50") for entry in per_class if isinstance(entry, Mapping)
        },
    }


def job_links(job_id: str, base_url: str = "") -> dict[str, str]:
    """Where the job is served (relative, or absolute under ``base_url``)."""
    base = f"{base_url.rstrip('/')}/v1/validations/{job_id}"
    return {"self": base, "events": f"{base}/events", "cancel": f"{base}/cancel", "images": f"{base}/images"}


def run_link(tags: Mapping[str, str], base_url: str = "") -> str | None:
    run = tags.get("run")
    return None if run is None else f"{base_url.rstrip('/')}/v1/runs/{quote(run, safe='')}"


def record_summary(record: JobRecord) -> dict[str, Any]:
    """The job's identity and outcome without its result (times in Unix seconds)."""
    return {
        "id": record.id,
        "status": record.status,
        "model": record.model or None,
        "checkpoint": record.checkpoint,
        "source_kind": record.source_kind,
        "source": record.source,
        "tags": dict(record.tags),
        "created_at": record.created_at,
        "finished_at": record.finished_at,
        "error": record.error,
    }
