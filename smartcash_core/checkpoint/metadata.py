"""The SmartCash metadata of a native checkpoint as a typed model, checked before anything is built.

``NativeMetadata`` types every field the loader reads (strict: ``"640"`` is not an int, ``true`` is not
1); :func:`validate_metadata` adds the YOLOv5 bounds (``limits``) and checks the architecture in ``yaml``
(:func:`check_architecture`, which also estimates the parameter count). Fields the loader does not read
(``metrics``, ``created``, converter notes) stay free-form and pass through untouched.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from smartcash_core.checkpoint import limits
from smartcash_core.checkpoint.architecture import check_architecture, check_imgsz
from smartcash_core.errors import CheckpointError, CheckpointMetadataError

__all__ = ["FORMAT_VERSION", "LOSS_HYP_KEYS", "REQUIRED_FIELDS", "LossHypFields", "NativeMetadata",
           "loss_hyp_from", "validate_metadata"]

FORMAT_VERSION = 1
REQUIRED_FIELDS = ("yaml", "class_table", "imgsz", "sha256")
_STRIDES = (8.0, 16.0, 32.0, 64.0)


class ClassTableFields(BaseModel):
    """The shape of a class table (``ClassTable.from_dict`` checks names and the mapping itself)."""

    model_config = ConfigDict(strict=True, extra="ignore")

    fine_names: list[str] = Field(min_length=1, max_length=limits.MAX_CLASSES)
    mapped_names: list[str] = Field(min_length=1, max_length=limits.MAX_CLASSES)
    fine_to_mapped: list[int] | dict[str, int] = Field(max_length=limits.MAX_CLASSES)


def _gain(default: float | None = None, *, ge: float = 0.0, le: float = 1000.0) -> Any:
    if default is None:
        return Field(ge=ge, le=le, allow_inf_nan=False)
    return Field(default, ge=ge, le=le, allow_inf_nan=False)


class LossHypFields(BaseModel):
    """YOLOv5 loss hyperparameters as training used them: ``box``/``obj``/``cls`` already scaled for the
    model's levels, classes and training image size (what YOLOv5 keeps as ``model.hyp``)."""

    model_config = ConfigDict(strict=True, extra="ignore")

    box: float = _gain()
    obj: float = _gain()
    cls: float = _gain()
    anchor_t: float = _gain(4.0, ge=1.0, le=100.0)
    cls_pw: float = _gain(1.0)
    obj_pw: float = _gain(1.0)
    fl_gamma: float = _gain(0.0, le=10.0)
    label_smoothing: float = _gain(0.0, le=1.0)


LOSS_HYP_KEYS = tuple(LossHypFields.model_fields)


def loss_hyp_from(raw: Any) -> dict[str, float] | None:
    """The loss fields of a hyperparameter dict (a YOLOv5 ``hyp`` also holds learning rates, augmentation),
    checked; ``None`` when it is not a dict or a loss field is missing or out of bounds (gains unknown)."""
    if not isinstance(raw, dict):
        return None
    try:
        fields = LossHypFields.model_validate({key: raw[key] for key in LOSS_HYP_KEYS if key in raw})
    except ValidationError:
        return None
    return fields.model_dump()


class NativeMetadata(BaseModel):
    """What the native loader reads from the metadata, with types; unknown fields are kept as they are."""

    model_config = ConfigDict(strict=True, extra="allow")

    format_version: int = Field(default=FORMAT_VERSION, ge=1, le=FORMAT_VERSION)
    yaml: dict[str, Any]
    class_table: ClassTableFields
    imgsz: int
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    stride: list[float] | None = Field(default=None, min_length=1, max_length=limits.MAX_DETECT_LEVELS)
    epoch: int | None = None
    phase: int | None = Field(default=None, ge=1, le=2)  # strict: ``true`` is not 1
    dtype: Literal["float32", "float16"] = "float32"
    loss_hyp: LossHypFields | None = None  # the training loss gains (validation loss reuses them)


def validate_metadata(source: str, raw: dict[str, Any], *, max_params: int = limits.MAX_PARAMS) -> int:
    """Check the metadata of ``source`` field by field; returns the model's estimated parameter count.

    Raises ``CheckpointMetadataError`` naming ``source`` and the field, ``CheckpointTooLargeError`` when
    the architecture is over ``max_params``, ``CheckpointError`` for a missing field or a newer format.
    """
    missing = [key for key in REQUIRED_FIELDS if key not in raw]
    if missing:
        raise CheckpointError(f"{source}: metadata missing fields {missing}")
    version = raw.get("format_version", FORMAT_VERSION)
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise CheckpointError(f"{source}: checkpoint format version {version!r} is newer than this library")
    try:
        metadata = NativeMetadata.model_validate(raw)
    except ValidationError as exc:
        raise _metadata_error(source, exc) from None
    params = check_architecture(metadata.yaml, source, prefix="yaml", max_params=max_params)
    stride = _max_stride(source, metadata.stride)
    check_imgsz(metadata.imgsz, stride, source)
    return params


def _max_stride(source: str, stride: list[float] | None) -> int:
    if stride is None:
        return 32
    if any(value not in _STRIDES for value in stride) or stride != sorted(set(stride)):
        raise CheckpointMetadataError(
            f"{source}: stride = {stride}: must be increasing values among {list(_STRIDES)}", field="stride"
        )
    return int(stride[-1])


def _metadata_error(source: str, exc: ValidationError) -> CheckpointMetadataError:
    """The first problem pydantic found, as ``<file>: <field> = <value>: <what is wrong>``."""
    first = exc.errors(include_url=False)[0]
    field = ".".join(str(part) for part in first["loc"]) or "metadata"
    value = repr(first.get("input"))
    value = value if len(value) <= 80 else value[:77] + "..."
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return CheckpointMetadataError(f"{source}: {field} = {value}: {first['msg']}{more}", field=field)
