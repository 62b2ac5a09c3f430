"""Wire schemas: what clients send and receive. Internal objects (``ModelEntry``, ``JobRecord``,
``ValidationParams``) are converted here, so the API can stay stable while the library changes.
"""

from __future__ import annotations

import typing
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator
from pydantic_core import PydanticCustomError

from service.example_result import EXAMPLE_RESULT
from service.pipeline_schemas import Headline, NotificationOut, Tags
from service.registry import ModelEntry
from service.store import JobRecord
from service.store.records import ImageSort
from smartcash_core.validation.params import ValidationParams, param_specs

MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
DEVICE_PATTERN = r"^(auto|cpu|mps|cuda(:[0-9]{1,2})?)$"
JOB_ID_PATTERN = r"^[0-9a-f]{32}$"
JobStatusName = Literal["queued", "running", "succeeded", "failed", "cancelling", "cancelled", "interrupted"]

class ErrorDetail(BaseModel):
    code: str = Field(examples=["path_rejected"])
    message: str = Field(examples=["dataset path '../etc' contains '..'"])
    fix: str = Field("", examples=["name a dataset inside the dataset root, without '..'"])


class ErrorResponse(BaseModel):
    """Body of every 4xx/5xx answer."""

    model_config = ConfigDict(extra="allow")
    error: ErrorDetail
    request_id: str | None = None


class Liveness(BaseModel):
    """The process answers; says nothing about models (``/v2/health/ready`` does)."""

    status: Literal["ok"] = Field(examples=["ok"])


class Health(BaseModel):
    status: Literal["ok", "not_ready"] = Field(examples=["ok"])
    models: int = Field(0, description="models loaded")
    workers_alive: bool = Field(False, description="every device worker thread is running")


class StrictBody(BaseModel):
    """A request body that refuses unknown fields with ONE error naming a few of them.

    ``extra="forbid"`` alone reports one error per unknown field: a body of 60k unknown keys cost about a
    second of event loop just to list the errors (issue 11). The check runs before field validation.
    """

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _refuse_unknown_fields(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        known = set(fields) | {field.alias for field in fields.values() if field.alias}
        unknown = [key for key in data if key not in known]
        if unknown:
            shown = ", ".join(repr(str(key)[:40]) for key in unknown[:3])
            more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
            raise PydanticCustomError(
                "unknown_fields",
                "unknown fields {shown}{more} (known: {known})",
                {"shown": shown, "more": more, "known": ", ".join(fields)},
            )
        return data


# -- models ------------------------------------------------------------------------------------------
class ModelLoadRequest(StrictBody):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"name": "demo", "checkpoint": "demo_yolov5n.safetensors", "device": "auto"}]
        },
    )
    name: str = Field(pattern=MODEL_NAME_PATTERN, description="the name jobs refer to")
    checkpoint: str = Field(min_length=1, max_length=1024, description="path relative to the checkpoint root")
    device: str = Field("auto", pattern=DEVICE_PATTERN, description="auto picks CUDA, then MPS, then CPU")


class ClassTableOut(BaseModel):
    fine_names: list[str]
    mapped_names: list[str]
    fine_to_mapped: list[int]


class ModelInfo(BaseModel):
    name: str = Field(examples=["demo"])
    checkpoint: str = Field(examples=["demo_yolov5n.safetensors"])
    device: str = Field(examples=["cpu"])
    sha256: str = Field(description="digest of the weights as the checkpoint reports it")
    file_sha256: str = Field(description="digest of the checkpoint file (the reuse key)")
    imgsz: int = Field(examples=[320])
    stride: int = Field(examples=[32])
    num_classes: int = Field(examples=[17])
    params: int = Field(description="number of parameters", examples=[1_790_000])
    class_table: ClassTableOut
    loaded_at: datetime
    load_seconds: float
    reused: bool = Field(description="true when an already loaded copy of the same bytes was shared")
    ready: bool = True

    @classmethod
    def from_entry(cls, entry: ModelEntry) -> ModelInfo:
        loaded = entry.loaded
        return cls(
            name=entry.name,
            checkpoint=entry.checkpoint,
            device=entry.device,
            sha256=loaded.sha256,
            file_sha256=entry.file_sha256,
            imgsz=loaded.imgsz,
            stride=loaded.stride,
            num_classes=loaded.num_classes,
            params=loaded.num_params,
            class_table=ClassTableOut(**loaded.class_table.to_dict()),
            loaded_at=_timestamp(entry.loaded_at),
            load_seconds=entry.load_seconds,
            reused=entry.reused,
        )


class ModelList(BaseModel):
    models: list[ModelInfo]


class CheckpointFileInfo(BaseModel):
    path: str = Field(description="relative to the checkpoint root: what POST /v1/models takes", examples=[
        "demo_yolov5n.safetensors"])
    size: int = Field(description="bytes", examples=[3627660])
    sha256: str | None = Field(None, description="file digest, known once a model is loaded from it")
    loaded_as: list[str] = Field(description="names of the models loaded from this file", examples=[["demo"]])


class CheckpointList(BaseModel):
    items: list[CheckpointFileInfo]
    truncated: bool = Field(description="true when the root holds more files than were listed")


# -- validations -------------------------------------------------------------------------------------
class _ParamsInBase(StrictBody):
    """Knobs of one validation pass (the device comes from the model, the split from the request)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"imgsz": 320, "batch_size": 16}]}
    )

    def to_params(self, device: str, split: str = "val") -> ValidationParams:
        return ValidationParams(device=device, split=split, **self.model_dump())


def _request_param_fields() -> dict[str, Any]:
    """``ValidationParams`` fields offered in a request, with their bounds and help from ``ParamSpec``."""
    hints = typing.get_type_hints(ValidationParams)
    defaults = ValidationParams()
    offered: dict[str, Any] = {}
    for name, spec in param_specs().items():
        if spec.in_request:
            default = getattr(defaults, name)
            described = f"{spec.help}; default: {spec.default_help}" if spec.default_help else spec.help
            offered[name] = (hints[name], Field(default, ge=spec.ge, le=spec.le, description=described))
    return offered


# Generated from the library's one declaration, so the API, the CLI and the pass cannot disagree.
ValidationParamsIn = create_model(
    "ValidationParamsIn",
    __base__=_ParamsInBase,
    __module__=__name__,
    __doc__=_ParamsInBase.__doc__,
    **_request_param_fields(),
)


class ValidationRequest(StrictBody):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"model": "demo", "dataset": "demo", "split": "val", "params": {"imgsz": 320}},
                {
                    "checkpoint": "demo_yolov5n.safetensors",
                    "dataset": "demo",
                    "tags": {"run": "exp7", "epoch": "12"},
                },
            ]
        },
    )
    model: str | None = Field(None, pattern=MODEL_NAME_PATTERN, description="name of a loaded model")
    checkpoint: str | None = Field(
        None,
        min_length=1,
        max_length=1024,
        description="instead of `model`: a checkpoint file relative to the checkpoint root, loaded for this "
        "job (a loaded model with the same file sha256 is reused); no registration needed",
    )
    dataset: str = Field(min_length=1, max_length=1024, description="YOLO dataset dir or data.yaml, relative")
    split: str = Field("val", pattern=r"^[A-Za-z0-9_-]{1,32}$")
    params: ValidationParamsIn = Field(default_factory=ValidationParamsIn)
    tags: Tags = Field(default_factory=dict)
    callback_url: str | None = Field(
        None,
        min_length=1,
        max_length=2048,
        description="receives a signed POST with the job's summary when it ends (any final status); hosts "
        "must be allowed by SMARTCASH_WEBHOOK_ALLOWED_HOSTS",
    )

    @model_validator(mode="after")
    def _one_model(self) -> ValidationRequest:
        if (self.model is None) == (self.checkpoint is None):
            raise ValueError("give exactly one of `model` (a loaded model's name) or `checkpoint` (a file)")
        return self


class Progress(BaseModel):
    done: int = Field(examples=[8])
    total: int = Field(examples=[16])
    stage: str = Field(examples=["batch"])
    fraction: float = Field(examples=[0.5])


class JobLinks(BaseModel):
    self: str
    events: str
    cancel: str
    images: str


class ValidationJob(BaseModel):
    """A validation job; ``result`` follows the contract of ``smartcash validate --json`` (``per_image``
    is served at ``links.images``, paged)."""

    id: str = Field(examples=["3f2c0a3b6d0e4bb8a1b0c6f0d9e8a7b6"])
    status: JobStatusName
    model: str | None = Field(description="the loaded model's name; null for a checkpoint-in-request job")
    checkpoint: str | None = Field(None, description="the checkpoint file a checkpoint-in-request job names")
    tags: dict[str, str] = Field(default_factory=dict)
    headline: Headline = Field(default_factory=Headline, description="map50 and map50_95 once it succeeded")
    notification: NotificationOut | None = Field(
        None, description="the completion webhook's delivery (GET of one job only)"
    )
    source_kind: Literal["dataset", "upload"]
    source: str
    params: dict[str, Any]
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    progress: Progress
    error: dict[str, Any] | None = None
    replica: str | None = Field(None, description="the replica that runs (or ran) the job")
    result: dict[str, Any] | None = Field(None, examples=[EXAMPLE_RESULT])
    links: JobLinks

    @classmethod
    def from_record(cls, record: JobRecord, include_result: bool = True) -> ValidationJob:
        base = f"/v1/validations/{record.id}"
        fraction = (
            record.done / record.total if record.total else (1.0 if record.status == "succeeded" else 0.0)
        )
        return cls(
            id=record.id,
            status=record.status,
            model=record.model or None,
            checkpoint=record.checkpoint,
            tags=record.tags,
            headline=Headline(map50=record.map50, map50_95=record.map50_95),
            source_kind=record.source_kind,
            source=record.source,
            params=record.params,  # type: ignore[arg-type]
            created_at=_timestamp(record.created_at),
            started_at=_optional_timestamp(record.started_at),
            finished_at=_optional_timestamp(record.finished_at),
            progress=Progress(
                done=record.done,
                total=record.total,
                stage=record.stage,
                fraction=round(min(fraction, 1.0), 4),
            ),
            error=record.error,
            replica=record.owner if record.started_at is not None else None,
            result=record.result if include_result else None,
            links=JobLinks(
                self=base, events=f"{base}/events", cancel=f"{base}/cancel", images=f"{base}/images"
            ),
        )


class ValidationPage(BaseModel):
    items: list[ValidationJob]
    total: int
    offset: int
    limit: int


class PerImagePage(BaseModel):
    items: list[dict[str, Any]] = Field(description="one entry per image, as run_validation reports it")
    total: int = Field(description="rows matching the filters")
    offset: int
    limit: int
    sort: ImageSort = "order"


class PlotInfo(BaseModel):
    name: str = Field(examples=["pr_curve.png"])
    url: str = Field(examples=["/v1/validations/0123456789abcdef0123456789abcdef/plots/pr_curve.png"])


class PlotList(BaseModel):
    """PNG plots of a succeeded job: PR curve, F1 curve, confusion matrices, AP bars."""

    items: list[PlotInfo]


class ProgressEvent(BaseModel):
    """``data`` of each SSE event (events: ``progress``, then one ``status`` with the final state; that one
    also carries ``metrics`` when the job succeeded, and ``error`` when it did not)."""

    id: str
    status: JobStatusName
    done: int
    total: int
    stage: str
    metrics: dict[str, Any] | None = Field(
        None,
        description="final event of a succeeded job: map50, map50_95 and per_class_ap50 "
        "({mapped class name: AP50})",
        examples=[{"map50": 0.91, "map50_95": 0.66, "per_class_ap50": {"1000": 0.95, "feature": 0.8}}],
    )


# -- cache -------------------------------------------------------------------------------------------
class CacheStats(BaseModel):
    hits: int
    misses: int
    evictions: int
    entries: int
    bytes: int
    max_bytes: int


class CacheCleared(BaseModel):
    cleared: list[str] = Field(examples=[["image", "label"]])
    caches: dict[str, CacheStats]


def _timestamp(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def _optional_timestamp(seconds: float | None) -> datetime | None:
    return None if seconds is None else _timestamp(seconds)
