"""Shared helpers for the metrics tests: fixture loading and feeding per-image dicts to the evaluator."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from smartcash_core.classes import ClassTable
from smartcash_core.metrics import DetectionEvaluator, MetricsResult

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "metric_cases.json"


@cache
def fixture_cases() -> list[dict[str, Any]]:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))["cases"]


def split_image(image: dict[str, Any]) -> tuple[np.ndarray, ...]:
    """(pred_boxes [N, 4], pred_scores [N], pred_classes [N], gt_boxes [M, 4], gt_classes [M])."""
    pred = np.asarray(image["pred"], dtype=np.float64).reshape(-1, 6)
    gt = np.asarray(image["gt"], dtype=np.float64).reshape(-1, 5)
    return pred[:, :4], pred[:, 4], pred[:, 5].astype(np.int64), gt[:, :4], gt[:, 4].astype(np.int64)


def evaluate_images(
    images: Sequence[dict[str, Any]], n_classes: int, protocol: str, class_table: ClassTable | None = None
) -> MetricsResult:
    evaluator = DetectionEvaluator(n_classes, protocol, class_table)
    columns = list(zip(*(split_image(image) for image in images), strict=True))
    evaluator.update_batch(*columns)
    return evaluator.compute()


def yolo_differences(result: MetricsResult, expected: dict[str, Any]) -> float:
    assert result.classes.tolist() == expected["classes"]
    diffs = [np.abs(result.ap - np.asarray(expected["ap"])).max(initial=0.0)]
    for key in ("precision", "recall", "f1"):
        diffs.append(np.abs(getattr(result, key) - np.asarray(expected[key])).max(initial=0.0))
    diffs += [abs(result.map50 - expected["map50"]), abs(result.map50_95 - expected["map50_95"])]
    return float(max(diffs))


def coco_differences(result: MetricsResult, expected: dict[str, Any], n_classes: int) -> float:
    assert result.coco_stats is not None
    per_class = np.full(n_classes, -1.0)
    per_class[result.classes] = result.ap.mean(axis=1)
    return float(
        max(
            np.abs(result.coco_stats - np.asarray(expected["stats"])).max(),
            np.abs(per_class - np.asarray(expected["per_class_ap50_95"])).max(),
        )
    )


def random_images(seed: int, count: int = 14) -> list[tuple[np.ndarray, ...]]:
    """Per image (pred_boxes, pred_scores, pred_classes, gt_boxes, gt_classes), 17 classes: jittered copies
    of the ground truth plus stray boxes, scores on a 0.1 grid so ties across images are common, some
    images without ground truth or without predictions."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
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
        images.append((boxes, scores, classes, gt, gt_classes))
    return images


def evaluator_over(
    images: Sequence[tuple[np.ndarray, ...]],
    protocol: str,
    class_table: ClassTable | None,
    image_ids: Sequence[int] | None = None,
) -> DetectionEvaluator:
    """A 17-class evaluator fed ``images`` in one ``update_batch`` (nothing when there are none)."""
    evaluator = DetectionEvaluator(17, protocol, class_table)
    if images:
        evaluator.update_batch(*zip(*images, strict=True), image_ids=image_ids)
    return evaluator
