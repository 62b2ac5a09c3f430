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
