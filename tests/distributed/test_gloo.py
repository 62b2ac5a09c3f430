"""Two real gloo processes on this machine: what rank 0 receives and what it merges."""

from __future__ import annotations

import pickle
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch.multiprocessing as mp

from tests.distributed import workers

WORLD_SIZE = 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Spawn the group once (process start-up dominates) and run every scenario in it."""
    out_dir = tmp_path_factory.mktemp("gloo")
    names = list(workers.SCENARIOS)
    mp.start_processes(workers.run_rank, args=(WORLD_SIZE, free_port(), str(out_dir), names),
                       nprocs=WORLD_SIZE, join=True, start_method="spawn")
    return [pickle.loads(Path(out_dir, f"rank{rank}.pkl").read_bytes()) for rank in range(WORLD_SIZE)]


def test_each_rank_got_its_place_in_a_gloo_group(rank_results: list[dict[str, Any]]) -> None:
    contexts = [result["context"] for result in rank_results]
    assert [(ctx.rank, ctx.world_size, ctx.backend, ctx.device.type) for ctx in contexts] == [
        (0, 2, "gloo", "cpu"), (1, 2, "gloo", "cpu")]
    assert [ctx.is_main for ctx in contexts] == [True, False]


def test_rank0_receives_every_payload_in_rank_order(rank_results: list[dict[str, Any]]) -> None:
    main = rank_results[0]["arrays"]
    assert rank_results[1]["arrays"] is None  # only rank 0 holds the gathered states
    gathered = main["gathered"]
    assert [payload["rank"] for payload in gathered] == [0, 1]
    assert gathered[0]["scores"].shape == (0,) and gathered[0]["hits"].shape == (0, 10)
    np.testing.assert_array_equal(gathered[1]["scores"], np.array([100.0, 101.0, 102.0]))
    assert gathered[1]["hits"].dtype == bool and gathered[1]["hits"].all()
    assert main["merge_s"] > 0
