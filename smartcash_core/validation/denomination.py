"""Image-level denomination: which banknote an image shows (the largest true ``*_whole`` box) against what
the model says (its most confident ``*_whole`` detection at the decision confidence), and the
classification metrics over all images."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from smartcash_core.classes import ClassTable
from smartcash_core.validation.detections import ImageDetections
from smartcash_core.validation.params import DECISION_CONF

NO_DENOMINATION = "none"


def whole_class_ids(class_table: ClassTable) -> np.ndarray:
    """Fine ids of the ``*_whole`` classes (whole banknotes), which decide an image's denomination."""
    return np.asarray(
        [i for i, name in enumerate(class_table.fine_names) if name.endswith("_whole")], np.int64
    )


def image_denominations(
    image: ImageDetections, whole: np.ndarray, fine_to_mapped: np.ndarray
) -> tuple[int | None, int | None]:
    """Mapped id of the largest true ``*_whole`` box and of the most confident predicted one (or None)."""
    true_id = _largest_whole(image.gt_boxes, image.gt_classes, whole)
    confident = image.scores >= DECISION_CONF
    predicted_id = _most_confident_whole(image.scores[confident], image.classes[confident], whole)
    return (
        None if true_id is None else int(fine_to_mapped[true_id]),
        None if predicted_id is None else int(fine_to_mapped[predicted_id]),
    )


def _largest_whole(gt_boxes: torch.Tensor, gt_classes: torch.Tensor, whole: np.ndarray) -> int | None:
    is_whole = torch.from_numpy(np.isin(gt_classes.numpy(), whole))
    if not bool(is_whole.any()):
        return None
    areas = (gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1])
    areas = torch.where(is_whole, areas, torch.full_like(areas, -1.0))
    return int(gt_classes[int(areas.argmax())])


def _most_confident_whole(scores: torch.Tensor, classes: torch.Tensor, whole: np.ndarray) -> int | None:
    is_whole = torch.from_numpy(np.isin(classes.numpy(), whole))
    if not bool(is_whole.any()):
        return None
    return int(classes[is_whole][int(scores[is_whole].argmax())])


def denomination_metrics(per_image: Sequence[dict[str, Any]], class_table: ClassTable) -> dict[str, Any]:
    """Image-level denomination classification: accuracy, macro P/R/F1, confusion matrix.

    ``per_image`` rows carry ``true_denomination`` and ``predicted_denomination`` (mapped ids or None).
    Labels are the mapped denominations reachable from ``*_whole`` classes plus ``none``; the matrix rows are
    true labels, columns predicted ones. Macro averages run over labels that occur as truth or prediction.
    """
    mapped_ids = sorted({int(class_table.fine_to_mapped[i]) for i in whole_class_ids(class_table)})
    labels = [class_table.mapped_names[i] for i in mapped_ids] + [NO_DENOMINATION]
    slot = {mapped: position for position, mapped in enumerate(mapped_ids)}
    none_slot = len(mapped_ids)
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for row in per_image:
        true_id, predicted_id = row["true_denomination"], row["predicted_denomination"]
        true_slot = none_slot if true_id is None else slot[true_id]
        predicted_slot = none_slot if predicted_id is None else slot[predicted_id]
        matrix[true_slot, predicted_slot] += 1
    return _classification_scores(matrix, labels)


def _classification_scores(matrix: np.ndarray, labels: list[str]) -> dict[str, Any]:
    total = int(matrix.sum())
    correct = np.diag(matrix).astype(np.float64)
    predicted, actual = matrix.sum(0).astype(np.float64), matrix.sum(1).astype(np.float64)
    present = (predicted + actual) > 0
    precision = np.divide(correct, predicted, out=np.zeros_like(correct), where=predicted > 0)
    recall = np.divide(correct, actual, out=np.zeros_like(correct), where=actual > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(correct), where=denominator > 0)
    return {
        "images": total,
        "accuracy": float(correct.sum() / total) if total else 0.0,
        "macro_precision": float(precision[present].mean()) if present.any() else 0.0,
        "macro_recall": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "labels": labels,
        "confusion_matrix": matrix.tolist(),
        "decision_conf": DECISION_CONF,
    }
