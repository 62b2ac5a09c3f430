"""Code that runs inside spawned ranks (imported by name in each child, so it lives in a module).

Each rank joins a gloo group through :func:`init_from_env`, exactly as under torchrun, runs every
scenario the parent asks for, and writes what rank 0 received to a pickle for the parent to check.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from smartcash_core.distributed import DistContext, init_from_env, shutdown, timed_gather

Scenario = Callable[[DistContext], Any]


def rank_arrays(ctx: DistContext) -> Any:
    """Rank r sends r*3 rows (rank 0 sends none), so uneven and empty payloads travel together."""
    rows = ctx.rank * 3
    payload = {"rank": ctx.rank, "scores": np.arange(rows, dtype=np.float64) + 100 * ctx.rank,
               "hits": np.ones((rows, 10), dtype=bool)}
    gathered, merge_s = timed_gather(payload, ctx)
    return None if gathered is None else {"gathered": gathered, "merge_s": merge_s}


SCENARIOS: dict[str, Scenario] = {"arrays": rank_arrays}


def run_rank(rank: int, world_size: int, port: int, out_dir: str, scenario_names: list[str]) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank), OMP_NUM_THREADS="1")
    ctx = init_from_env("cpu")
    if ctx is None:
        raise RuntimeError("init_from_env returned no context inside a 2-process group")
    try:
        results = {name: SCENARIOS[name](ctx) for name in scenario_names}
        results["context"] = ctx
    finally:
        shutdown(ctx)
    Path(out_dir, f"rank{rank}.pkl").write_bytes(pickle.dumps(results))
