"""Random detection cases for evaluator merge tests, shared by in-process tests and spawned ranks."""

from __future__ import annotations

import numpy as np

from smartcash_core.classes import default_class_table
from smartcash_core.metrics import DetectionEvaluator

NUM_IMAGES = 14


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
