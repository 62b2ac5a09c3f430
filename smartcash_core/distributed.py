"""Distributed validation under ``torchrun``: every rank validates one shard, rank 0 merges and reports.

``torchrun --nproc-per-node N -m smartcash_core.distributed validate ...`` (the arguments of
``smartcash validate``) starts N copies of the validation command. Each copy finds its place in the job
with :func:`init_from_env` (gloo on CPU, NCCL on CUDA), builds the single-process batch plan, validates
the whole batches :func:`shard_bounds` gives it, and sends its unmerged state to rank 0 with
:func:`gather_to_main`: one barrier and one object gather per run, whatever the number of images.

Why shards are contiguous runs of whole batches: the YOLO protocol orders all predictions with a
non-stable ``argsort`` over the predictions concatenated in processing order, so ties are decided by that
order. Concatenating the rank states in rank order reproduces the single-process order only when each rank
holds one contiguous run of it. Sharding whole batches also keeps every batch identical to the
single-process one (same images, same rectangular shape, same padding), so the forward outputs are the same
bits and the merged metrics equal the single-process metrics exactly.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy as np
import torch
import torch.distributed as dist

from smartcash_core.device import select_device
from smartcash_core.errors import DistributedError, SmartCashError
from smartcash_core.validate import (
    ProgressCallback,
    ValidationParams,
    ValidationResult,
    ValidationSource,
    ValidationState,
    build_result,
    collect_validation_state,
    load_source,
    plan_batches,
)

if TYPE_CHECKING:
    from smartcash_core.checkpoint import LoadedModel
    from smartcash_core.data.loader import BatchPlan
    from smartcash_core.metrics import DetectionEvaluator

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
MAIN_RANK = 0
DEFAULT_TIMEOUT = timedelta(minutes=30)  # a rank may legitimately validate for a long time before gathering

Payload = TypeVar("Payload")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a distributed run."""

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == MAIN_RANK


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


def read_torchrun_env(env: Mapping[str, str]) -> tuple[int, int, int] | None:
    """``(rank, world_size, local_rank)`` from torchrun's variables; ``None`` outside torchrun."""
    if "WORLD_SIZE" not in env:
        return None
    try:
        rank, world_size, local_rank = (int(env.get(name, "0")) for name in TORCHRUN_VARIABLES)
    except ValueError as exc:
        values = {name: env.get(name) for name in TORCHRUN_VARIABLES}
        raise DistributedError(f"torchrun variables must be integers, got {values}") from exc
    if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
        raise DistributedError(
            f"inconsistent torchrun variables RANK={rank} WORLD_SIZE={world_size} LOCAL_RANK={local_rank}"
        )
    return rank, world_size, local_rank


def rank_device(spec: str, local_rank: int) -> torch.device:
    """The device of this rank: a bare ``auto``/``cuda`` becomes ``cuda:LOCAL_RANK`` (one GPU per process)."""
    device = select_device(spec)
    if device.type != "cuda" or spec.strip().lower() not in ("auto", "cuda"):
        return device
    if local_rank >= torch.cuda.device_count():
        raise DistributedError(
            f"LOCAL_RANK {local_rank} has no GPU: this node has {torch.cuda.device_count()}; "
            "start at most that many processes per node (--nproc-per-node)"
        )
    return torch.device("cuda", local_rank)


def init_from_env(
    device: str = "auto", env: Mapping[str, str] | None = None, timeout: timedelta = DEFAULT_TIMEOUT
) -> DistContext | None:
    """Join the process group that torchrun describes; ``None`` when this is a single-process run.

    A one-process torchrun (``WORLD_SIZE=1``) is also treated as single-process: there is nothing to merge.
    MASTER_ADDR and MASTER_PORT come from torchrun's rendezvous (``env://``).
    """
    position = read_torchrun_env(os.environ if env is None else env)
    if position is None or position[1] == 1:
        return None
    rank, world_size, local_rank = position
    torch_device = rank_device(device, local_rank)
    backend = "nccl" if torch_device.type == "cuda" else "gloo"
    if torch_device.type == "cuda":
        torch.cuda.set_device(torch_device)  # object collectives on NCCL use the current device
    if not dist.is_initialized():
        dist.init_process_group(
            backend=backend, init_method="env://", rank=rank, world_size=world_size, timeout=timeout
        )
    return DistContext(rank, world_size, local_rank, backend, torch_device)


def shutdown(ctx: DistContext | None) -> None:
    """Leave the process group once every rank got here (safe to call twice or outside a distributed run).

    The barrier comes first because a sender's gather finishes when its bytes are written, not when rank 0
    has read them: a rank that tore its connections down at once could cut rank 0's receive short, and
    gloo then aborts rank 0's process. A barrier that fails (a rank died) must not hide the real error.
    """
    if ctx is None or not dist.is_initialized():
        return
    try:
        dist.barrier()
    except RuntimeError as exc:
        print(f"warning: ranks did not meet before leaving the group: {exc}", file=sys.stderr)
    dist.destroy_process_group()


def shard_bounds(count: int, rank: int, world_size: int, unit: int = 1) -> tuple[int, int]:
    """``[start, stop)`` of this rank's contiguous shard of ``count`` items, split in whole ``unit`` blocks.

    Blocks are spread as evenly as possible (shard sizes differ by at most one block); when there are
    fewer blocks than ranks, some ranks (rank 0 first) get empty shards.
    """
    if count < 0 or unit < 1 or world_size < 1 or not 0 <= rank < world_size:
        raise DistributedError(
            f"cannot shard count={count} unit={unit} for rank {rank} of world size {world_size}"
        )
    blocks = -(-count // unit)
    first_block = rank * blocks // world_size
    end_block = (rank + 1) * blocks // world_size
    return min(first_block * unit, count), min(end_block * unit, count)


def shard_indices(count: int, rank: int, world_size: int, unit: int = 1) -> list[int]:
    """Global positions (in processing order) that ``rank`` validates; disjoint, covering, in order.

    Positions stay global, so every image keeps the index it has in a single-process run.
    """
    start, stop = shard_bounds(count, rank, world_size, unit)
    return list(range(start, stop))


def gather_to_main(payload: Payload, ctx: DistContext) -> list[Payload] | None:
    """Every rank's ``payload`` on rank 0, in rank order (``None`` elsewhere).

    One ``gather_object`` call: it pickles the payload (numpy arrays travel as raw buffers) and moves it with
    two collectives (sizes, then padded bytes), independent of how many images a rank validated.
    """
    if not ctx.is_main:
        dist.gather_object(payload, None, dst=MAIN_RANK)
        return None
    received: list[Any] = [None] * ctx.world_size
    dist.gather_object(payload, received, dst=MAIN_RANK)
    return cast("list[Payload]", received)


def timed_gather(payload: Payload, ctx: DistContext) -> tuple[list[Payload] | None, float]:
    """:func:`gather_to_main` and its wall time in seconds (the merge cost reported in the result)."""
    started = time.perf_counter()
    gathered = gather_to_main(payload, ctx)
    return gathered, time.perf_counter() - started


# ----------------------------------------------------------------------------------------------------------
# The distributed validation pass
# ----------------------------------------------------------------------------------------------------------


@dataclass
class DistributedValidationResult(ValidationResult):
    """A merged result: the single-process contract plus the ``distributed`` section."""

    distributed: dict[str, Any] = field(default_factory=dict)


StateArrays = dict[str, np.ndarray]
IMAGE_ID_KEYS = ("image_ids", "pred_image", "gt_image")  # evaluator state arrays that hold image ids
SUMMED_KEYS = ("confusion",)  # evaluator state arrays that add up instead of concatenating


@dataclass
class ShardState:
    """A rank's unmerged :class:`ValidationState` for the wire: the evaluator travels as plain arrays
    (``state_arrays()``), the rest as the pass made it, so new fields of the state merge without changes here.
    """

    evaluator_state: StateArrays
    state: ValidationState  # its evaluator is an empty one of the same configuration

    @classmethod
    def from_state(cls, state: ValidationState, empty: DetectionEvaluator) -> ShardState:
        return cls(state.evaluator.state_arrays(), replace(state, evaluator=empty))


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


def rank_speed(stage_seconds: Mapping[str, float], images: int) -> dict[str, float]:
    """Milliseconds per image of each timed stage on one rank."""
    return {stage: 1000 * seconds / images for stage, seconds in stage_seconds.items()} if images else {}


def image_ids_overlap(states: Sequence[Mapping[str, np.ndarray]]) -> bool:
    ids = np.concatenate([np.asarray(state["image_ids"], dtype=np.int64) for state in states])
    return np.unique(ids).size != ids.size


def rebase_local_image_ids(states: Sequence[Mapping[str, np.ndarray]]) -> list[StateArrays]:
    """Shift each rank's image ids by the number of images the ranks before it evaluated.

    A pass that numbers images as it evaluates them (0, 1, ... per evaluator) gives every rank ids from 0.
    Because shards are contiguous runs of the processing order, rank r's image j is image
    ``sum(images of ranks < r) + j`` of a single-process pass: the rebased ids are the single-process ids.
    """
    rebased: list[StateArrays] = []
    offset = 0
    for state in states:
        shifted = dict(state)
        for key in IMAGE_ID_KEYS:
            shifted[key] = np.asarray(state[key], dtype=np.int64) + offset
        offset += len(state["image_ids"])
        rebased.append(shifted)
    return rebased


def concat_state_arrays(states: Sequence[Mapping[str, np.ndarray]]) -> StateArrays:
    """One state from many, in rank order: per-image/prediction arrays concatenated, counts summed."""
    merged: StateArrays = {}
    for key in states[0]:
        parts = [np.asarray(state[key]) for state in states]
        merged[key] = np.sum(parts, axis=0) if key in SUMMED_KEYS else np.concatenate(parts, axis=0)
    return merged


def merge_evaluator_states(states: Sequence[Mapping[str, np.ndarray]], like: DetectionEvaluator
                           ) -> DetectionEvaluator:
    """A new evaluator (configured as ``like``) holding the images of every rank's ``state_arrays()``.

    Ranks that already use global image ids (disjoint) are concatenated as they are; ranks that numbered
    their images locally (ids overlap) are rebased first, see :func:`rebase_local_image_ids`.
    """
    if not states:
        raise DistributedError("no evaluator state to merge: the group has no ranks")
    if image_ids_overlap(states):
        states = rebase_local_image_ids(states)
    return type(like).from_state_arrays(
        concat_state_arrays(states), like.num_classes, like.protocol, like.class_table
    )


def gather_evaluator_state(evaluator: DetectionEvaluator, ctx: DistContext) -> DetectionEvaluator | None:
    """Every rank's evaluator merged on rank 0, in rank order (``None`` on the other ranks). One gather."""
    gathered = gather_to_main(evaluator.state_arrays(), ctx)
    return None if gathered is None else merge_evaluator_states(gathered, evaluator)


def merge_shards(shards: Sequence[ShardState], like: DetectionEvaluator) -> ValidationState:
    """The validation state of the whole pass from the rank shards, given in rank order.

    The evaluators merge through their state arrays (:func:`merge_evaluator_states`); everything else
    through the pass's own ``ValidationState.merge``, which keeps per-image rows in processing order (their
    ``order``, the metric image id), as a single-process pass lists them.
    """
    if not shards:
        raise DistributedError("no shard state to merge: the group has no ranks")
    merged = replace(shards[0].state, evaluator=like)
    for shard in shards[1:]:
        merged.merge(shard.state)
    merged.evaluator = merge_evaluator_states([shard.evaluator_state for shard in shards], like)
    return merged


def empty_evaluator(model: LoadedModel, params: ValidationParams) -> DetectionEvaluator:
    """An evaluator configured as the pass configures its own (the template the merge rebuilds from)."""
    from smartcash_core.metrics import DetectionEvaluator

    return DetectionEvaluator(
        num_classes=model.class_table.num_fine, protocol=params.protocol, class_table=model.class_table
    )


def collect_rank_payload(
    model: LoadedModel,
    source: ValidationSource,
    params: ValidationParams,
    ctx: DistContext,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> RankPayload:
    """Validate this rank's shard. A library error is carried to rank 0 instead of leaving it waiting."""
    started = time.perf_counter()
    try:
        index = load_source(source, params.split, model.class_table.num_fine)
        shard = rank_shard(plan_batches(index, params, model.stride), ctx)
        state = collect_validation_state(model, source, params, on_progress, cancel, shard=shard)
        shard_state = ShardState.from_state(state, empty_evaluator(model, params))
    except (SmartCashError, ValueError) as exc:
        report = RankReport(ctx.rank, 0, time.perf_counter() - started)
        return RankPayload(report, None, f"{type(exc).__name__}: {exc}")
    wall_s = time.perf_counter() - started
    report = RankReport(ctx.rank, state.images, wall_s, rank_speed(state.stage_seconds, state.images))
    return RankPayload(report, shard_state)


def run_distributed_validation(
    model: LoadedModel,
    source: ValidationSource,
    params: ValidationParams,
    ctx: DistContext,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> DistributedValidationResult | None:
    """The validation pass over all ranks; the merged result on rank 0, ``None`` on the others.

    Every rank indexes the whole source (same batch plan everywhere), validates its shard, and sends its
    state to rank 0 in one gather. Raises :class:`DistributedError` (on every rank) when any rank failed.
    """
    started = time.perf_counter()
    payload = collect_rank_payload(model, source, params, ctx, on_progress, cancel)
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
    merged = merge_shards(shards, empty_evaluator(model, params))
    merge_s = time.perf_counter() - merge_started
    result = build_result(merged, model, params, wall_s=time.perf_counter() - started)
    report = DistributedReport(ctx.world_size, ctx.backend, wait_s, gather_s, merge_s,
                               [item.report for item in gathered])
    return DistributedValidationResult(**vars(result), distributed=report.to_dict())


# ----------------------------------------------------------------------------------------------------------
# Command line: ``torchrun ... -m smartcash_core.distributed validate ...``
# ----------------------------------------------------------------------------------------------------------


def format_distributed(section: Mapping[str, Any]) -> str:
    """Lines for the report: the merge costs, then each rank's shard and speed."""
    lines = [
        f"Distributed: {section['world_size']} ranks ({section['backend']}), "
        f"wait {section['wait_s'] * 1000:.1f} ms, gather {section['gather_s'] * 1000:.1f} ms, "
        f"merge {section['merge_s'] * 1000:.1f} ms"
    ]
    for rank in section["ranks"]:
        lines.append(
            f"  rank {rank['rank']}: {rank['images']} images in {rank['wall_s']:.2f} s "
            f"({rank['images_per_s']:.1f} img/s)"
        )
    return "\n".join(lines)


def _progress_bar(ctx: DistContext) -> tuple[Any, ProgressCallback | None]:
    """A tqdm bar over rank 0's own shard (other ranks stay quiet)."""
    if not ctx.is_main:
        return None, None
    from tqdm import tqdm

    bar = tqdm(desc=f"validate (rank 0 of {ctx.world_size})", unit="img", file=sys.stderr, dynamic_ncols=True)

    def on_progress(done: int, total: int, stage: str) -> None:
        if bar.total != total:
            bar.reset(total=total)
        bar.update(done - bar.n)

    return bar, on_progress


def cli_validate_distributed(args: argparse.Namespace, ctx: DistContext) -> int:
    """``smartcash validate`` on one rank: rank 0 prints the merged report and writes ``--json``."""
    from smartcash_core.checkpoint import load_model
    from smartcash_core.validate_cli import params_from_args, print_report, write_json

    params = replace(params_from_args(args), device=str(ctx.device))
    model = load_model(args.weights, ctx.device)
    bar, on_progress = _progress_bar(ctx)
    try:
        result = run_distributed_validation(model, args.data, params, ctx, on_progress=on_progress)
    finally:
        if bar is not None:
            bar.close()
    if result is None:
        return 0
    print_report(result, sys.stdout)
    print(format_distributed(result.distributed))
    if args.json_out:
        write_json(result, Path(args.json_out))
    return 0


def run_cli_if_distributed(args: argparse.Namespace) -> int | None:
    """The exit code of a distributed ``validate`` when torchrun started this process, else ``None``.

    This is the hook for ``validate_cli.cli_validate``: call it first and return its code when not ``None``.
    """
    ctx = init_from_env(args.device)
    if ctx is None:
        return None
    try:
        return cli_validate_distributed(args, ctx)
    finally:
        shutdown(ctx)


def _validate_command(args: argparse.Namespace) -> int:
    exit_code = run_cli_if_distributed(args)
    if exit_code is not None:
        return exit_code
    from smartcash_core.validate_cli import cli_validate  # outside torchrun: the ordinary command

    return cli_validate(args)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m smartcash_core.distributed validate ...``, with ``smartcash validate``'s arguments."""
    from smartcash_core.cli import build_parser, run_parsed

    parser, commands = build_parser()
    commands.choices["validate"].set_defaults(handler=_validate_command)
    return run_parsed(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
