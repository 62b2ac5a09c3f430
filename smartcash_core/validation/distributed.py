"""Distributed plumbing under ``torchrun``: where a process stands in the job, the process group, contiguous
shards, and one gather to rank 0; rank 0 merges gathered evaluator states with the metrics package's merge.

Each process finds its place in the job with :func:`init_from_env` (gloo on CPU, NCCL on CUDA) and sends
its unmerged state to rank 0 with :func:`gather_to_main`: one barrier and one object gather per run,
whatever the number of images. The validation pass over ranks is
:mod:`smartcash_core.validation.distributed_pass`.

Why shards are contiguous runs of whole batches: the YOLO protocol orders all predictions with a
non-stable ``argsort`` over the predictions concatenated in processing order, so ties are decided by that
order. Concatenating the rank states in rank order reproduces the single-process order only when each rank
holds one contiguous run of it. Sharding whole batches also keeps every batch identical to the
single-process one (same images, same rectangular shape, same padding), so the forward outputs are the same
bits and the merged metrics equal the single-process metrics exactly.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar, cast

import torch
import torch.distributed as dist

from smartcash_core.device import select_device
from smartcash_core.errors import DistributedError

if TYPE_CHECKING:
    from smartcash_core.metrics import DetectionEvaluator

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
MAIN_RANK = 0
DEFAULT_TIMEOUT = timedelta(minutes=30)  # a rank may legitimately validate for a long time before gathering

Payload = TypeVar("Payload")
_log = logging.getLogger(__name__)


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
        _log.warning("ranks did not meet before leaving the group: %s", exc)
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


def gather_evaluator_state(evaluator: DetectionEvaluator, ctx: DistContext) -> DetectionEvaluator | None:
    """Every rank's evaluator merged on rank 0, in rank order (``None`` on the other ranks). One gather."""
    gathered = gather_to_main(evaluator.state_arrays(), ctx)
    return None if gathered is None else type(evaluator).merged_from_states(gathered, evaluator)
