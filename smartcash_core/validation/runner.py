"""The validation pass: read -> decode + letterbox -> forward -> NMS -> accumulate -> result.

``run_validation(model, source, params, on_progress=None, cancel=None, *, shard=None) -> ValidationResult``

* ``model``: a ``smartcash_core.checkpoint.LoadedModel``.
* ``source``: a YOLO dataset directory, a ``data.yaml`` path, or a list of ``UploadedSample``.
* ``on_progress(done_images, total_images, stage)`` is called after each batch.
* ``cancel``: a ``threading.Event``; when set, the pass stops between batches with ``Cancelled``.
* ``shard``: optional global sample indices to validate (distributed runs); see below.
* ``max_image_pixels``: images whose header declares more pixels are skipped (reported) before any decode
  (decompression bombs); default ``DEFAULT_MAX_IMAGE_PIXELS`` (40 MP).

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
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from smartcash_core.cache import USAGE_FIELDS, get_cache_info, track_cache_usage
from smartcash_core.data.images import EXACT_DRAFT, FAST_DRAFT
from smartcash_core.data.limits import DEFAULT_MAX_IMAGE_PIXELS
from smartcash_core.data.loader import BatchLoader, LoadedBatch
from smartcash_core.errors import Cancelled, InvalidParamsError, MetricStateError
from smartcash_core.validation.accumulators.base import Accumulator, ResultDraft
from smartcash_core.validation.accumulators.standard import standard_accumulators
from smartcash_core.validation.detections import processed_batch, suppress
from smartcash_core.validation.imgsz import resolve_imgsz
from smartcash_core.validation.inference import Forward, HeadOutput, model_device
from smartcash_core.validation.params import (
    ProgressCallback,
    ValidationParams,
    ValidationResult,
    ValidationSource,
    ValidationWarning,
    check_params,
)
from smartcash_core.validation.precision import resolve_precision
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
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> ValidationResult:
    """Validate ``model`` on ``source``; see the module docstring for the arguments.

    Raises ``DatasetError`` (no usable images), ``Cancelled`` (``cancel`` was set), ``ValueError`` (params).
    Bad images, label files and label lines are skipped and listed in ``result.dataset["skipped"]``.
    """
    started = time.perf_counter()
    state = collect_validation_state(
        model, source, params, on_progress, cancel, shard=shard, max_image_pixels=max_image_pixels
    )
    return build_result(state, model, params, wall_s=time.perf_counter() - started)


@dataclass
class PassLog:
    """The pass's own bookkeeping beside the accumulators: images and instances validated, skipped files
    and lines (``{file, line, reason}``), wall seconds per stage, CPU seconds per stage
    (``stage_cpu_seconds``: the decoding threads' CPU time under ``decode``, the pass thread's own under the
    other stages; torch's intra-op threads of the forward are not in it), warnings, where labels were
    looked for, and its own cache use. Benchmarks read the CPU times; they are not part of the result."""

    images: int = 0
    instances: int = 0
    skipped: list[dict[str, Any]] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    warnings: list[ValidationWarning] = field(default_factory=list)
    label_locations: str = ""
    stage_cpu_seconds: dict[str, float] = field(default_factory=dict)
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
        self.label_locations = self.label_locations or other.label_locations
        self.skipped += [entry for entry in other.skipped if entry not in self.skipped]
        for warning in other.warnings:
            self.warn(*warning)
        for mine, theirs in (
            (self.stage_seconds, other.stage_seconds),
            (self.stage_cpu_seconds, other.stage_cpu_seconds),
        ):
            for stage, seconds in theirs.items():
                mine[stage] = mine.get(stage, 0.0) + seconds
        for cache, counts in other.cache_usage.items():
            totals = self.cache_usage.setdefault(cache, dict.fromkeys(USAGE_FIELDS, 0))
            for name, amount in counts.items():
                totals[name] = totals.get(name, 0) + amount


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
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    overlap: bool = True,
) -> ValidationState:
    """Run the pass over ``source`` (or the ``shard`` of its sample indices) without computing results.

    ``accumulators``: fresh ones to feed instead of :func:`standard_accumulators` (in result order).
    ``overlap``: NMS and accumulators of batch k run on a second thread while batch k+1 runs its forward
    (same results, in the same order; off: one thread, for benchmarks' A/B).
    ``params.imgsz`` ``None`` means the checkpoint's size; sizes off the stride are rounded up (a warning).
    """
    check_params(params)
    if max_image_pixels < 1:
        raise InvalidParamsError(f"max_image_pixels must be at least 1; got {max_image_pixels!r}")
    params, imgsz = resolve_imgsz(params, model)
    with track_cache_usage() as usage:
        plan = plan_pass(source, params, model.class_table.num_fine, model.stride, shard, max_image_pixels)
        chosen = standard_accumulators(model, params) if accumulators is None else list(accumulators)
        processor = BatchProcessor(model, params, plan, chosen)
        if imgsz.warning is not None:
            processor.log.warn(*imgsz.warning)
        feed_batches(processor, cancel, on_progress, max_image_pixels, overlap)
    processor.log.cache_usage = usage.snapshot()
    return ValidationState(processor.accumulators, processor.log)


def feed_batches(
    processor: BatchProcessor,
    cancel: threading.Event | None,
    on_progress: ProgressCallback | None,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    overlap: bool = True,
) -> None:
    """Decode the plan's batches in the background and push each through ``processor`` (the forward here,
    NMS and accumulators on the finisher's thread when ``overlap``)."""
    params, plan = processor.params, processor.plan
    draft = FAST_DRAFT if params.fast_decode else EXACT_DRAFT
    pin_memory = processor.forward.device.type == "cuda"
    imgsz = int(params.imgsz or 0)  # resolved by the caller
    loader = BatchLoader(
        plan.plans, imgsz, params.workers, pin_memory=pin_memory, draft=draft, max_pixels=max_image_pixels
    )
    with loader, OverlappedFinish(processor, plan.total_images, on_progress, enabled=overlap) as finisher:
        for batch in batches_until_cancelled(loader, cancel, processor.log.stage_seconds):
            finisher.submit(processor.run_forward(batch))


def build_result(
    state: ValidationState, model: LoadedModel, params: ValidationParams, wall_s: float
) -> ValidationResult:
    """Let every accumulator of a (possibly merged) state write its part, and assemble the result."""
    params = resolve_imgsz(params, model)[0]  # the size the pass used, as collect_validation_state chose it
    draft = ResultDraft(class_table=model.class_table, protocol=params.protocol)
    log = state.log
    if log.instances == 0:  # decided on the merged log: one shard without labels is no reason to warn
        log.warn("no_labels", no_labels_message(log))
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
        model={**model_summary(model), "precision": resolve_precision(params, model_device(model))[0]},
        warnings=[warning.to_dict() for warning in dict.fromkeys([*log.warnings, *draft.warnings])],
        evaluator=draft.evaluator,
    )


def no_labels_message(log: PassLog) -> str:
    """The ``no_labels`` warning: what was looked for where, and what the result holds instead."""
    where = f": label files were looked for {log.label_locations}" if log.label_locations else ""
    return (
        f"no labels found in the {log.images} validated image(s){where}. Without ground truth the metrics "
        "are null (map50, map50_95, precision, recall; per_class empty); per-image predictions are still "
        "reported, each one a false positive"
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


@dataclass
class ForwardedBatch:
    """A batch after its forward: what NMS and the accumulators need."""

    batch: LoadedBatch
    head: HeadOutput | None  # None: every image of the batch failed to decode
    input_hw: tuple[int, int]


class BatchProcessor:
    """Per-batch work of the pass: forward (:meth:`run_forward`), then NMS, rescale and every accumulator
    (:meth:`finish`), each stage timed (wall and the calling thread's CPU time)."""

    def __init__(
        self, model: LoadedModel, params: ValidationParams, plan: PassPlan, accumulators: list[Accumulator]
    ) -> None:
        self.params = params
        self.plan = plan
        self.accumulators = accumulators
        precision, warnings = resolve_precision(params, model_device(model))
        self.forward = Forward(model, precision)
        self.log = PassLog(skipped=list(plan.skipped), label_locations=plan.label_locations)
        for warning in warnings:
            self.log.warn(*warning)
        self.images_seen = 0

    def run_forward(self, batch: LoadedBatch) -> ForwardedBatch:
        seconds, cpu = self.log.stage_seconds, self.log.stage_cpu_seconds
        seconds["decode"] = seconds.get("decode", 0.0) + batch.decode_s + batch.letterbox_s
        cpu["decode"] = cpu.get("decode", 0.0) + batch.decode_cpu_s
        self.log.skipped += [{"file": ref.name, "line": None, "reason": why} for ref, why in batch.failures]
        if not batch.metas:
            return ForwardedBatch(batch, None, (0, 0))
        with timed(seconds, "preprocess", cpu):
            inputs = self.forward.inputs(batch.images)
        with timed(seconds, "inference", cpu):
            head = self.forward.run(inputs)
        return ForwardedBatch(batch, head, (int(inputs.shape[2]), int(inputs.shape[3])))

    def finish(self, forwarded: ForwardedBatch) -> None:
        """NMS, detections in original pixels, then every accumulator, in batch order."""
        batch, head = forwarded.batch, forwarded.head
        self.images_seen += len(batch.metas) + len(batch.failures)
        if head is None:
            return
        seconds, cpu = self.log.stage_seconds, self.log.stage_cpu_seconds
        with timed(seconds, "nms", cpu):
            detections = suppress(head.decoded.float(), self.params)
        with timed(seconds, "metrics", cpu):
            processed = processed_batch(batch, detections, head.levels, forwarded.input_hw, self.plan)
        self.log.images += len(processed.images)
        self.log.instances += sum(len(image.gt_classes) for image in processed.images)
        for accumulator in self.accumulators:
            with timed(seconds, accumulator.stage, cpu):
                accumulator.update(processed)


class OverlappedFinish:
    """Finishes batches (NMS, accumulators) on one worker thread while the caller runs the next forward.

    At most one batch is in flight: submitting batch k first waits for batch k-1, so accumulators see the
    batches in order (results are identical to a single thread) and only one extra head output is held.
    Progress is reported once a batch is finished. Leaving the block waits for the last batch; when the
    block is left by an error (or a cancellation), the batch in flight is waited for and its own error, if
    any, is dropped in favour of the first one. ``enabled=False`` finishes each batch in the caller's thread.
    On 2 CPU cores the forward does not keep both busy all the time (serial parts between its parallel
    kernels), and NMS fills those gaps; on CUDA the device computes while the host runs NMS.
    """

    def __init__(
        self,
        processor: BatchProcessor,
        total: int,
        on_progress: ProgressCallback | None,
        enabled: bool = True,
    ) -> None:
        self._processor = processor
        self._total = total
        self._on_progress = on_progress
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="smartcash-finish") if enabled else None
        self._pending: Future[None] | None = None

    def __enter__(self) -> OverlappedFinish:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        try:
            if exc_type is None:
                self._wait()
            elif self._pending is not None:
                wait([self._pending])
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)

    def submit(self, forwarded: ForwardedBatch) -> None:
        self._wait()
        if self._executor is None:
            self._processor.finish(forwarded)
            self._report()
            return
        self._pending = self._executor.submit(self._processor.finish, forwarded)

    def _wait(self) -> None:
        if self._pending is None:
            return
        pending, self._pending = self._pending, None
        pending.result()
        self._report()

    def _report(self) -> None:
        if self._on_progress is not None:
            self._on_progress(self._processor.images_seen, self._total, "validate")
