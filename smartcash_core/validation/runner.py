"""The validation pass: read -> decode + letterbox -> forward -> NMS -> accumulate -> result.

``run_validation(model, source, params, on_progress=None, cancel=None, *, shard=None) -> ValidationResult``

* ``model``: a ``smartcash_core.checkpoint.LoadedModel``.
* ``source``: a YOLO dataset directory, a ``data.yaml`` path, or a list of ``UploadedSample``.
* ``on_progress(done_images, total_images, stage)`` is called after each batch.
* ``cancel``: a ``threading.Event``; when set, the pass stops between batches with ``Cancelled``.
* ``shard``: optional global sample indices to validate (distributed runs); see below.

The result's JSON contract is described in :mod:`smartcash_core.validation.params`.

The loop here knows no metric: every batch becomes one :class:`ProcessedBatch` that each accumulator of
:func:`standard_accumulators` takes in, timed under the accumulator's own stage.

Distributed hook: :func:`collect_validation_state` runs the pass over a ``shard`` of sample indices (global
positions in the dataset index, kept as image ids in the metric state) and returns a
:class:`ValidationState` *before* any result is computed; ranks merge the states (each accumulator by its
declared rules) and one of them calls :func:`build_result`. ``run_validation`` is exactly
``build_result(collect_validation_state(...))``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from smartcash_core.cache import USAGE_FIELDS, get_cache_info, track_cache_usage
from smartcash_core.data.images import EXACT_DRAFT, FAST_DRAFT
from smartcash_core.data.loader import BatchLoader, LoadedBatch
from smartcash_core.errors import Cancelled, MetricStateError
from smartcash_core.validation.accumulators.base import Accumulator, ResultDraft
from smartcash_core.validation.accumulators.standard import standard_accumulators
from smartcash_core.validation.detections import processed_batch, suppress
from smartcash_core.validation.imgsz import resolve_imgsz
from smartcash_core.validation.inference import Forward
from smartcash_core.validation.params import (
    ProgressCallback,
    ValidationParams,
    ValidationResult,
    ValidationSource,
    ValidationWarning,
    check_params,
)
from smartcash_core.validation.source import PassPlan, plan_pass
from smartcash_core.validation.summary import model_summary
from smartcash_core.validation.timing import speed_ms_per_image, timed

if TYPE_CHECKING:
    from smartcash_core.checkpoint import LoadedModel


def run_validation(
    model: LoadedModel,
    source: ValidationSource,
    params: ValidationParams,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    *,
    shard: Sequence[int] | None = None,
) -> ValidationResult:
    """Validate ``model`` on ``source``; see the module docstring for the arguments.

    Raises ``DatasetError`` (no usable images), ``Cancelled`` (``cancel`` was set), ``ValueError`` (params).
    Bad images, label files and label lines are skipped and listed in ``result.dataset["skipped"]``.
    """
    started = time.perf_counter()
    state = collect_validation_state(model, source, params, on_progress, cancel, shard=shard)
    return build_result(state, model, params, wall_s=time.perf_counter() - started)


@dataclass
class PassLog:
    """The pass's own bookkeeping beside the accumulators: images and instances validated, skipped files
    and lines (``{file, line, reason}``), seconds per stage, warnings, and its own cache use."""

    images: int = 0
    instances: int = 0
    skipped: list[dict[str, Any]] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    warnings: list[ValidationWarning] = field(default_factory=list)
    cache_usage: dict[str, dict[str, int]] = field(default_factory=dict)

    def warn(self, code: str, message: str) -> None:
        """Record a warning once (every shard of a distributed pass may raise the same one)."""
        warning = ValidationWarning(code, message)
        if warning not in self.warnings:
            self.warnings.append(warning)

    def merge(self, other: PassLog) -> None:
        """Add a later shard's log; the dataset's own report, which every shard carries, is kept once."""
        self.images += other.images
        self.instances += other.instances
        self.skipped += [entry for entry in other.skipped if entry not in self.skipped]
        for warning in other.warnings:
            self.warn(*warning)
        for stage, seconds in other.stage_seconds.items():
            self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + seconds
        for cache, counts in other.cache_usage.items():
            mine = self.cache_usage.setdefault(cache, dict.fromkeys(USAGE_FIELDS, 0))
            for name, amount in counts.items():
                mine[name] = mine.get(name, 0) + amount


@dataclass
class ValidationState:
    """Everything a pass accumulated, before any result is computed: mergeable across shards and ranks."""

    accumulators: list[Accumulator]
    log: PassLog

    def merge(self, other: ValidationState) -> None:
        """Fold a later shard's state into this one, accumulator by accumulator."""
        names = [accumulator.name for accumulator in self.accumulators]
        if names != [accumulator.name for accumulator in other.accumulators]:
            raise MetricStateError(f"cannot merge pass states with different accumulators ({names})")
        for mine, theirs in zip(self.accumulators, other.accumulators, strict=True):
            mine.merge(theirs)
        self.log.merge(other.log)


def collect_validation_state(
    model: LoadedModel,
    source: ValidationSource,
    params: ValidationParams,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    *,
    shard: Sequence[int] | None = None,
    accumulators: Sequence[Accumulator] | None = None,
) -> ValidationState:
    """Run the pass over ``source`` (or the ``shard`` of its sample indices) without computing results.

    ``accumulators``: fresh ones to feed instead of :func:`standard_accumulators` (in result order).
    ``params.imgsz`` ``None`` means the checkpoint's size; sizes off the stride are rounded up (a warning).
    """
    check_params(params)
    params, imgsz = resolve_imgsz(params, model)
    with track_cache_usage() as usage:
        plan = plan_pass(source, params, model.class_table.num_fine, model.stride, shard)
        chosen = standard_accumulators(model, params) if accumulators is None else list(accumulators)
        processor = BatchProcessor(model, params, plan, chosen)
        if imgsz.warning is not None:
            processor.log.warn(*imgsz.warning)
        feed_batches(processor, cancel, on_progress)
    processor.log.cache_usage = usage.snapshot()
    return ValidationState(processor.accumulators, processor.log)


def feed_batches(
    processor: BatchProcessor, cancel: threading.Event | None, on_progress: ProgressCallback | None
) -> None:
    """Decode the plan's batches in the background and push each through ``processor``."""
    params, plan = processor.params, processor.plan
    draft = FAST_DRAFT if params.fast_decode else EXACT_DRAFT
    pin_memory = processor.forward.device.type == "cuda"
    imgsz = int(params.imgsz or 0)  # resolved by the caller
    with BatchLoader(plan.plans, imgsz, params.workers, pin_memory=pin_memory, draft=draft) as loader:
        for batch in batches_until_cancelled(loader, cancel, processor.log.stage_seconds):
            processor.process(batch)
            if on_progress is not None:
                on_progress(processor.images_seen, plan.total_images, "validate")


def build_result(
    state: ValidationState, model: LoadedModel, params: ValidationParams, wall_s: float
) -> ValidationResult:
    """Let every accumulator of a (possibly merged) state write its part, and assemble the result."""
    params = resolve_imgsz(params, model)[0]  # the size the pass used, as collect_validation_state chose it
    draft = ResultDraft(class_table=model.class_table, protocol=params.protocol)
    log = state.log
    with timed(log.stage_seconds, "metrics"):
        for accumulator in state.accumulators:
            accumulator.result(draft)
    return ValidationResult(
        metrics=draft.metrics,
        dataset={"images": log.images, "instances": log.instances, "skipped": log.skipped},
        speed_ms_per_image=speed_ms_per_image(log.stage_seconds, max(log.images, 1)),
        wall_s=wall_s,
        cache=get_cache_info(),
        cache_job=log.cache_usage,
        per_image=draft.per_image,
        params=params.to_dict(),
        model=model_summary(model),
        warnings=[warning.to_dict() for warning in dict.fromkeys([*log.warnings, *draft.warnings])],
        evaluator=draft.evaluator,
    )


def batches_until_cancelled(
    loader: Iterable[LoadedBatch], cancel: threading.Event | None, seconds: dict[str, float]
) -> Iterator[LoadedBatch]:
    """Yield batches, timing the wait for each (``loader_wait``); check ``cancel`` between batches."""
    batches = iter(loader)
    while True:
        if cancel is not None and cancel.is_set():
            raise Cancelled("validation cancelled between batches")
        with timed(seconds, "loader_wait"):
            batch = next(batches, None)
        if batch is None:
            return
        yield batch


class BatchProcessor:
    """Per-batch work of the pass: forward, NMS, rescale, then every accumulator, each stage timed."""

    def __init__(
        self, model: LoadedModel, params: ValidationParams, plan: PassPlan, accumulators: list[Accumulator]
    ) -> None:
        self.params = params
        self.plan = plan
        self.accumulators = accumulators
        self.forward = Forward(model, params.half)
        self.log = PassLog(skipped=list(plan.skipped))
        self.images_seen = 0

    def process(self, batch: LoadedBatch) -> None:
        seconds = self.log.stage_seconds
        seconds["decode"] = seconds.get("decode", 0.0) + batch.decode_s + batch.letterbox_s
        self.images_seen += len(batch.metas) + len(batch.failures)
        self.log.skipped += [{"file": ref.name, "line": None, "reason": why} for ref, why in batch.failures]
        if not batch.metas:
            return
        with timed(seconds, "preprocess"):
            inputs = self.forward.inputs(batch.images)
        with timed(seconds, "inference"):
            head = self.forward.run(inputs)
        with timed(seconds, "nms"):
            detections = suppress(head.decoded.float(), self.params)
        with timed(seconds, "metrics"):
            input_hw = (int(inputs.shape[2]), int(inputs.shape[3]))
            processed = processed_batch(batch, detections, head.levels, input_hw, self.plan)
        self.log.images += len(processed.images)
        self.log.instances += sum(len(image.gt_classes) for image in processed.images)
        for accumulator in self.accumulators:
            with timed(seconds, accumulator.stage):
                accumulator.update(processed)
