"""The validation pass: read -> decode + letterbox -> batch -> forward -> decode head -> NMS -> match ->
accumulate -> compute.

CONTRACT (shared by the CLI, the service and the distributed runner):

- ``ValidationParams``: the knobs of one pass.
- ``UploadedSample``: one in-memory sample of an uploaded batch (image bytes + optional YOLO label text).
- ``run_validation(model, source, params, on_progress=None, cancel=None, *, shard=None) -> ValidationResult``
  * ``model``: a ``smartcash_core.checkpoint.LoadedModel``.
  * ``source``: a YOLO dataset directory, a ``data.yaml`` path, or a list of ``UploadedSample``.
  * ``on_progress(done_images, total_images, stage)`` is called after each batch.
  * ``cancel``: a ``threading.Event``; when set, the pass stops between batches with ``Cancelled``.
  * ``shard``: optional global sample indices to validate (distributed runs); see below.
- ``ValidationResult.to_dict()`` is the JSON contract of ``smartcash validate --json`` and of the service:
  ``metrics.map50``, ``metrics.map50_95``, ``metrics.precision``, ``metrics.recall``,
  ``metrics.per_class[]`` (``id``, ``name``, ``ap50``, ``ap50_95``, ``precision``, ``recall``, ``instances``),
  ``metrics.fine`` (same fields for the 17 fine classes), ``metrics.classification``, ``dataset``
  (``images``, ``instances``, ``skipped[]`` of ``{file, line, reason}``), ``speed_ms_per_image``
  (``decode``, ``preprocess``, ``inference``, ``nms``, ``metrics``), ``wall_s``, ``cache``
  (``get_cache_info()``), ``per_image[]`` (``index`` in the dataset, ``order`` in processing, ``file``,
  ``instances``, ``predictions``, ``tp``, ``fp``, ``fn``, denominations), ``params``, ``model``.

Headline numbers (``metrics.map50`` ...) are the mapped view (8 classes); ``metrics.fine`` is the 17-class
view. Per-class lists hold the classes that have ground truth (YOLOv5's convention).

Distributed hook: :func:`collect_validation_state` runs the pass over a ``shard`` of sample indices (global
positions in the dataset index, kept as image ids in the metric state) and returns a
:class:`ValidationState` *before* ``compute()``; ranks merge the states with
:meth:`ValidationState.merge` (which uses the evaluator's ``merge``) and one of them calls
:func:`build_result`. ``run_validation`` is exactly ``build_result(collect_validation_state(...))``.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from copy import deepcopy
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
import torch
from torch import nn

from smartcash_core.cache import get_cache_info
from smartcash_core.errors import Cancelled, DatasetError, SmartCashError

if TYPE_CHECKING:
    from smartcash_core.checkpoint import LoadedModel
    from smartcash_core.classes import ClassTable
    from smartcash_core.data.dataset import DatasetIndex, Sample
    from smartcash_core.data.loader import BatchPlan, LoadedBatch
    from smartcash_core.metrics import DetectionEvaluator
    from smartcash_core.validation_loss import ValidationLoss

Protocol = Literal["yolo", "coco"]
ProgressCallback = Callable[[int, int, str], None]

DECISION_CONF = 0.25  # per-image counts and denomination decisions use YOLOv5's confusion-matrix conf
DECISION_IOU = 0.5
NO_DENOMINATION = "none"
SPEED_STAGES = ("decode", "preprocess", "inference", "nms", "metrics")


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
    compute_loss: bool = False  # also report YOLOv5's validation loss (box, obj, cls) in metrics["loss"]
    fast_decode: bool = False  # JPEG draft decoding from 2x the target: faster cold passes, not bit-exact

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
    # The pass's metric state, kept for plots (PR/F1 curves); not part of the JSON contract.
    evaluator: DetectionEvaluator | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract (everything but ``evaluator``), as plain deep-copied values."""
        names = [item.name for item in fields(self) if item.name != "evaluator"]
        return {name: deepcopy(getattr(self, name)) for name in names}


ValidationSource = str | Path | Sequence[UploadedSample]


# ----------------------------------------------------------------------------------------------------------
# Public entry points
# ----------------------------------------------------------------------------------------------------------


def run_validation(
    model: LoadedModel,
    source: ValidationSource,
    params: ValidationParams,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    *,
    shard: Sequence[int] | None = None,
) -> ValidationResult:
    """Validate ``model`` on ``source``; see the module docstring for the result contract.

    Raises ``DatasetError`` (no usable images), ``Cancelled`` (``cancel`` was set), ``ValueError`` (params).
    Bad images, label files and label lines are skipped and listed in ``result.dataset["skipped"]``.
    """
    started = time.perf_counter()
    state = collect_validation_state(model, source, params, on_progress, cancel, shard=shard)
    return build_result(state, model, params, wall_s=time.perf_counter() - started)


@dataclass
class ClassCounts:
    """Ground-truth instances and images containing each class, fine ``[nc]`` and mapped ``[nm]`` (int64)."""

    fine_to_mapped: np.ndarray
    fine_instances: np.ndarray
    fine_images: np.ndarray
    mapped_instances: np.ndarray
    mapped_images: np.ndarray

    @classmethod
    def empty(cls, class_table: ClassTable) -> ClassCounts:
        fine, mapped = np.zeros(class_table.num_fine, np.int64), np.zeros(class_table.num_mapped, np.int64)
        return cls(class_table.map_array(), fine, fine.copy(), mapped, mapped.copy())

    def add(self, gt_classes: np.ndarray) -> None:
        """Count one image's ground-truth classes ``[M]``."""
        mapped = self.fine_to_mapped[gt_classes]
        self.fine_instances += np.bincount(gt_classes, minlength=len(self.fine_instances))
        self.mapped_instances += np.bincount(mapped, minlength=len(self.mapped_instances))
        self.fine_images[np.unique(gt_classes)] += 1
        self.mapped_images[np.unique(mapped)] += 1

    def merge(self, other: ClassCounts) -> None:
        for name in ("fine_instances", "fine_images", "mapped_instances", "mapped_images"):
            getattr(self, name)[:] += getattr(other, name)


@dataclass
class ValidationState:
    """Everything a pass accumulated, before ``compute()``: mergeable across shards and ranks."""

    evaluator: DetectionEvaluator
    per_image: list[dict[str, Any]]
    skipped: list[dict[str, Any]]
    images: int
    instances: int
    stage_seconds: dict[str, float]
    class_counts: ClassCounts
    loss: ValidationLoss | None = None

    def merge(self, other: ValidationState) -> None:
        """Fold another shard's state into this one (metric states, per-image rows, counts, timings)."""
        self.evaluator.merge(other.evaluator)
        self.per_image = sorted(self.per_image + other.per_image, key=lambda row: row["order"])
        self.skipped += [entry for entry in other.skipped if entry not in self.skipped]
        self.images += other.images
        self.instances += other.instances
        self.class_counts.merge(other.class_counts)
        if self.loss is not None and other.loss is not None:
            self.loss.merge(other.loss)
        for stage, seconds in other.stage_seconds.items():
            self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + seconds


def collect_validation_state(
    model: LoadedModel,
    source: ValidationSource,
    params: ValidationParams,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    *,
    shard: Sequence[int] | None = None,
) -> ValidationState:
    """Run the pass over ``source`` (or the ``shard`` of its sample indices) without computing metrics."""
    from smartcash_core.data.loader import EXACT_DRAFT, FAST_DRAFT, BatchLoader

    _check_params(params)
    index = load_source(source, params.split, model.class_table.num_fine)
    full_plans = plan_batches(index, params, model.stride)
    plans = _shard_plans(full_plans, shard, len(index.samples))
    samples = [(ref.index, index.samples[ref.index]) for plan in plans for ref in plan.refs]
    skipped = [entry.to_dict() for entry in index.report]
    total = len(samples)
    runner = _BatchRunner(model, params, samples, processing_order(full_plans))
    draft = FAST_DRAFT if params.fast_decode else EXACT_DRAFT
    pin_memory = runner.device.type == "cuda"
    with BatchLoader(plans, params.imgsz, params.workers, pin_memory=pin_memory, draft=draft) as loader:
        for batch in _batches_until_cancelled(loader, cancel, runner.seconds):
            skipped += [{"file": ref.name, "line": None, "reason": why} for ref, why in batch.failures]
            runner.process(batch)
            if on_progress is not None:
                on_progress(runner.images_seen, total, "validate")
    return ValidationState(
        evaluator=runner.evaluator,
        per_image=runner.per_image,
        skipped=skipped,
        images=len(runner.per_image),
        instances=sum(row["instances"] for row in runner.per_image),
        stage_seconds=runner.seconds,
        class_counts=runner.class_counts,
        loss=runner.loss,
    )


def build_result(
    state: ValidationState, model: LoadedModel, params: ValidationParams, wall_s: float
) -> ValidationResult:
    """Compute metrics from a (possibly merged) state and assemble the JSON-ready result."""
    with _timed(state.stage_seconds, "metrics"):
        computed = state.evaluator.compute()
        metrics = summarize_metrics(computed, model.class_table, params.protocol, state.class_counts)
        metrics["classification"] = denomination_metrics(state.per_image, model.class_table)
        if state.loss is not None:
            metrics["loss"] = state.loss.summary()
        per_image = with_match_counts(state.per_image, state.evaluator)
    images = max(state.images, 1)
    return ValidationResult(
        metrics=metrics,
        dataset={"images": state.images, "instances": state.instances, "skipped": state.skipped},
        speed_ms_per_image=_speed(state.stage_seconds, images),
        wall_s=wall_s,
        cache=get_cache_info(),
        per_image=per_image,
        params=params.to_dict(),
        model=_model_summary(model),
        evaluator=state.evaluator,
    )


def _speed(stage_seconds: dict[str, float], images: int) -> dict[str, float]:
    """Milliseconds per image for each stage; ``loader_wait``: time the forward pass waited on decoding."""
    stages = (*SPEED_STAGES, "loader_wait", *(["loss"] if "loss" in stage_seconds else []))
    return {stage: 1000 * stage_seconds.get(stage, 0.0) / images for stage in stages}


# ----------------------------------------------------------------------------------------------------------
# Read
# ----------------------------------------------------------------------------------------------------------


def load_source(source: ValidationSource, split: str, num_classes: int) -> DatasetIndex:
    """A dataset directory / ``data.yaml`` path, or uploaded samples, as a checked ``DatasetIndex``."""
    from smartcash_core.data.dataset import load_uploaded_samples, load_yolo_dataset

    if isinstance(source, (str, Path)):
        return load_yolo_dataset(source, split=split, num_classes=num_classes)
    if not source:
        raise DatasetError("the upload holds no samples")
    return load_uploaded_samples(list(source), num_classes=num_classes)


def plan_batches(index: DatasetIndex, params: ValidationParams, stride: int) -> list[BatchPlan]:
    """The batches of a full single-process pass, in processing order (YOLOv5 rectangular order).

    ``[ref.index for ref in plan.refs]`` gives each batch's global sample indices: a distributed runner
    hands each rank a contiguous run of whole batches as its ``shard``, so every rank's batches (images,
    shapes, padding) are those of the single-process run.
    """
    from smartcash_core.data.loader import ImageRef, rect_batch_plans

    refs = []
    for position, sample in enumerate(index.samples):
        height, width = sample.shape or (0, 0)
        refs.append(ImageRef(position, sample.name, sample.image_path, sample.data, width, height))
    return rect_batch_plans(refs, params.imgsz, params.batch_size, stride, params.rect)


def processing_order(plans: Sequence[BatchPlan]) -> dict[int, int]:
    """Sample index -> position in the full pass's processing order (the metric state's image id).

    YOLOv5's val.py concatenates predictions in the order its (rectangular) loader yields images, and its
    non-stable ``argsort`` decides score ties by that order; keying images by this position reproduces it,
    and shards of contiguous batches keep the same global ids.
    """
    refs = (ref for plan in plans for ref in plan.refs)
    return {ref.index: position for position, ref in enumerate(refs)}


def _shard_plans(plans: list[BatchPlan], shard: Sequence[int] | None, count: int) -> list[BatchPlan]:
    """Keep only the shard's images; each keeps its batch shape from the full pass."""
    if shard is None:
        return plans
    wanted = set(shard)
    bad = sorted(position for position in wanted if not 0 <= position < count)
    if bad:
        raise ValueError(f"shard indices {bad[:5]} are outside the dataset (0..{count - 1})")
    kept = [replace(plan, refs=tuple(ref for ref in plan.refs if ref.index in wanted)) for plan in plans]
    return [plan for plan in kept if plan.refs]


def _check_params(params: ValidationParams) -> None:
    if params.imgsz < 32 or params.batch_size < 1 or params.max_det < 1 or params.workers < 0:
        raise ValueError(
            f"invalid params: imgsz >= 32, batch_size >= 1, max_det >= 1, workers >= 0 are required "
            f"(got imgsz={params.imgsz}, batch_size={params.batch_size}, max_det={params.max_det}, "
            f"workers={params.workers})"
        )
    if params.protocol not in ("yolo", "coco"):
        raise ValueError(f"protocol must be 'yolo' or 'coco', got {params.protocol!r}")


def _batches_until_cancelled(
    loader: Iterable[LoadedBatch], cancel: threading.Event | None, seconds: dict[str, float]
) -> Iterator[LoadedBatch]:
    """Yield batches, timing the wait for each (``loader_wait``); check ``cancel`` between batches."""
    batches = iter(loader)
    while True:
        if cancel is not None and cancel.is_set():
            raise Cancelled("validation cancelled between batches")
        with _timed(seconds, "loader_wait"):
            batch = next(batches, None)
        if batch is None:
            return
        yield batch


# ----------------------------------------------------------------------------------------------------------
# Forward, NMS, accumulate
# ----------------------------------------------------------------------------------------------------------


@contextmanager
def _timed(seconds: dict[str, float], stage: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - started


_FUSED: weakref.WeakKeyDictionary[nn.Module, nn.Module] = weakref.WeakKeyDictionary()
_FUSED_LOCK = threading.Lock()


def uses_channels_last(device: torch.device) -> bool:
    """Whether the forward pass runs channels-last (NHWC) on ``device``.

    CPU only: measured on fused yolov5n/s at imgsz 320/640, batch 16 (2 threads), NHWC took 0.61-0.70x
    the NCHW time (median of 6 interleaved pairs per case, every pair faster). CUDA is left NCHW until
    measured there.
    """
    return device.type == "cpu"


def network_inputs(images: torch.Tensor, device: torch.device, half: bool = False) -> torch.Tensor:
    """A uint8 batch ``[B, 3, H, W]`` as the network's float input in [0, 1], on ``device``.

    The layout change to channels-last happens on the uint8 batch (4x fewer bytes); ``float()`` keeps it.
    """
    inputs = images.to(device, non_blocking=True)
    if uses_channels_last(device):
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    return (inputs.half() if half else inputs.float()) / 255


def inference_network(model: LoadedModel) -> nn.Module:
    """An eval-mode copy of the model with Conv+BN fused (channels-last where that helps), made once per
    loaded model.

    A copy, because the loaded model stays unfused: it can still be saved, and other users see it as loaded.
    """
    with _FUSED_LOCK:
        network = _FUSED.get(model.model)
        if network is None:
            network = deepcopy(model.model)
            fuse = getattr(network, "fuse", None)
            if callable(fuse) and not getattr(network, "fused", False):
                fuse()
            network.eval()
            if uses_channels_last(_model_device(model)):
                network = network.to(memory_format=torch.channels_last)
            _FUSED[model.model] = network
    return network


def _validation_loss(model: LoadedModel, params: ValidationParams) -> ValidationLoss | None:
    """The loss meter when ``params.compute_loss`` asks for it (it reads anchors from the Detect head)."""
    from smartcash_core.validation_loss import ValidationLoss

    return ValidationLoss.for_model(model.model, params.imgsz) if params.compute_loss else None


class _BatchRunner:
    """Per-batch work of the pass: forward, NMS, rescale, metric update, per-image rows."""

    def __init__(
        self,
        model: LoadedModel,
        params: ValidationParams,
        samples: Sequence[tuple[int, Sample]],
        order: dict[int, int],
    ):
        from smartcash_core.metrics import DetectionEvaluator

        self.params = params
        self.device = _model_device(model)
        self.half = params.half and self.device.type == "cuda"
        self.network = inference_network(model)
        if self.half:
            self.network = deepcopy(self.network).half()
        self.labels = {position: sample.labels for position, sample in samples}
        self.names = {position: sample.name for position, sample in samples}
        self.order = order
        self.evaluator = DetectionEvaluator(
            num_classes=model.class_table.num_fine, protocol=params.protocol, class_table=model.class_table
        )
        self.whole_classes = whole_class_ids(model.class_table)
        self.fine_to_mapped = model.class_table.map_array()
        self.per_image: list[dict[str, Any]] = []
        self.class_counts = ClassCounts.empty(model.class_table)
        self.seconds: dict[str, float] = {}
        self.images_seen = 0
        self.loss = _validation_loss(model, params)

    def process(self, batch: LoadedBatch) -> None:
        self.seconds["decode"] = self.seconds.get("decode", 0.0) + batch.decode_s + batch.letterbox_s
        self.images_seen += len(batch.metas) + len(batch.failures)
        if not batch.metas:
            return
        with _timed(self.seconds, "preprocess"):
            inputs = network_inputs(batch.images, self.device, self.half)
        with _timed(self.seconds, "inference"), torch.inference_mode():
            raw = self.network(inputs)
            decoded = raw[0] if isinstance(raw, (tuple, list)) else raw
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)  # so the time lands in this stage, not in NMS
        if self.loss is not None:
            self._add_loss(batch, raw[1], (int(inputs.shape[2]), int(inputs.shape[3])))
        with _timed(self.seconds, "nms"):
            detections = self._nms(decoded.float())
        with _timed(self.seconds, "metrics"):
            self._accumulate(batch, detections)

    def _add_loss(self, batch: LoadedBatch, raw: Sequence[torch.Tensor], input_hw: tuple[int, int]) -> None:
        from smartcash_core.validation_loss import letterboxed_targets

        if self.loss is None:
            return
        with _timed(self.seconds, "loss"), torch.inference_mode():
            self.loss.update(raw, letterboxed_targets(batch.metas, self.labels, input_hw))

    def _nms(self, decoded: torch.Tensor) -> list[torch.Tensor]:
        from smartcash_core.ops.nms import non_max_suppression

        params = self.params
        return non_max_suppression(
            decoded,
            params.conf_thres,
            params.iou_thres,
            multi_label=params.multi_label,
            max_det=params.max_det,
        )

    def _accumulate(self, batch: LoadedBatch, detections: list[torch.Tensor]) -> None:
        from smartcash_core.ops.boxes import scale_boxes_to_original, xywhn2xyxy

        columns: tuple[list[torch.Tensor], ...] = ([], [], [], [], [])
        for meta, det in zip(batch.metas, detections, strict=True):
            position = meta.ref.index
            height, width = meta.original_hw
            boxes = scale_boxes_to_original(det[:, :4], meta.gain, meta.pad, meta.original_hw).cpu()
            scores, classes = det[:, 4].cpu(), det[:, 5].cpu().long()
            labels = torch.from_numpy(self.labels[position])
            gt_boxes = xywhn2xyxy(labels[:, 1:5], width, height)
            gt_classes = labels[:, 0].long()
            for column, value in zip(columns, (boxes, scores, classes, gt_boxes, gt_classes), strict=True):
                column.append(value)
            self.class_counts.add(gt_classes.numpy())
            # tp/fp/fn are filled in by build_result from the evaluator (after any shard merge)
            row = {
                "index": position,
                "order": self.order[position],
                "file": self.names[position],
                "instances": len(gt_classes),
            }
            row.update(self._denominations(boxes, scores, classes, gt_boxes, gt_classes))
            self.per_image.append(row)
        image_ids = [self.order[meta.ref.index] for meta in batch.metas]  # global: shards merge like one pass
        self.evaluator.update_batch(*columns, image_ids=image_ids)

    def _denominations(
        self,
        boxes: torch.Tensor,
        scores: torch.Tensor,
        classes: torch.Tensor,
        gt_boxes: torch.Tensor,
        gt_classes: torch.Tensor,
    ) -> dict[str, int | None]:
        """Mapped id of the largest true ``*_whole`` box and of the most confident predicted one (or None)."""
        true_id = _largest_whole(gt_boxes, gt_classes, self.whole_classes)
        confident = scores >= DECISION_CONF
        predicted_id = _most_confident_whole(scores[confident], classes[confident], self.whole_classes)
        return {
            "true_denomination": None if true_id is None else int(self.fine_to_mapped[true_id]),
            "predicted_denomination": None
            if predicted_id is None
            else int(self.fine_to_mapped[predicted_id]),
        }


def _model_device(model: LoadedModel) -> torch.device:
    try:
        return next(model.model.parameters()).device
    except StopIteration:
        return torch.device(model.device)


# ----------------------------------------------------------------------------------------------------------
# Per-image rows and image-level denomination classification
# ----------------------------------------------------------------------------------------------------------


def whole_class_ids(class_table: ClassTable) -> np.ndarray:
    """Fine ids of the ``*_whole`` classes (whole banknotes), which decide an image's denomination."""
    return np.asarray(
        [i for i, name in enumerate(class_table.fine_names) if name.endswith("_whole")], np.int64
    )


def with_match_counts(
    per_image: Sequence[dict[str, Any]], evaluator: DetectionEvaluator
) -> list[dict[str, Any]]:
    """Per-image rows with ``predictions``, ``tp``, ``fp``, ``fn`` at IoU 0.5 among predictions with score
    >= 0.25 (fine classes), from ``evaluator.per_image_summary``.

    The counts are the protocol's own match decisions, so they add up to the true positives behind its
    precision and recall at that confidence. Under ``yolo`` that is YOLOv5's ``process_batch`` rule: all
    predictions (down to ``conf_thres``) are matched by IoU, so a lower-confidence prediction that overlaps a
    ground truth more takes it from a confident one, which then counts as a false positive. Rows keep their
    order; the input rows are not modified.
    """
    summary = evaluator.per_image_summary(iou=DECISION_IOU, conf=DECISION_CONF)
    slot = {int(image_id): position for position, image_id in enumerate(summary["image_id"])}
    rows = []
    for row in per_image:
        position = slot.get(int(row["order"]))
        if position is None:
            raise SmartCashError(f"image {row['file']} (index {row['index']}) is not in the metric state")
        counts = {
            "instances": int(summary["num_ground_truth"][position]),
            "predictions": int(summary["num_predictions"][position]),
            "tp": int(summary["tp"][position]),
            "fp": int(summary["fp"][position]),
            "fn": int(summary["fn"][position]),
        }
        identity = {key: row[key] for key in ("index", "order", "file")}
        rest = {key: value for key, value in row.items() if key not in counts and key not in identity}
        rows.append({**identity, **counts, **rest})
    return rows


def _largest_whole(gt_boxes: torch.Tensor, gt_classes: torch.Tensor, whole: np.ndarray) -> int | None:
    is_whole = torch.from_numpy(np.isin(gt_classes.numpy(), whole))
    if not bool(is_whole.any()):
        return None
    areas = (gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1])
    areas = torch.where(is_whole, areas, torch.full_like(areas, -1.0))
    return int(gt_classes[int(areas.argmax())])


def _most_confident_whole(scores: torch.Tensor, classes: torch.Tensor, whole: np.ndarray) -> int | None:
    is_whole = torch.from_numpy(np.isin(classes.numpy(), whole))
    if not bool(is_whole.any()):
        return None
    return int(classes[is_whole][int(scores[is_whole].argmax())])


def denomination_metrics(per_image: Sequence[dict[str, Any]], class_table: ClassTable) -> dict[str, Any]:
    """Image-level denomination classification: accuracy, macro P/R/F1, confusion matrix.

    Labels are the mapped denominations reachable from ``*_whole`` classes plus ``none``; the matrix rows are
    true labels, columns predicted ones. Macro averages run over labels that occur as truth or prediction.
    """
    mapped_ids = sorted({int(class_table.fine_to_mapped[i]) for i in whole_class_ids(class_table)})
    labels = [class_table.mapped_names[i] for i in mapped_ids] + [NO_DENOMINATION]
    slot = {mapped: position for position, mapped in enumerate(mapped_ids)}
    none_slot = len(mapped_ids)
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for row in per_image:
        true_id, predicted_id = row["true_denomination"], row["predicted_denomination"]
        true_slot = none_slot if true_id is None else slot[true_id]
        predicted_slot = none_slot if predicted_id is None else slot[predicted_id]
        matrix[true_slot, predicted_slot] += 1
    return _classification_scores(matrix, labels)


def _classification_scores(matrix: np.ndarray, labels: list[str]) -> dict[str, Any]:
    total = int(matrix.sum())
    correct = np.diag(matrix).astype(np.float64)
    predicted, actual = matrix.sum(0).astype(np.float64), matrix.sum(1).astype(np.float64)
    present = (predicted + actual) > 0
    precision = np.divide(correct, predicted, out=np.zeros_like(correct), where=predicted > 0)
    recall = np.divide(correct, actual, out=np.zeros_like(correct), where=actual > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(correct), where=denominator > 0)
    return {
        "images": total,
        "accuracy": float(correct.sum() / total) if total else 0.0,
        "macro_precision": float(precision[present].mean()) if present.any() else 0.0,
        "macro_recall": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "labels": labels,
        "confusion_matrix": matrix.tolist(),
        "decision_conf": DECISION_CONF,
    }


# ----------------------------------------------------------------------------------------------------------
# Metric summaries
# ----------------------------------------------------------------------------------------------------------


def summarize_metrics(
    computed: Any, class_table: ClassTable, protocol: str, counts: ClassCounts
) -> dict[str, Any]:
    """The evaluator's mapped and fine views as the JSON contract (headline = mapped view)."""
    if computed.mapped is None:
        raise SmartCashError("the metrics engine returned no mapped view; pass the class table to it")
    mapped = view_summary(
        computed.mapped, class_table.mapped_names, counts.mapped_instances, counts.mapped_images
    )
    fine = view_summary(computed, class_table.fine_names, counts.fine_instances, counts.fine_images)
    return {"protocol": protocol, **mapped, "fine": fine}


def view_summary(
    view: Any, names: Sequence[str], instances: np.ndarray, images: np.ndarray
) -> dict[str, Any]:
    """``map50``, ``map50_95``, ``precision``, ``recall`` and ``per_class[]`` of one metrics view.

    ``precision``/``recall`` are None under the ``coco`` protocol (COCOeval reports none); ``coco_stats``
    (the 12 ``COCOeval.stats``) is added there instead.
    """
    classes = [int(c) for c in np.asarray(view.classes).reshape(-1)]
    ap = np.asarray(view.ap, dtype=np.float64).reshape(len(classes), -1)
    precision = None if view.precision is None else np.asarray(view.precision, np.float64).reshape(-1)
    recall = None if view.recall is None else np.asarray(view.recall, np.float64).reshape(-1)
    per_class = [
        {
            "id": class_id,
            "name": names[class_id] if class_id < len(names) else str(class_id),
            "ap50": float(ap[row, 0]),
            "ap50_95": float(ap[row].mean()),
            "precision": None if precision is None else float(precision[row]),
            "recall": None if recall is None else float(recall[row]),
            "instances": int(instances[class_id]),
            "images": int(images[class_id]),
        }
        for row, class_id in enumerate(classes)
    ]
    summary: dict[str, Any] = {
        "map50": float(view.map50),
        "map50_95": float(view.map50_95),
        "precision": _mean_or_none(precision),
        "recall": _mean_or_none(recall),
        "per_class": per_class,
    }
    if view.coco_stats is not None:
        summary["coco_stats"] = [float(value) for value in np.asarray(view.coco_stats).reshape(-1)]
    return summary


def _mean_or_none(values: np.ndarray | None) -> float | None:
    if values is None:
        return None
    return float(values.mean()) if len(values) else 0.0


def _model_summary(model: LoadedModel) -> dict[str, Any]:
    return {
        "source": str(model.source),
        "sha256": model.sha256,
        "imgsz": model.imgsz,
        "stride": model.stride,
        "num_classes": model.num_classes,
        "num_params": model.num_params,
        "device": str(_model_device(model)),
    }
