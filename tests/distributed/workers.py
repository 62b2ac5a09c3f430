"""Code that runs inside spawned ranks (imported by name in each child, so it lives in a module).

Each rank joins a gloo group through :func:`init_from_env`, exactly as under torchrun, runs every
scenario the parent asks for, and writes what it got to a pickle for the parent to check. Rank 0 also
computes the single-process reference in the same process, so both runs share one thread setting
(CPU convolutions differ in the last bits between thread counts).
"""

from __future__ import annotations

import functools
import os
import pickle
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smartcash_core.classes import default_class_table
from smartcash_core.errors import DistributedError
from smartcash_core.validation.distributed import (
    DistContext,
    gather_evaluator_state,
    init_from_env,
    shard_bounds,
    shutdown,
    timed_gather,
)
from smartcash_core.validation.distributed_pass import run_distributed_validation
from smartcash_core.validation.params import ValidationParams
from smartcash_core.validation.runner import run_validation
from tests.metrics.helpers import evaluator_over, random_images

Setup = Mapping[str, str]
Scenario = Callable[[DistContext, Setup], Any]


def rank_arrays(ctx: DistContext, setup: Setup) -> Any:
    """Rank r sends r*3 rows (rank 0 sends none), so uneven and empty payloads travel together."""
    rows = ctx.rank * 3
    payload = {"rank": ctx.rank, "scores": np.arange(rows, dtype=np.float64) + 100 * ctx.rank,
               "hits": np.ones((rows, 10), dtype=bool)}
    gathered, merge_s = timed_gather(payload, ctx)
    return None if gathered is None else {"gathered": gathered, "merge_s": merge_s}


def evaluator_gather(ctx: DistContext, setup: Setup) -> Any:
    """Each rank evaluates its shard of 14 random images (global ids); rank 0 merges and compares."""
    images = random_images(seed=11)
    start, stop = shard_bounds(len(images), ctx.rank, ctx.world_size, unit=4)  # 8 + 6 images
    mine = evaluator_over(images[start:stop], "yolo", default_class_table(), list(range(start, stop)))
    merged = gather_evaluator_state(mine, ctx)
    if merged is None:
        return None
    single = evaluator_over(images, "yolo", default_class_table())
    return {"merged": merged.compute().to_dict(), "single": single.compute().to_dict()}


@functools.cache
def _model(weights: str) -> Any:
    from smartcash_core.checkpoint import load_model

    return load_model(weights, "cpu")


def validation(params: ValidationParams) -> Scenario:
    """The distributed pass, and on rank 0 the single-process pass of the same model and data."""

    def scenario(ctx: DistContext, setup: Setup) -> Any:
        model = _model(setup["weights"])
        merged = run_distributed_validation(model, setup["data"], params, ctx)
        if merged is None:
            return None
        reference = run_validation(model, setup["data"], params)
        return {"distributed": merged.to_dict(), "single": reference.to_dict()}

    return scenario


def failing_rank(ctx: DistContext, setup: Setup) -> Any:
    """Every rank fails to read the dataset: each must raise instead of waiting for the others."""
    try:
        run_distributed_validation(_model(setup["weights"]), setup["missing"], ValidationParams(), ctx)
    except DistributedError as exc:
        return str(exc)
    return "no error"


# Batch plans of the 9-image test set: batch 2 -> 5 batches, split 2/3 (uneven);
# batch 16 -> 1 batch, so rank 0 validates nothing; batch 3 with the coco protocol -> 3 batches, split 1/2.
SCENARIOS: dict[str, Scenario] = {
    "arrays": rank_arrays,
    "evaluator_gather": evaluator_gather,
    "uneven_yolo": validation(ValidationParams(imgsz=320, batch_size=2, device="cpu", workers=0)),
    "empty_shard_yolo": validation(ValidationParams(imgsz=320, batch_size=16, device="cpu", workers=0)),
    "uneven_coco": validation(
        ValidationParams(imgsz=320, batch_size=3, device="cpu", workers=0, protocol="coco")
    ),
    "failing_rank": failing_rank,
}


def run_rank(
    rank: int, world_size: int, port: int, out_dir: str, names: list[str], setup: dict[str, str]
) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)  # two ranks on two cores
    ctx = init_from_env("cpu")
    if ctx is None:
        raise RuntimeError("init_from_env returned no context inside a 2-process group")
    try:
        results: dict[str, Any] = {name: SCENARIOS[name](ctx, setup) for name in names}
        results["context"] = ctx
    finally:
        shutdown(ctx)
    Path(out_dir, f"rank{rank}.pkl").write_bytes(pickle.dumps(results))
