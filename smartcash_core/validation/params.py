"""The contract of a validation pass: what goes in (parameters, source) and what comes out (the result).

Shared by the CLI, the service and the distributed runner. No torch here, so the service's schemas and the
dataset reader can name these types without importing the pass.

``ValidationResult.to_dict()`` is the JSON contract of ``smartcash validate --json`` and of the service:
``metrics.map50``, ``metrics.map50_95``, ``metrics.precision``, ``metrics.recall``,
``metrics.per_class[]`` (``id``, ``name``, ``ap50``, ``ap50_95``, ``precision``, ``recall``, ``instances``,
``images``), ``metrics.fine`` (same fields for the 17 fine classes), ``metrics.classification``
(image-level denomination), ``metrics.loss`` (with ``compute_loss``), ``dataset`` (``images``,
``instances``, ``skipped[]`` of ``{file, line, reason}``), ``speed_ms_per_image`` (``decode``,
``preprocess``, ``inference``, ``nms``, ``metrics``, ``loader_wait``, and ``loss`` when computed),
``wall_s``, ``cache`` (``get_cache_info()``), ``per_image[]`` (``index`` in the dataset, ``order`` in
processing, ``file``, ``instances``, ``predictions``, ``tp``, ``fp``, ``fn``, ``true_denomination``,
``predicted_denomination``), ``params``, ``model``.

Headline numbers (``metrics.map50`` ...) are the mapped view (8 classes); ``metrics.fine`` is the 17-class
view. Per-class lists hold the classes that have ground truth (YOLOv5's convention).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from copy import deepcopy
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

if TYPE_CHECKING:
    from smartcash_core.metrics import DetectionEvaluator

Protocol = Literal["yolo", "coco"]
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
class ValidationParams:
    imgsz: int = 640
    batch_size: int = 16
    conf_thres: float = 0.001
    iou_thres: float = 0.6
    max_det: int = 300
    multi_label: bool = True
    rect: bool = True
    protocol: Protocol = "yolo"
    device: str = "auto"
    half: bool = False
    workers: int = 2
    split: str = "val"
    compute_loss: bool = False  # also report YOLOv5's validation loss (box, obj, cls) in metrics["loss"]
    fast_decode: bool = False  # JPEG draft decoding from 2x the target: faster cold passes, not bit-exact

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_params(params: ValidationParams) -> None:
    """Raise ``ValueError`` naming every bound a pass needs when ``params`` breaks one."""
    if params.imgsz < 32 or params.batch_size < 1 or params.max_det < 1 or params.workers < 0:
        raise ValueError(
            f"invalid params: imgsz >= 32, batch_size >= 1, max_det >= 1, workers >= 0 are required "
            f"(got imgsz={params.imgsz}, batch_size={params.batch_size}, max_det={params.max_det}, "
            f"workers={params.workers})"
        )
    if params.protocol not in ("yolo", "coco"):
        raise ValueError(f"protocol must be 'yolo' or 'coco', got {params.protocol!r}")


@dataclass
class ValidationResult:
    metrics: dict[str, Any]
    dataset: dict[str, Any]
    speed_ms_per_image: dict[str, float]
    wall_s: float
    cache: dict[str, dict[str, int]]
    per_image: list[dict[str, Any]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    # The pass's metric state, kept for plots (PR/F1 curves); not part of the JSON contract.
    evaluator: DetectionEvaluator | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract (everything but ``evaluator``), as plain deep-copied values."""
        names = [item.name for item in fields(self) if item.name != "evaluator"]
        return {name: deepcopy(getattr(self, name)) for name in names}
