"""The validation pass over the ranks of a ``torchrun`` job: every rank validates one shard (a contiguous
run of whole batches), sends its unmerged state to rank 0 in one gather, and rank 0 merges and reports.

``torchrun --nproc-per-node N -m smartcash_core.cli validate ...`` (the arguments of ``smartcash
validate``) ends up here; see :mod:`smartcash_core.validation.distributed` for the plumbing and why shards
are contiguous.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch.distributed as dist

from smartcash_core.data.limits import DEFAULT_MAX_IMAGE_PIXELS
from smartcash_core.data.loader import BatchPlan
from smartcash_core.errors import DistributedError, SmartCashError
from smartcash_core.validation.accumulators.base import Accumulator, merge_shard_states
from smartcash_core.validation.accumulators.standard import standard_accumulators
from smartcash_core.validation.distributed import DistContext, shard_bounds, timed_gather
from smartcash_core.validation.imgsz import resolve_imgsz
from smartcash_core.validation.params import (
    ProgressCallback,
    ValidationParams,
    ValidationResult,
    ValidationSource,
)
from smartcash_core.validation.runner import PassLog, ValidationState, build_result, collect_validation_state
from smartcash_core.validation.source import load_source, plan_batches
from smartcash_core.validation.timing import rank_speed

if TYPE_CHECKING:
    from smartcash_core.checkpoint import LoadedModel


@dataclass
class RankReport:
    """What one rank did: its shard and its speed, reported by rank 0 next to the merged metrics."""

    rank: int
    images: int
    wall_s: float
    speed_ms_per_image: dict[str, float] = field(default_factory=dict)

    @property
    def images_per_s(self) -> float:
        return self.images / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "images_per_s": self.images_per_s}


@dataclass
class DistributedReport:
    """The ``distributed`` section of a merged result.

    ``wait_s``: how long rank 0 waited at the barrier for the slowest rank (load imbalance);
    ``gather_s``: moving every state to rank 0; ``merge_s``: folding them into one (both on rank 0).
    """

    world_size: int
    backend: str
    wait_s: float
    gather_s: float
    merge_s: float
    ranks: list[RankReport]

    def to_dict(self) -> dict[str, Any]:
        return {
            "world_size": self.world_size,
            "backend": self.backend,
            "wait_s": self.wait_s,
            "gather_s": self.gather_s,
            "merge_s": self.merge_s,
            "ranks": [report.to_dict() for report in self.ranks],
        }


@dataclass
class DistributedValidationResult(ValidationResult):
    """A merged result: the single-process contract plus the ``distributed`` section."""

    distributed: dict[str, Any] = field(default_factory=dict)


@dataclass
class ShardState:
    """A rank's unmerged :class:`ValidationState` for the wire: each accumulator's state arrays under its
    name, and the pass log. Plain arrays and lists: it pickles without any model or evaluator object."""

    states: dict[str, dict[str, np.ndarray]]
    log: PassLog

    @classmethod
    def from_state(cls, state: ValidationState) -> ShardState:
        return cls({accumulator.name: accumulator.state() for accumulator in state.accumulators}, state.log)


@dataclass
class RankPayload:
    """What one rank sends to rank 0: its shard state and report, or the error that stopped it."""

    report: RankReport
    shard: ShardState | None
    error: str | None = None


def rank_shard(plans: Sequence[BatchPlan], ctx: DistContext) -> list[int]:
    """Global sample indices of this rank: a contiguous run of whole batches of the single-process plan."""
    start, stop = shard_bounds(len(plans), ctx.rank, ctx.world_size)
    return [ref.index for plan in plans[start:stop] for ref in plan.refs]


def merge_shards(shards: Sequence[ShardState], into: list[Accumulator]) -> ValidationState:
    """The validation state of the whole pass from the rank shards, given in rank order.

    ``into`` are fresh accumulators configured like the ranks' (:func:`standard_accumulators`); each takes
    the merge of the shards' states by its own rules. The logs merge as the pass's ``PassLog.merge`` does.
    """
    if not shards:
        raise DistributedError("no shard state to merge: the group has no ranks")
    for accumulator in into:
        parts = [shard.states[accumulator.name] for shard in shards]
        accumulator.load_state(merge_shard_states(parts, accumulator.merge_rules()))
    log = PassLog()
    for shard in shards:
        log.merge(shard.log)
    return ValidationState(into, log)


def collect_rank_payload(
    model: LoadedModel,
    source: ValidationSource,
    params: ValidationParams,
    ctx: DistContext,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> RankPayload:
    """Validate this rank's shard. A library error is carried to rank 0 instead of leaving it waiting."""
    started = time.perf_counter()
    try:
        index = load_source(source, params.split, model.class_table.num_fine, max_image_pixels)
        planned = resolve_imgsz(params, model)[0]  # the same size collect_validation_state picks
        shard = rank_shard(plan_batches(index, planned, model.stride), ctx)
        state = collect_validation_state(
            model, source, params, on_progress, cancel, shard=shard, max_image_pixels=max_image_pixels
        )
        shard_state = ShardState.from_state(state)
    except (SmartCashError, ValueError) as exc:
        report = RankReport(ctx.rank, 0, time.perf_counter() - started)
        return RankPayload(report, None, f"{type(exc).__name__}: {exc}")
    wall_s = time.perf_counter() - started
    log = state.log
    report = RankReport(ctx.rank, log.images, wall_s, rank_speed(log.stage_seconds, log.images))
    return RankPayload(report, shard_state)


def run_distributed_validation(
    model: LoadedModel,
    source: ValidationSource,
    params: ValidationParams,
    ctx: DistContext,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> DistributedValidationResult | None:
    """The validation pass over all ranks; the merged result on rank 0, ``None`` on the others.

    Every rank indexes the whole source (same batch plan everywhere), validates its shard, and sends its
    state to rank 0 in one gather. Raises :class:`DistributedError` (on every rank) when any rank failed.
    """
    started = time.perf_counter()
    payload = collect_rank_payload(model, source, params, ctx, on_progress, cancel, max_image_pixels)
    wait_started = time.perf_counter()
    dist.barrier()  # separates waiting for the slowest rank from the transfer itself
    wait_s = time.perf_counter() - wait_started
    gathered, gather_s = timed_gather(payload, ctx)
    if gathered is None:
        if payload.error is not None:
            raise DistributedError(f"rank {ctx.rank} failed: {payload.error}")
        return None
    failures = [f"rank {item.report.rank}: {item.error}" for item in gathered if item.error is not None]
    if failures:
        raise DistributedError("distributed validation failed on " + "; ".join(failures))
    merge_started = time.perf_counter()
    shards = [item.shard for item in gathered if item.shard is not None]
    merged = merge_shards(shards, standard_accumulators(model, params))
    merge_s = time.perf_counter() - merge_started
    result = build_result(merged, model, params, wall_s=time.perf_counter() - started)
    report = DistributedReport(ctx.world_size, ctx.backend, wait_s, gather_s, merge_s,
                               [item.report for item in gathered])
    return DistributedValidationResult(**vars(result), distributed=report.to_dict())
