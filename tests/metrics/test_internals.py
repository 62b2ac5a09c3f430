"""The shortcuts behind the engine's speed, each checked bit-for-bit against the plain computation it
replaces: AP from true-positive positions, the packed-key class/score order, and bucketed IoU grids."""

from __future__ import annotations

import numpy as np
import pytest

from smartcash_core.metrics import DetectionEvaluator, grid
from smartcash_core.metrics.coco_accumulate import _class_score_order
from smartcash_core.metrics.yolo import _ap_from_true_positives
from tests.metrics.helpers import split_image, yolo_differences
from tests.metrics.reference import _compute_ap, yolo_reference


def _full_curve_ap(tp: np.ndarray, n_labels: int) -> float:
    """YOLOv5's ``ap_per_class`` for one class and threshold, on the whole curve."""
    tpc = tp.cumsum()
    fpc = (1 - tp).cumsum()
    return _compute_ap(tpc / (n_labels + 1e-16), tpc / (tpc + fpc))


@pytest.mark.parametrize("seed", range(40))
def test_ap_from_true_positive_positions_equals_the_full_curve(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    tp = rng.random(n) < rng.choice([0.0, 0.1, 0.5, 0.9, 1.0])
    n_labels = int(tp.sum() + rng.integers(0 if tp.any() else 1, 4))
    assert _ap_from_true_positives(np.flatnonzero(tp), n, n_labels) == _full_curve_ap(tp, n_labels)


@pytest.mark.parametrize(
    "tp", [[1], [0], [1, 1, 1], [0, 0, 1], [1, 0, 0], [0, 1, 0, 1, 0], [1, 1, 0, 0, 1, 1]]
)
def test_ap_from_true_positive_positions_edge_patterns(tp: list[int]) -> None:
    flags = np.array(tp, dtype=bool)
    for n_labels in range(max(int(flags.sum()), 1), int(flags.sum()) + 3):
        expected = _full_curve_ap(flags, n_labels)
        assert _ap_from_true_positives(np.flatnonzero(flags), flags.size, n_labels) == expected


@pytest.mark.parametrize("seed", range(5))
def test_packed_key_order_equals_two_stable_argsorts(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 5000
    scores = rng.choice(np.array([-1.5, -0.0, 0.0, 0.25, 0.5, 1e-30, 3.0], dtype=np.float32), n)
    scores[::7] = rng.random(n // 7 + 1).astype(np.float32)
    classes = rng.integers(0, 17, n).astype(np.int32)
    order = np.argsort(-scores.astype(np.float64), kind="stable")
    expected = order[np.argsort(classes[order], kind="stable")]
    np.testing.assert_array_equal(_class_score_order(classes, scores, 17), expected)
    np.testing.assert_array_equal(_class_score_order(classes, scores.astype(np.float64), 17), expected)


def _crowded_images(seed: int) -> list[dict[str, list[float]]]:
    """Small images with many predictions and one with 150 ground truths but few predictions: padding
    everything to 150 slots would waste most of the grid, so images are bucketed by width."""
    rng = np.random.default_rng(seed)
    images = []
    for n_gt, n_pred in [(3, 40), (150, 6), (1, 30), (0, 10), (5, 50), (2, 20), (7, 60)]:
        corner = rng.integers(0, 500, (n_gt, 2)).astype(float)
        gt = np.concatenate([corner, corner + rng.integers(10, 80, (n_gt, 2))], axis=1)
        gt_classes = rng.integers(0, 3, n_gt)
        source = rng.integers(0, max(n_gt, 1), n_pred)
        near = gt[source] + rng.integers(-3, 4, (n_pred, 4)) if n_gt else rng.uniform(0, 500, (n_pred, 4))
        near[:, 2:] = np.maximum(near[:, 2:], near[:, :2] + 1)
        classes = gt_classes[source] if n_gt else rng.integers(0, 3, n_pred)
        classes = np.where(rng.random(n_pred) < 0.8, classes, rng.integers(0, 3, n_pred))
        scores = np.round(rng.uniform(0.05, 1.0, n_pred), 2)
        order = np.argsort(-scores, kind="stable")
        pred = np.column_stack([near, scores, classes])[order]
        images.append({"pred": pred.tolist(), "gt": np.column_stack([gt, gt_classes]).tolist()})
    return images


def test_crowded_images_are_bucketed() -> None:
    images = _crowded_images(seed=1)
    pred_counts = [len(image["pred"]) for image in images]
    gt_counts = [len(image["gt"]) for image in images]
    pred_image = np.repeat(np.arange(len(images)), pred_counts)
    grids = grid.image_grids(
        np.arange(pred_image.size), pred_image, np.repeat(np.arange(len(images)), gt_counts), len(images)
    )
    assert len(grids) > 1
    assert max(g.table.shape[0] for g in grids) == 150


def _evaluate(images: list[dict[str, list[float]]], protocol: str) -> dict[str, object]:
    evaluator = DetectionEvaluator(3, protocol)
    evaluator.update_batch(*zip(*(split_image(image) for image in images), strict=True))
    return evaluator.compute().to_dict()


@pytest.mark.parametrize("protocol", ["yolo", "coco"])
def test_bucketed_grids_equal_one_padded_grid(protocol: str, monkeypatch: pytest.MonkeyPatch) -> None:
    images = _crowded_images(seed=1)
    bucketed = _evaluate(images, protocol)
    monkeypatch.setattr(grid, "_WASTE_SLACK", 10**12)  # one grid, padded to 150 slots
    assert _evaluate(images, protocol) == bucketed


def test_bucketed_grids_match_literal_yolov5() -> None:
    images = _crowded_images(seed=2)
    evaluator = DetectionEvaluator(3, "yolo")
    evaluator.update_batch(*zip(*(split_image(image) for image in images), strict=True))
    assert yolo_differences(evaluator.compute(), yolo_reference(images)) <= 1e-9
