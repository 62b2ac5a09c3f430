"""The contract of a validation pass: what goes in (parameters, source) and what comes out (the result).

Shared by the CLI, the service and the distributed runner. No torch here, so the service's schemas and the
dataset reader can name these types without importing the pass.

``ValidationResult.to_dict()`` is the JSON contract of ``smartcash validate --json`` and of the service:
``metrics.map50``, ``metrics.map50_95``, ``metrics.precision``, ``metrics.recall``,
``metrics.per_class[]`` (``id``, ``name``, ``ap50``, ``ap50_95``, ``precision``, ``recall``, ``instances``,
``images``), ``metrics.fine`` (same fields for the 17 fine classes), ``metrics.classification``
(image-level denomination), ``metrics.loss`` (with ``compute_loss``: ``box``, ``obj``, ``cls``, ``total``
and the ``gains`` used), ``dataset`` (``images``,
``instances``, ``skipped[]`` of ``{file, line, reason}``), ``speed_ms_per_image`` (``decode``,
``preprocess``, ``inference``, ``nms``, ``metrics``, ``loader_wait``, and ``loss`` when computed),
``wall_s``, ``cache`` (``get_cache_info()``: process-wide totals), ``cache_job`` (this pass's own use of
each cache: ``hits``, ``misses``, ``hit_bytes`` served from it, ``stored_bytes`` added), ``per_image[]``
(``index`` in the dataset, ``order`` in processing, ``file``, ``instances``, ``predictions``, ``tp``,
``fp``, ``fn``, ``true_denomination``, ``predicted_denomination``), ``params`` (as used: ``imgsz`` is
the resolved size), ``model``, ``warnings[]`` (``{code, message}``).

Headline numbers (``metrics.map50`` ...) are the mapped view (8 classes); ``metrics.fine`` is the 17-class
view. Per-class lists hold the classes that have ground truth (YOLOv5's convention).

Images without labels (no label file, or an empty one) are background images: no ground truth, and every
prediction on them is a false positive of its class, as in YOLOv5's val.py. When no validated image has any
ground truth, nothing can be measured: ``map50``, ``map50_95``, ``precision`` and ``recall`` are ``null``
and ``per_class`` is ``[]``, in the headline and in ``metrics.fine`` (``coco_stats`` is ``null`` under
``coco``); ``dataset.instances`` is 0, ``per_image`` still lists every image with its predictions (all
``fp``), ``metrics.classification`` is still computed (true denomination ``none``), and ``warnings`` holds
one ``no_labels`` entry saying where the label files were looked for (paths relative to the dataset root).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from copy import deepcopy
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from smartcash_core.errors import InvalidParamsError

if TYPE_CHECKING:
    from smartcash_core.metrics import DetectionEvaluator

Protocol = Literal["yolo", "coco"]
Precision = Literal["fp32", "bf16", "fp16"]
ProgressCallback = Callable[[int, int, str], None]
"""``on_progress(done_images, total_images, stage)``, called after each batch."""

SPEED_STAGES = ("decode", "preprocess", "inference", "nms", "metrics")
"""Stages every result reports in ``speed_ms_per_image`` (then ``loader_wait``, and ``loss`` if timed)."""

DECISION_CONF = 0.25  # per-image counts and denomination decisions use YOLOv5's confusion-matrix conf
DECISION_IOU = 0.5


class UploadedSample(NamedTuple):
    """One uploaded image with its YOLO label text (``None``: a background image)."""

    name: str
    image: bytes
    labels: str | None


ValidationSource = str | Path | Sequence[UploadedSample]
"""A YOLO dataset directory, a ``data.yaml`` path, or the samples of an uploaded batch."""


@dataclass(frozen=True)
class ParamSpec:
    """How one :class:`ValidationParams` field is offered and bounded, declared once beside the field.

    The CLI flags (``smartcash validate``) and the service's request schema (``params`` of a validation) are
    generated from these; :func:`check_params` enforces the bounds for every caller, the library included.
    """

    help: str
    flag: str | None = None  # CLI option; a bool whose default is True gets ``--no-<flag>`` instead
    ge: float | None = None
    le: float | None = None
    choices: tuple[str, ...] | None = None
    in_request: bool = True  # part of the service's ``params`` object (device and split come from elsewhere)
    default_help: str | None = None  # how a ``None`` default is chosen, shown as the default in help texts


def _param(default: Any, spec: ParamSpec) -> Any:
    return field(default=default, metadata={"spec": spec})


@dataclass(frozen=True)
class ValidationParams:
    """The knobs of one pass. Adding a parameter = adding one field here with its :class:`ParamSpec`."""

    imgsz: int | None = _param(
        None,
        ParamSpec(
            "letterbox size in pixels, rounded up to a multiple of the model's stride",
            "imgsz",
            ge=32,
            le=4096,
            default_help="the checkpoint's training size, 640 when it records none",
        ),
    )
    batch_size: int = _param(16, ParamSpec("images per forward pass", "batch", ge=1, le=512))
    conf_thres: float = _param(0.001, ParamSpec("confidence threshold of NMS", "conf", ge=0.0, le=1.0))
    iou_thres: float = _param(0.6, ParamSpec("IoU threshold of NMS", "iou", ge=0.0, le=1.0))
    max_det: int = _param(300, ParamSpec("detections kept per image", "max-det", ge=1, le=30000))
    multi_label: bool = _param(True, ParamSpec("NMS keeps every class above conf per box (YOLOv5 val)"))
    rect: bool = _param(True, ParamSpec("rectangular batches as in YOLOv5 val.py (off: square)", "rect"))
    protocol: Protocol = _param(  # noqa: RUF009 (returns a dataclass field, like field())
        "yolo", ParamSpec("metrics: YOLOv5 val.py or pycocotools", "protocol", choices=("yolo", "coco"))
    )
    device: str = _param("auto", ParamSpec("auto, cpu, cuda, cuda:N or mps", "device", in_request=False))
    precision: Precision = _param(  # noqa: RUF009
        "fp32",
        ParamSpec(
            "inference precision: fp32 (exact), bf16 (CPUs with avx512_bf16/amx_bf16, or CUDA; not exact), "
            "fp16 (CUDA only)",
            "precision",
            choices=("fp32", "bf16", "fp16"),
        ),
    )
    half: bool = _param(
        False,
        ParamSpec("deprecated alias of precision fp16 (CUDA only; elsewhere ignored with a warning)", "half"),
    )
    workers: int = _param(2, ParamSpec("background decode workers", "workers", ge=0, le=32))
    split: str = _param("val", ParamSpec("dataset split to validate", "split", in_request=False))
    compute_loss: bool = _param(
        False, ParamSpec("also report YOLOv5's validation loss (box, obj, cls) in metrics.loss", "loss")
    )
    fast_decode: bool = _param(
        False,
        ParamSpec("decode large JPEGs DCT-scaled from 2x the target: faster, not bit-exact", "fast-decode"),
    )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def param_specs() -> dict[str, ParamSpec]:
    """Every parameter's spec, in declaration order."""
    return {item.name: item.metadata["spec"] for item in fields(ValidationParams)}


def check_params(params: ValidationParams) -> None:
    """Raise :class:`InvalidParamsError` (a ``ValueError``) naming the parameter, its value and its bounds
    when ``params`` breaks one."""
    for name, spec in param_specs().items():
        value = getattr(params, name)
        if value is None and spec.default_help is not None:  # resolved by the pass (see ``default_help``)
            continue
        if spec.choices is not None and value not in spec.choices:
            raise InvalidParamsError(f"{name} must be one of {', '.join(spec.choices)}; got {value!r}")
        if spec.ge is not None and value < spec.ge:
            raise InvalidParamsError(f"{name} must be at least {spec.ge:g}{_upper(spec)}; got {value!r}")
        if spec.le is not None and value > spec.le:
            raise InvalidParamsError(f"{name} must be at most {spec.le:g}; got {value!r}")


def _upper(spec: ParamSpec) -> str:
    return "" if spec.le is None else f" and at most {spec.le:g}"


class ValidationWarning(NamedTuple):
    """Something the caller should know about a pass that still succeeded: ``code`` is a stable snake_case
    identifier for programs, ``message`` says what happened and what to do, for people."""

    code: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclass
class ValidationResult:
    metrics: dict[str, Any]
    dataset: dict[str, Any]
    speed_ms_per_image: dict[str, float]
    wall_s: float
    cache: dict[str, dict[str, int]]
    per_image: list[dict[str, Any]] = field(default_factory=list)
    cache_job: dict[str, dict[str, int]] = field(default_factory=dict)  # this pass's own cache use
    params: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    warnings: list[dict[str, str]] = field(default_factory=list)  # ValidationWarning.to_dict() entries
    # The pass's metric state, kept for plots (PR/F1 curves); not part of the JSON contract.
    evaluator: DetectionEvaluator | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract (everything but ``evaluator``), as plain deep-copied values."""
        names = [item.name for item in fields(self) if item.name != "evaluator"]
        return {name: deepcopy(getattr(self, name)) for name in names}
