"""Accumulators behind one interface: state arrays with declared merge rules, merged in one process or from
rank shards, give the single-pass result; a new accumulator is fed, timed, merged and reported by the runner
without any change to it."""

from __future__ import annotations

import pickle
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from smartcash_core.checkpoint import LoadedModel, load_model
from smartcash_core.errors import MetricStateError, SmartCashError
from smartcash_core.validation.accumulators.base import (
    ArrayAccumulator,
    MergeRule,
    ResultDraft,
    StateArrays,
    merge_shard_states,
)
from smartcash_core.validation.accumulators.loss import LossAccumulator
from smartcash_core.validation.accumulators.standard import standard_accumulators
from smartcash_core.validation.detections import ProcessedBatch
from smartcash_core.validation.distributed_pass import ShardState, merge_shards
from smartcash_core.validation.params import ValidationParams
from smartcash_core.validation.runner import ValidationState, build_result, collect_validation_state
from smartcash_core.validation.source import load_source, plan_batches
from smartcash_core.validation.timing import rank_speed

PARAMS = ValidationParams(imgsz=160, batch_size=2, device="cpu", workers=0, compute_loss=True)
VOLATILE = ("wall_s", "speed_ms_per_image", "cache", "cache_job")


class ConfidentBoxes(ArrayAccumulator):
    """A metric the runner has never heard of: boxes at the decision confidence, and what each batch was."""

    name = "confident_boxes"
    stage = "confident"

    def __init__(self) -> None:
        self.count = 0
        self.image_ids: list[int] = []
        self.input_shapes: list[tuple[int, int]] = []

    def update(self, batch: ProcessedBatch) -> None:
        self.count += sum(int((image.scores >= 0.25).sum()) for image in batch.images)
        self.image_ids += batch.image_ids
        self.input_shapes.append(batch.input_hw)

    def state(self) -> StateArrays:
        return {"count": np.asarray([self.count]), "image_ids": np.asarray(self.image_ids, dtype=np.int64)}

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        self.count = int(state["count"].sum())
        self.image_ids = [int(value) for value in state["image_ids"]]

    def merge_rules(self) -> Mapping[str, MergeRule]:
        return {"count": MergeRule.SUM, "image_ids": MergeRule.IMAGE_ID}

    def result(self, into: ResultDraft) -> None:
        into.metrics["confident_boxes"] = self.count


def accumulators(model: LoadedModel) -> list[Any]:
    return [*standard_accumulators(model, PARAMS), ConfidentBoxes()]


def stable(result_dict: dict[str, Any]) -> dict[str, Any]:
    """The result without timings and cache totals; the loss (float sums added in another grouping when
    shards merge) rounded to 12 significant digits."""
    stable = {key: value for key, value in result_dict.items() if key not in VOLATILE}
    loss = stable["metrics"]["loss"]
    parts = {part: float(f"{value:.12g}") for part, value in loss.items() if part != "gains"}
    stable["metrics"]["loss"] = {**parts, "gains": loss["gains"]}
    return stable


@pytest.fixture(scope="module")
def model(trained_weights: Path) -> LoadedModel:
    return load_model(trained_weights, "cpu")


@pytest.fixture(scope="module")
def shard_indices(model: LoadedModel, mixed_aspect_dataset: Path) -> list[list[int]]:
    """Two shards of whole batches (2 + 3 of the 5 batches), as two ranks would get them."""
    plans = plan_batches(load_source(mixed_aspect_dataset, "val", 17), PARAMS, model.stride)
    assert len(plans) == 5
    return [[ref.index for plan in part for ref in plan.refs] for part in (plans[:2], plans[2:])]


@pytest.fixture(scope="module")
def full(model: LoadedModel, mixed_aspect_dataset: Path) -> ValidationState:
    return collect_validation_state(model, mixed_aspect_dataset, PARAMS, accumulators=accumulators(model))


def shard_states(model: LoadedModel, data: Path, shards: list[list[int]]) -> list[ValidationState]:
    return [
        collect_validation_state(model, data, PARAMS, shard=shard, accumulators=accumulators(model))
        for shard in shards
    ]


def test_a_new_accumulator_is_fed_timed_and_reported(
    model: LoadedModel, full: ValidationState, mixed_aspect_dataset: Path
) -> None:
    extra = full.accumulators[-1]
    assert isinstance(extra, ConfidentBoxes)
    assert extra.image_ids == list(range(9))  # every image once, in processing order
    plans = plan_batches(load_source(mixed_aspect_dataset, "val", 17), PARAMS, model.stride)
    assert extra.input_shapes == [plan.shape for plan in plans]
    assert full.log.stage_seconds["confident"] > 0 and full.log.stage_seconds["loss"] > 0
    result = build_result(full, model, PARAMS, wall_s=1.0)
    assert result.metrics["confident_boxes"] == sum(row["predictions"] for row in result.per_image) > 0
    assert list(result.metrics)[-3:] == ["classification", "loss", "confident_boxes"]


def test_shards_merged_in_process_equal_the_whole_pass(
    model: LoadedModel, full: ValidationState, mixed_aspect_dataset: Path, shard_indices: list[list[int]]
) -> None:
    first, second = shard_states(model, mixed_aspect_dataset, shard_indices)
    assert (first.log.images, second.log.images) == (4, 5)
    first.merge(second)
    merged = build_result(first, model, PARAMS, wall_s=1.0)
    expected = build_result(full, model, PARAMS, wall_s=1.0)
    assert merged.metrics["map50"] > 0.1 and merged.metrics["loss"]["total"] > 0
    assert stable(merged.to_dict()) == stable(expected.to_dict())
    assert merged.evaluator is not None and expected.evaluator is not None
    merged_state, expected_state = merged.evaluator.state_arrays(), expected.evaluator.state_arrays()
    assert sorted(merged_state) == sorted(expected_state)
    for key, value in expected_state.items():
        np.testing.assert_array_equal(merged_state[key], value, err_msg=key)


def test_shard_states_travel_as_plain_arrays_and_merge_on_rank_zero(
    model: LoadedModel, full: ValidationState, mixed_aspect_dataset: Path, shard_indices: list[list[int]]
) -> None:
    wire = [pickle.loads(pickle.dumps(ShardState.from_state(state)))
            for state in shard_states(model, mixed_aspect_dataset, shard_indices)]
    assert all(isinstance(array, np.ndarray) for shard in wire for state in shard.states.values()
               for array in state.values())
    merged = build_result(merge_shards(wire, accumulators(model)), model, PARAMS, wall_s=1.0)
    expected = build_result(full, model, PARAMS, wall_s=1.0)
    assert stable(merged.to_dict()) == stable(expected.to_dict())
    with pytest.raises(MetricStateError, match="share image ids"):
        merge_shards([wire[0], wire[0]], accumulators(model))


def test_states_with_other_accumulators_do_not_merge(model: LoadedModel, full: ValidationState) -> None:
    other = ValidationState(standard_accumulators(model, PARAMS), full.log)
    with pytest.raises(MetricStateError, match="different accumulators"):
        full.merge(other)
    with pytest.raises(MetricStateError, match="cannot merge accumulator"):
        full.accumulators[0].merge(full.accumulators[1])


def test_merge_rules_sum_concatenate_and_keep_image_ids_apart() -> None:
    rules = {"n": MergeRule.SUM, "rows": MergeRule.CONCAT, "ids": MergeRule.IMAGE_ID}
    first = {"n": np.array([1, 2]), "rows": np.array([[1.0], [2.0]]), "ids": np.array([0, 0, 1])}
    second = {"n": np.array([10, 20]), "rows": np.zeros((0, 1)), "ids": np.array([2])}
    merged = merge_shard_states([first, second], rules)
    np.testing.assert_array_equal(merged["n"], [11, 22])
    np.testing.assert_array_equal(merged["rows"], [[1.0], [2.0]])
    np.testing.assert_array_equal(merged["ids"], [0, 0, 1, 2])  # repeats inside one shard are fine
    odd_even = [{**first, "ids": np.array([0, 2])}, {**second, "ids": np.array([1, 3])}]
    interleaved = merge_shard_states(odd_even, rules)  # ranges overlap, ids do not: compared id by id
    np.testing.assert_array_equal(interleaved["ids"], [0, 2, 1, 3])
    with pytest.raises(MetricStateError, match="share image ids in 'ids'"):
        merge_shard_states([first, {**second, "ids": np.array([1])}], rules)
    with pytest.raises(MetricStateError, match="undeclared"):
        merge_shard_states([first], {"n": MergeRule.SUM})
    with pytest.raises(MetricStateError, match="declared keys"):
        merge_shard_states([first, {"n": np.array([1, 2])}], rules)
    with pytest.raises(MetricStateError, match="no state"):
        merge_shard_states([], rules)


def test_loss_needs_the_heads_raw_outputs(model: LoadedModel) -> None:
    batch = ProcessedBatch(images=(), metas=[], labels={}, head_levels=None, input_hw=(160, 160))
    with pytest.raises(SmartCashError, match="per-level outputs"):
        LossAccumulator(model).update(batch)


def test_rank_speed_lists_stages_in_pass_order() -> None:
    seconds = {"metrics": 4.0, "loss": 1.0, "decode": 2.0, "custom": 1.0, "loader_wait": 0.5}
    assert list(rank_speed(seconds, 2)) == ["loader_wait", "decode", "loss", "metrics", "custom"]
    assert rank_speed(seconds, 2)["metrics"] == 2000.0
    assert rank_speed(seconds, 0) == {}


def test_params_and_the_cli_parser_load_without_torch() -> None:
    code = ("import sys, smartcash_core.validation.params, smartcash_core.cli; "
            "smartcash_core.cli.build_parser(); print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
