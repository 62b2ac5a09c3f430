"""Two real gloo processes on this machine: what rank 0 receives, and that the merged validation result
equals the single-process one exactly (uneven split, a rank with zero images, both protocols)."""

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
# What legitimately differs between two runs: timings and the process-wide cache counters.
VOLATILE_KEYS = ("wall_s", "speed_ms_per_image", "cache", "cache_job", "distributed")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory: pytest.TempPathFactory, mixed_aspect_dataset: Path,
                 trained_weights: Path) -> list[dict[str, Any]]:
    """Spawn the group once (process start-up dominates) and run every scenario in it."""
    out_dir = tmp_path_factory.mktemp("gloo")
    setup = {"data": str(mixed_aspect_dataset), "weights": str(trained_weights),
             "missing": str(out_dir / "no_such_dataset")}
    mp.start_processes(workers.run_rank, args=(WORLD_SIZE, free_port(), str(out_dir), list(workers.SCENARIOS),
                                               setup), nprocs=WORLD_SIZE, join=True, start_method="spawn")
    return [pickle.loads(Path(out_dir, f"rank{rank}.pkl").read_bytes()) for rank in range(WORLD_SIZE)]


def stable_part(result: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in result.items() if key not in VOLATILE_KEYS}


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


def test_gather_evaluator_state_merges_on_rank0_only(rank_results: list[dict[str, Any]]) -> None:
    assert rank_results[1]["evaluator_gather"] is None
    outcome = rank_results[0]["evaluator_gather"]
    assert outcome["single"]["map50"] > 0.1
    assert outcome["merged"] == outcome["single"]


@pytest.mark.parametrize(("scenario", "images_per_rank"), [
    ("uneven_yolo", [4, 5]), ("empty_shard_yolo", [0, 9]), ("uneven_coco", [3, 6])])
def test_merged_result_equals_the_single_process_result(
    rank_results: list[dict[str, Any]], scenario: str, images_per_rank: list[int]
) -> None:
    assert rank_results[1][scenario] is None  # only rank 0 reports
    merged, single = rank_results[0][scenario]["distributed"], rank_results[0][scenario]["single"]
    assert single["metrics"]["map50"] > 0.05  # a real detector: matches, misses and score ties all occur
    assert stable_part(merged) == stable_part(single)  # metrics, per-image rows, dataset report: exact
    ranks = merged["distributed"]["ranks"]
    assert [rank["images"] for rank in ranks] == images_per_rank
    assert merged["distributed"]["world_size"] == 2 and merged["distributed"]["backend"] == "gloo"
    for rank in ranks:
        assert rank["wall_s"] > 0
        if rank["images"]:
            assert rank["images_per_s"] > 0 and rank["speed_ms_per_image"]["inference"] > 0
    assert merged["distributed"]["gather_s"] > 0 and merged["distributed"]["merge_s"] > 0


def test_coco_protocol_merge_carries_the_coco_stats(rank_results: list[dict[str, Any]]) -> None:
    merged = rank_results[0]["uneven_coco"]["distributed"]["metrics"]
    assert merged["protocol"] == "coco"
    assert len(merged["coco_stats"]) == 12


def test_a_failing_rank_fails_every_rank_instead_of_hanging(rank_results: list[dict[str, Any]]) -> None:
    main_error, other_error = rank_results[0]["failing_rank"], rank_results[1]["failing_rank"]
    assert "rank 0:" in main_error and "rank 1:" in main_error and "no_such_dataset" in main_error
    assert other_error.startswith("rank 1 failed:")
