"""Shards and torchrun environment parsing: pure functions, checked exhaustively on small sizes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smartcash_core.errors import DistributedError
from smartcash_core.validation.distributed import (
    init_from_env,
    read_torchrun_env,
    shard_bounds,
    shard_indices,
)


@given(count=st.integers(0, 300), world_size=st.integers(1, 12), unit=st.integers(1, 20))
def test_shards_are_contiguous_whole_blocks_in_rank_order(count: int, world_size: int, unit: int) -> None:
    shards = [shard_indices(count, rank, world_size, unit) for rank in range(world_size)]
    # Concatenated in rank order, the shards are exactly the single-process order.
    assert [index for shard in shards for index in shard] == list(range(count))
    blocks = [-(-len(shard) // unit) for shard in shards]
    assert max(blocks) - min(blocks) <= 1  # balanced to within one block
    for shard in shards[:-1]:
        if shard and shard[-1] != count - 1:
            assert len(shard) % unit == 0  # only the shard holding the last image ends mid-block


def test_uneven_split_and_empty_shards_written_out() -> None:
    assert [shard_indices(5, rank, 2) for rank in range(2)] == [[0, 1], [2, 3, 4]]
    assert [shard_bounds(6, rank, 3, unit=4) for rank in range(3)] == [(0, 0), (0, 4), (4, 6)]
    assert [shard_indices(1, rank, 3) for rank in range(3)] == [[], [], [0]]
    assert shard_indices(0, 0, 4) == []


@pytest.mark.parametrize(("count", "rank", "world_size", "unit"), [(-1, 0, 1, 1), (3, 2, 2, 1), (3, 0, 0, 1),
                                                                    (3, 0, 1, 0)])
def test_bad_shard_requests_raise_a_typed_error(count: int, rank: int, world_size: int, unit: int) -> None:
    with pytest.raises(DistributedError):
        shard_bounds(count, rank, world_size, unit)


def test_torchrun_variables_are_read() -> None:
    assert read_torchrun_env({}) is None
    assert read_torchrun_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == (3, 4, 1)


@pytest.mark.parametrize("env", [{"RANK": "x", "WORLD_SIZE": "2"}, {"RANK": "2", "WORLD_SIZE": "2"},
                                 {"RANK": "0", "WORLD_SIZE": "0"}, {"RANK": "0", "WORLD_SIZE": "2",
                                                                     "LOCAL_RANK": "-1"}])
def test_inconsistent_torchrun_variables_raise(env: dict[str, str]) -> None:
    with pytest.raises(DistributedError):
        read_torchrun_env(env)


def test_single_process_runs_get_no_context() -> None:
    assert init_from_env("cpu", env={}) is None
    assert init_from_env("cpu", env={"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}) is None
