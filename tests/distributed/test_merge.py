"""Merging evaluator states on rank 0 (no processes): rank-order concatenation gives the single-process
numbers exactly, with local or global image ids, empty shards and many score ties."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from smartcash_core.classes import default_class_table
from smartcash_core.distributed import concat_state_arrays, merge_evaluator_states
from smartcash_core.errors import DistributedError
from smartcash_core.metrics import DetectionEvaluator

NUM_IMAGES = 14
SHARDS = ((0, 5), (5, 5), (5, 14))  # uneven, with an empty middle shard


def random_images(seed: int) -> list[dict[str, np.ndarray]]:
    """Images with jittered copies of their ground truth as predictions; scores on a 0.1 grid tie often."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(NUM_IMAGES):
        n_gt = int(rng.integers(0, 6))
        corner = rng.uniform(0, 400, (n_gt, 2))
        gt = np.concatenate([corner, corner + rng.uniform(20, 120, (n_gt, 2))], axis=1)
        gt_classes = rng.integers(0, 17, n_gt)
        n_extra = int(rng.integers(0, 5))
        extra_corner = rng.uniform(0, 400, (n_extra, 2))
        extra = np.concatenate([extra_corner, extra_corner + 50], axis=1)
        boxes = np.concatenate([gt + rng.normal(0, 6, gt.shape), extra]).clip(0)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        classes = np.concatenate([gt_classes, rng.integers(0, 17, n_extra)])
        scores = np.round(rng.uniform(0.05, 1.0, len(boxes)), 1)
        images.append(
            {"boxes": boxes, "scores": scores, "classes": classes, "gt": gt, "gt_classes": gt_classes}
        )
    return images


def evaluator_over(
    images: list[dict[str, np.ndarray]], protocol: str, ids: list[int] | None
) -> DetectionEvaluator:
    evaluator = DetectionEvaluator(num_classes=17, protocol=protocol, class_table=default_class_table())
    if images:
        evaluator.update_batch([im["boxes"] for im in images], [im["scores"] for im in images],
                               [im["classes"] for im in images], [im["gt"] for im in images],
                               [im["gt_classes"] for im in images], image_ids=ids)
    return evaluator


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
