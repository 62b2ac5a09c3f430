"""The JSON contract of the metrics: the evaluator's views as tables, per-image match counts, the model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from smartcash_core.errors import SmartCashError
from smartcash_core.validation.inference import model_device
from smartcash_core.validation.params import DECISION_CONF, DECISION_IOU

if TYPE_CHECKING:
    from smartcash_core.checkpoint import LoadedModel
    from smartcash_core.classes import ClassTable
    from smartcash_core.metrics import DetectionEvaluator
    from smartcash_core.validation.accumulators.counts import ClassCounts


def summarize_metrics(
    computed: Any, class_table: ClassTable, protocol: str, counts: ClassCounts
) -> dict[str, Any]:
    """The evaluator's mapped and fine views as the JSON contract (headline = mapped view)."""
    if computed.mapped is None:
        raise SmartCashError("the metrics engine returned no mapped view; pass the class table to it")
    mapped = view_summary(
        computed.mapped, class_table.mapped_names, counts.mapped_instances, counts.mapped_images
    )
    fine = view_summary(computed, class_table.fine_names, counts.fine_instances, counts.fine_images)
    return {"protocol": protocol, **mapped, "fine": fine}


def view_summary(
    view: Any, names: Sequence[str], instances: np.ndarray, images: np.ndarray
) -> dict[str, Any]:
    """``map50``, ``map50_95``, ``precision``, ``recall`` and ``per_class[]`` of one metrics view.

    ``precision``/``recall`` are None under the ``coco`` protocol (COCOeval reports none); ``coco_stats``
    (the 12 ``COCOeval.stats``) is added there instead. A view without any ground truth has nothing to
    measure against: its four numbers (and ``coco_stats``) are None and ``per_class`` is empty (YOLOv5 prints
    zeros and a warning there; a null cannot be mistaken for a model that finds nothing).
    """
    if int(view.num_ground_truth) == 0:
        return _undefined_summary(view.coco_stats is not None)
    classes = [int(c) for c in np.asarray(view.classes).reshape(-1)]
    ap = np.asarray(view.ap, dtype=np.float64).reshape(len(classes), -1)
    precision = None if view.precision is None else np.asarray(view.precision, np.float64).reshape(-1)
    recall = None if view.recall is None else np.asarray(view.recall, np.float64).reshape(-1)
    per_class = [
        {
            "id": class_id,
            "name": names[class_id] if class_id < len(names) else str(class_id),
            "ap50": float(ap[row, 0]),
            "ap50_95": float(ap[row].mean()),
            "precision": None if precision is None else float(precision[row]),
            "recall": None if recall is None else float(recall[row]),
            "instances": int(instances[class_id]),
            "images": int(images[class_id]),
        }
        for row, class_id in enumerate(classes)
    ]
    summary: dict[str, Any] = {
        "map50": float(view.map50),
        "map50_95": float(view.map50_95),
        "precision": _mean_or_none(precision),
        "recall": _mean_or_none(recall),
        "per_class": per_class,
    }
    if view.coco_stats is not None:
        summary["coco_stats"] = [float(value) for value in np.asarray(view.coco_stats).reshape(-1)]
    return summary


def _undefined_summary(with_coco_stats: bool) -> dict[str, Any]:
    """The summary of a view without ground truth: same keys, every metric None, no per-class rows."""
    summary: dict[str, Any] = {"map50": None, "map50_95": None, "precision": None, "recall": None}
    summary["per_class"] = []
    if with_coco_stats:
        summary["coco_stats"] = None
    return summary


def _mean_or_none(values: np.ndarray | None) -> float | None:
    if values is None:
        return None
    return float(values.mean()) if len(values) else 0.0


def with_match_counts(
    per_image: Sequence[dict[str, Any]], evaluator: DetectionEvaluator
) -> list[dict[str, Any]]:
    """Per-image rows with ``predictions``, ``tp``, ``fp``, ``fn`` at IoU 0.5 among predictions with score
    >= 0.25 (fine classes), from ``evaluator.per_image_summary``.

    The counts are the protocol's own match decisions, so they add up to the true positives behind its
    precision and recall at that confidence. Under ``yolo`` that is YOLOv5's ``process_batch`` rule: all
    predictions (down to ``conf_thres``) are matched by IoU, so a lower-confidence prediction that overlaps a
    ground truth more takes it from a confident one, which then counts as a false positive. Rows keep their
    order; the input rows are not modified.
    """
    summary = evaluator.per_image_summary(iou=DECISION_IOU, conf=DECISION_CONF)
    slot = {int(image_id): position for position, image_id in enumerate(summary["image_id"])}
    rows = []
    for row in per_image:
        position = slot.get(int(row["order"]))
        if position is None:
            raise SmartCashError(f"image {row['file']} (index {row['index']}) is not in the metric state")
        counts = {
            "instances": int(summary["num_ground_truth"][position]),
            "predictions": int(summary["num_predictions"][position]),
            "tp": int(summary["tp"][position]),
            "fp": int(summary["fp"][position]),
            "fn": int(summary["fn"][position]),
        }
        identity = {key: row[key] for key in ("index", "order", "file")}
        rest = {key: value for key, value in row.items() if key not in counts and key not in identity}
        rows.append({**identity, **counts, **rest})
    return rows


def model_summary(model: LoadedModel) -> dict[str, Any]:
    """The ``model`` section of the result."""
    return {
        "source": str(model.source),
        "sha256": model.sha256,
        "imgsz": model.imgsz,
        "stride": model.stride,
        "num_classes": model.num_classes,
        "num_params": model.num_params,
        "device": str(model_device(model)),
    }
