"""Merging the states of many ranks by the rules the protocols declare (``state.merge_state_arrays`` and
``DetectionEvaluator.merged_from_states``): rank order with local or global image ids gives the
single-process state and numbers exactly, empty shards and score ties included; bad states are refused."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from smartcash_core.classes import ClassTable, default_class_table
from smartcash_core.errors import MetricStateError
from smartcash_core.metrics import DetectionEvaluator, MergeRule, merge_state_arrays
from smartcash_core.metrics.state import image_ids_overlap, rebase_local_image_ids
from tests.metrics.helpers import evaluator_over, random_images

SHARDS = ((0, 5), (5, 5), (5, 14))  # uneven, with an empty middle shard
PROTOCOLS = ["yolo", "coco"]
TABLES = {"table": default_class_table(), "no-table": None}


def as_dict(evaluator: DetectionEvaluator) -> dict[str, Any]:
    return evaluator.compute().to_dict()


def shard_states(protocol: str, table: ClassTable | None, global_ids: bool) -> list[dict[str, np.ndarray]]:
    images = random_images(seed=7)
    states = []
    for start, stop in SHARDS:
        ids = list(range(start, stop)) if global_ids else None  # local: every shard numbers from 0
        states.append(evaluator_over(images[start:stop], protocol, table, ids).state_arrays())
    return states


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("table_name", sorted(TABLES))
@pytest.mark.parametrize("global_ids", [False, True], ids=["local-ids", "global-ids"])
def test_rank_order_merge_equals_one_evaluator(protocol: str, table_name: str, global_ids: bool) -> None:
    table = TABLES[table_name]
    single = evaluator_over(random_images(seed=7), protocol, table)
    like = DetectionEvaluator(17, protocol, table)
    merged = DetectionEvaluator.merged_from_states(shard_states(protocol, table, global_ids), like)
    expected = as_dict(single)
    assert expected["map50"] > 0.1  # real matches, not an all-zero comparison
    assert as_dict(merged) == expected
    assert merged.num_images == 14 and merged.protocol == protocol and merged.class_table == table
    single_state, merged_state = single.state_arrays(), merged.state_arrays()
    assert list(merged_state) == list(single_state)
    for key, value in single_state.items():
        np.testing.assert_array_equal(merged_state[key], value, err_msg=key)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_global_ids_merge_in_any_rank_order(protocol: str) -> None:
    """With global ids the image order comes from the ids, not from the order the states arrive in."""
    table = default_class_table()
    states = shard_states(protocol, table, global_ids=True)
    like = DetectionEvaluator(17, protocol, table)
    in_order = DetectionEvaluator.merged_from_states(states, like)
    reversed_order = DetectionEvaluator.merged_from_states(states[::-1], like)
    assert as_dict(reversed_order) == as_dict(in_order)


def test_confusion_counts_add_up_and_predictions_concatenate() -> None:
    images = random_images(seed=3)
    first, second = (
        evaluator_over(images[a:b], "yolo", None, list(range(a, b))).state_arrays()
        for a, b in ((0, 6), (6, 14))
    )
    rules = DetectionEvaluator(17, "yolo").merge_rules()
    merged = merge_state_arrays([first, second], rules)
    np.testing.assert_array_equal(merged["confusion"], first["confusion"] + second["confusion"])
    scores = np.concatenate([first["pred_score"], second["pred_score"]])
    np.testing.assert_array_equal(merged["pred_score"], scores)
    np.testing.assert_array_equal(merged["image_ids"], np.arange(14))
    assert merged["pred_image"].dtype == np.int32  # global ids are kept as they are (no rebase, no widening)


def test_local_ids_are_rebased_by_the_images_of_earlier_ranks() -> None:
    images = random_images(seed=3)
    states = [evaluator_over(images[a:b], "coco", None).state_arrays() for a, b in ((0, 6), (6, 6), (6, 14))]
    rules = DetectionEvaluator(17, "coco").merge_rules()
    assert image_ids_overlap(states)
    merged = merge_state_arrays(states, rules)
    np.testing.assert_array_equal(merged["image_ids"], np.arange(14))
    for key in ("image_ids", "pred_image", "gt_image"):
        assert merged[key].dtype == np.int64, key
    offset_gt = states[2]["gt_image"].astype(np.int64) + 6
    np.testing.assert_array_equal(merged["gt_image"][-offset_gt.size :], offset_gt)
    rebased = rebase_local_image_ids(states, rules)
    assert [state["image_ids"].tolist() for state in rebased] == [list(range(6)), [], list(range(6, 14))]


def test_declared_rules_image_ids_sum_and_concatenate() -> None:
    for protocol in PROTOCOLS:
        for table in TABLES.values():
            evaluator = DetectionEvaluator(17, protocol, table)
            rules = evaluator.merge_rules()
            assert list(rules) == list(evaluator.state_arrays())  # every key has a rule, in state order
            by_rule = {rule: {key for key, r in rules.items() if r is rule} for rule in MergeRule}
            assert by_rule[MergeRule.IMAGE_ID] == {"image_ids", "pred_image", "gt_image"}
            assert by_rule[MergeRule.SUM] == {"confusion"}


def test_other_accumulators_merge_by_their_own_rules() -> None:
    """The merge knows nothing of detections: any state that declares its keys merges the same way."""
    rules = {"image_ids": MergeRule.IMAGE_ID, "loss": MergeRule.SUM, "row_value": MergeRule.CONCAT}
    first = {"image_ids": np.array([0, 1]), "loss": np.array([1.5, 2.0]), "row_value": np.array([10, 11])}
    second = {"image_ids": np.array([0]), "loss": np.array([0.5, 1.0]), "row_value": np.array([12])}
    merged = merge_state_arrays([first, second], rules)
    assert merged["image_ids"].tolist() == [0, 1, 2]
    assert merged["loss"].tolist() == [2.0, 3.0] and merged["row_value"].tolist() == [10, 11, 12]


def test_merging_nothing_is_an_error() -> None:
    with pytest.raises(MetricStateError, match="no evaluator state"):
        DetectionEvaluator.merged_from_states([], DetectionEvaluator(17, "yolo"))
    with pytest.raises(MetricStateError, match="no state to merge"):
        merge_state_arrays([], {"image_ids": MergeRule.IMAGE_ID})


def test_states_of_another_configuration_are_refused() -> None:
    images = random_images(seed=5)
    yolo_state = evaluator_over(images, "yolo", None).state_arrays()
    with pytest.raises(MetricStateError, match="missing"):
        DetectionEvaluator.merged_from_states([yolo_state], DetectionEvaluator(17, "coco"))
    no_table = evaluator_over(images, "coco", None).state_arrays()
    with_table = DetectionEvaluator(17, "coco", default_class_table())
    with pytest.raises(MetricStateError, match="mapped_rank"):  # the table's view is missing
        DetectionEvaluator.merged_from_states([no_table], with_table)
    assert isinstance(MetricStateError("x"), ValueError)  # callers that catch ValueError keep working


def test_a_key_without_a_rule_is_refused() -> None:
    state = evaluator_over(random_images(seed=5), "yolo", None).state_arrays()
    rules = DetectionEvaluator(17, "yolo").merge_rules()
    with pytest.raises(MetricStateError, match="undeclared \\['extra'\\]"):
        merge_state_arrays([state, {**state, "extra": np.zeros(3)}], rules)
    partial = {key: value for key, value in state.items() if key != "pred_score"}
    with pytest.raises(MetricStateError, match="missing \\['pred_score'\\]"):
        merge_state_arrays([state, partial], rules)


def test_states_of_older_layout_merge_after_upgrade() -> None:
    """States from before the yolo hits were bit-packed (``{view}_hits`` [N, 10] bool) still merge."""
    images = random_images(seed=7)
    single = evaluator_over(images, "yolo", None)
    states = []
    for start, stop in SHARDS:
        state = evaluator_over(images[start:stop], "yolo", None, list(range(start, stop))).state_arrays()
        bits = state.pop("fine_hit_bits")
        state["fine_hits"] = (bits[:, None] >> np.arange(10, dtype=np.uint16)) & 1 == 1
        states.append(state)
    merged = DetectionEvaluator.merged_from_states(states, DetectionEvaluator(17, "yolo"))
    assert as_dict(merged) == as_dict(single)


def test_all_shards_empty() -> None:
    like = DetectionEvaluator(17, "coco", default_class_table())
    states = [DetectionEvaluator(17, "coco", default_class_table()).state_arrays() for _ in range(3)]
    merged = DetectionEvaluator.merged_from_states(states, like)
    result = merged.compute()
    assert merged.num_images == 0 and result.num_predictions == 0 and result.map50 == 0.0
