"""The validation pass: read -> decode + letterbox -> batch -> forward -> decode head -> NMS -> match ->
accumulate -> compute.

CONTRACT (shared by the CLI, the service and the distributed runner; implementation pending, issue 4):

- ``ValidationParams``: the knobs of one pass.
- ``UploadedSample``: one in-memory sample of an uploaded batch (image bytes + optional YOLO label text).
- ``run_validation(model, source, params, on_progress=None, cancel=None) -> ValidationResult``
  * ``model``: a ``smartcash_core.checkpoint.LoadedModel``.
  * ``source``: a YOLO dataset directory, a ``data.yaml`` path, or a list of ``UploadedSample``.
  * ``on_progress(done_images, total_images, stage)`` is called after each batch.
  * ``cancel``: a ``threading.Event``; when set, the pass stops between batches with ``Cancelled``.
- ``ValidationResult.to_dict()`` is the JSON contract of ``smartcash validate --json`` and of the service:
  ``metrics.map50``, ``metrics.map50_95``, ``metrics.precision``, ``metrics.recall``,
  ``metrics.per_class[]`` (``id``, ``name``, ``ap50``, ``ap50_95``, ``precision``, ``recall``, ``instances``),
  ``metrics.fine`` (same fields for the 17 fine classes), ``metrics.classification``, ``dataset``
  (``images``, ``instances``, ``skipped[]`` of ``{file, line, reason}``), ``speed_ms_per_image``
  (``decode``, ``preprocess``, ``inference``, ``nms``, ``metrics``), ``wall_s``, ``cache``
  (``get_cache_info()``), ``per_image[]``, ``params``, ``model``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

if TYPE_CHECKING:
    from smartcash_core.checkpoint import LoadedModel

Protocol = Literal["yolo", "coco"]
ProgressCallback = Callable[[int, int, str], None]


class UploadedSample(NamedTuple):
    """One uploaded image with its YOLO label text (``None``: a background image)."""

    name: str
    image: bytes
    labels: str | None


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


ValidationSource = str | Path | Sequence[UploadedSample]


def run_validation(
    model: LoadedModel,
    source: ValidationSource,
    params: ValidationParams,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> ValidationResult:
    raise NotImplementedError("run_validation is built in issue 4")
