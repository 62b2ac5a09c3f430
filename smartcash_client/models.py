"""Typed views of the service's JSON: a validation result, a job, a run's history, a comparison.

Each keeps the dict it was read from as ``raw``: fields the service adds later stay reachable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

FINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled", "interrupted"})


@dataclass(frozen=True)
class ClassMetrics:
    """One class of a per-class table (ground-truth classes only, like YOLOv5)."""

    id: int
    name: str
    ap50: float
    ap50_95: float
    precision: float | None
    recall: float | None
    instances: int

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClassMetrics:
        return cls(
            id=int(data["id"]),
            name=str(data["name"]),
            ap50=float(data["ap50"]),
            ap50_95=float(data["ap50_95"]),
            precision=_optional_float(data.get("precision")),
            recall=_optional_float(data.get("recall")),
            instances=int(data.get("instances", 0)),
        )


@dataclass(frozen=True)
class MetricsView:
    """mAPs, P/R and per-class rows of one class view (mapped: 8 classes; fine: 17)."""

    map50: float
    map50_95: float
    precision: float | None
    recall: float | None
    per_class: list[ClassMetrics]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetricsView:
        return cls(
            map50=float(data["map50"]),
            map50_95=float(data["map50_95"]),
            precision=_optional_float(data.get("precision")),
            recall=_optional_float(data.get("recall")),
            per_class=[ClassMetrics.from_dict(row) for row in data.get("per_class", [])],
        )


@dataclass(frozen=True)
class ResultWarning:
    code: str
    message: str


@dataclass(frozen=True)
class ValidationResult:
    """A succeeded job's result. Headline numbers are the mapped view (8 classes); ``fine`` is the 17-class
    view; ``speed`` is ms per image by stage; ``cache`` is the service's cache statistics."""

    job_id: str
    map50: float
    map50_95: float
    precision: float | None
    recall: float | None
    per_class: list[ClassMetrics]
    fine: MetricsView
    images: int
    instances: int
    speed: dict[str, float]
    cache: dict[str, dict[str, int]]
    warnings: list[ResultWarning]
    tags: dict[str, str]
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_job(cls, job: Mapping[str, Any]) -> ValidationResult:
        result = job["result"]
        metrics = result["metrics"]
        mapped = MetricsView.from_dict(metrics)
        return cls(
            job_id=str(job["id"]),
            map50=mapped.map50,
            map50_95=mapped.map50_95,
            precision=mapped.precision,
            recall=mapped.recall,
            per_class=mapped.per_class,
            fine=MetricsView.from_dict(metrics["fine"]),
            images=int(result.get("dataset", {}).get("images", 0)),
            instances=int(result.get("dataset", {}).get("instances", 0)),
            speed={name: float(value) for name, value in result.get("speed_ms_per_image", {}).items()},
            cache={name: dict(stats) for name, stats in result.get("cache", {}).items()},
            warnings=[ResultWarning(str(w["code"]), str(w["message"])) for w in result.get("warnings", [])],
            tags=dict(job.get("tags") or {}),
            raw=dict(job),
        )

    def ap50(self, class_name: str) -> float | None:
        """AP50 of a mapped class by name (``None`` when it has no ground truth in the data)."""
        return next((row.ap50 for row in self.per_class if row.name == class_name), None)


@dataclass(frozen=True)
class Job:
    """A job as the service reports it (``result`` set once it succeeded and was read with it)."""

    id: str
    status: str
    done: int
    total: int
    stage: str
    model: str | None
    checkpoint: str | None
    tags: dict[str, str]
    error: dict[str, Any] | None
    map50: float | None
    map50_95: float | None
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Job:
        progress = data.get("progress") or {}
        headline = data.get("headline") or {}
        return cls(
            id=str(data["id"]),
            status=str(data["status"]),
            done=int(progress.get("done", 0)),
            total=int(progress.get("total", 0)),
            stage=str(progress.get("stage", "")),
            model=data.get("model"),
            checkpoint=data.get("checkpoint"),
            tags=dict(data.get("tags") or {}),
            error=data.get("error"),
            map50=_optional_float(headline.get("map50")),
            map50_95=_optional_float(headline.get("map50_95")),
            raw=dict(data),
        )

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def result(self) -> ValidationResult | None:
        return ValidationResult.from_job(self.raw) if self.raw.get("result") else None


@dataclass(frozen=True)
class RunEntry:
    id: str
    epoch: str | None
    status: str
    map50: float | None
    map50_95: float | None
    tags: dict[str, str]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunEntry:
        return cls(
            id=str(data["id"]),
            epoch=data.get("epoch"),
            status=str(data["status"]),
            map50=_optional_float(data.get("map50")),
            map50_95=_optional_float(data.get("map50_95")),
            tags=dict(data.get("tags") or {}),
        )


@dataclass(frozen=True)
class RunHistory:
    """A run's jobs ordered by epoch, and the best succeeded one by ``best_by`` (mAP50-95)."""

    run: str
    jobs: list[RunEntry]
    best: RunEntry | None
    best_by: str
    total: int
    truncated: bool
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunHistory:
        best = data.get("best")
        return cls(
            run=str(data["run"]),
            jobs=[RunEntry.from_dict(entry) for entry in data.get("jobs", [])],
            best=RunEntry.from_dict(best) if best else None,
            best_by=str(data.get("best_by", "map50_95")),
            total=int(data.get("total", 0)),
            truncated=bool(data.get("truncated", False)),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Comparison:
    """The answer of ``POST /v1/comparisons`` (a paired bootstrap of two jobs over the same images), whole
    in ``raw``. ``verdict`` is the headline's: the answer's own top-level ``verdict`` if it has one, else
    that of the mapped view's mAP50-95 delta (``better``, ``worse`` or ``no significant difference``)."""

    baseline: str
    candidate: str
    verdict: str | None
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], baseline: str, candidate: str) -> Comparison:
        verdict = data.get("verdict")
        if not isinstance(verdict, str):
            verdict = (cls.estimate_in(data, "mapped", "map50_95") or {}).get("verdict")
        return cls(baseline, candidate, verdict if isinstance(verdict, str) else None, dict(data))

    def estimate(self, metric: str = "map50_95", view: str = "mapped") -> dict[str, Any] | None:
        """One delta estimate (``baseline``, ``candidate``, ``delta``, ``ci``, ``verdict``) of a view."""
        return self.estimate_in(self.raw, view, metric)

    @staticmethod
    def estimate_in(data: Mapping[str, Any], view: str, metric: str) -> dict[str, Any] | None:
        section = data.get(view)
        item = section.get(metric) if isinstance(section, Mapping) else None
        return dict(item) if isinstance(item, Mapping) else None


@dataclass(frozen=True)
class Event:
    """One server-sent event: ``kind`` is ``progress`` or ``status`` (the final one)."""

    kind: str
    id: str | None
    data: dict[str, Any]


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)
