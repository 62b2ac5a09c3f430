"""Merging evaluator states on rank 0 (no processes): rank-order concatenation gives the single-process
numbers exactly, with local or global image ids, empty shards and many score ties."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from smartcash_core.classes import default_class_table
from smartcash_core.errors import DistributedError
from smartcash_core.metrics import DetectionEvaluator
from smartcash_core.validation.distributed import concat_state_arrays, merge_evaluator_states
from tests.distributed.evaluator_cases import evaluator_over, random_images

SHARDS = ((0, 5), (5, 5), (5, 14))  # uneven, with an empty middle shard


def as_dict(evaluator: DetectionEvaluator) -> dict[str, Any]:
    return evaluator.compute().to_dict()


@pytest.mark.parametrize("protocol", ["yolo", "coco"])
@pytest.mark.parametrize("global_ids", [False, True], ids=["local-ids", "global-ids"])
def test_rank_order_merge_equals_one_evaluator(protocol: str, global_ids: bool) -> None:
    images = random_images(seed=7)
    single = evaluator_over(images, protocol, ids=None)
    states = []
    for start, stop in SHARDS:
        ids = list(range(start, stop)) if global_ids else None  # local: every shard numbers from 0
        states.append(evaluator_over(images[start:stop], protocol, ids).state_arrays())
    merged = merge_evaluator_states(states, DetectionEvaluator(17, protocol, default_class_table()))
    expected = as_dict(single)
    assert expected["map50"] > 0.1  # real matches, not an all-zero comparison
    assert as_dict(merged) == expected


def test_confusion_counts_add_up_and_predictions_concatenate() -> None:
    images = random_images(seed=3)
    first, second = (
        evaluator_over(images[a:b], "yolo", list(range(a, b))).state_arrays() for a, b in ((0, 6), (6, 14))
    )
    merged = concat_state_arrays([first, second])
    np.testing.assert_array_equal(merged["confusion"], first["confusion"] + second["confusion"])
    scores = np.concatenate([first["pred_score"], second["pred_score"]])
    np.testing.assert_array_equal(merged["pred_score"], scores)
    np.testing.assert_array_equal(merged["image_ids"], np.arange(14))


def test_merging_nothing_is_an_error() -> None:
    with pytest.raises(DistributedError):
        merge_evaluator_states([], DetectionEvaluator(17, "yolo"))
