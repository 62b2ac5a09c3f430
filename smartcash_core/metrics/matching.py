"""Prediction-to-ground-truth matching for both protocols, vectorized over every image of a batch.

Candidate pairs are built only inside a group (same image and, for the class-aware protocols, same
class), so the work is proportional to the pairs that can match, not to N x M.

Bit-exactness: the ``yolo`` rule computes IoU exactly like YOLOv5's ``box_iou`` on float32 tensors
(eps 1e-7, same operation order) and compares against ``torch.linspace(0.5, 0.95, 10)`` in float32;
the ``coco`` rule computes IoU like pycocotools' ``bbIou`` in float64 from xywh boxes (x2 = x1 + w).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# YOLOv5's thresholds are a float32 torch.linspace; these literals are bit-identical to it (checked in tests).
YOLO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10).astype(np.float32)
# pycocotools' thresholds: an exact float64 np.linspace.
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
COCO_AREA_RANGES = np.array([[0, 1e5**2], [0, 32**2], [32**2, 96**2], [96**2, 1e5**2]], dtype=np.float64)
COCO_MAX_DETS = (1, 10, 100)
_YOLO_EPS = np.float32(1e-7)


@dataclass(frozen=True)
class Pairs:
    """Candidate (prediction, ground truth) pairs, grouped by prediction, ground truth ascending inside."""

    pred: np.ndarray  # [P] int64 prediction row
    gt: np.ndarray  # [P] int64 ground-truth row


def group_pairs(pred_key: np.ndarray, gt_key: np.ndarray) -> Pairs:
    """All pairs with equal keys.

    pred_key [N] and gt_key [M] are int64 group keys (e.g. ``image * num_classes + class``).
    Returns pairs ordered by prediction row, then ground-truth row.
    """
    gt_order = np.argsort(gt_key, kind="stable")
    first, counts = _key_ranges(pred_key, gt_key, gt_order)
    pair_pred = np.repeat(np.arange(pred_key.shape[0], dtype=np.int64), counts)
    starts = np.cumsum(counts) - counts  # first pair of each prediction
    within = np.arange(pair_pred.shape[0], dtype=np.int64) - starts[pair_pred]
    return Pairs(pred=pair_pred, gt=gt_order[first[pair_pred] + within])


def _key_ranges(
    pred_key: np.ndarray, gt_key: np.ndarray, gt_order: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each prediction: where its key's run starts in the sorted ground-truth keys, and its length
    (``searchsorted`` left / right). Small key ranges (chunk-local image * class) use a count table:
    two gathers instead of two binary searches per prediction."""
    top = int(max(pred_key.max(initial=-1), gt_key.max(initial=-1))) + 1
    if (
        pred_key.size
        and top <= 4 * (pred_key.size + gt_key.size) + 4096
        and min(int(pred_key.min()), int(gt_key.min(initial=0))) >= 0
    ):
        gt_count = np.bincount(gt_key, minlength=top)
        gt_first = np.cumsum(gt_count) - gt_count
        return gt_first[pred_key], gt_count[pred_key]
    sorted_keys = gt_key[gt_order]
    first = np.searchsorted(sorted_keys, pred_key, side="left")
    return first, np.searchsorted(sorted_keys, pred_key, side="right") - first


def iou_yolo(gt_boxes: np.ndarray, pred_boxes: np.ndarray) -> np.ndarray:
    """Row-wise IoU of xyxy boxes [P, 4] exactly as YOLOv5's float32 ``box_iou(labels, detections)``: [P]."""
    a = gt_boxes.astype(np.float32, copy=False)
    b = pred_boxes.astype(np.float32, copy=False)
    inter_w = np.maximum(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), np.float32(0))
    inter_h = np.maximum(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), np.float32(0))
    inter = inter_w * inter_h
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a + area_b - inter + _YOLO_EPS)


def xyxy_to_coco(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """xyxy [N, 4] -> (boxes as pycocotools rebuilds them [N, 4] = x1, y1, x1 + w, y1 + h; area [N])."""
    boxes = boxes.astype(np.float64, copy=False)  # pycocotools works in double
    width = boxes[:, 2] - boxes[:, 0]
    height = boxes[:, 3] - boxes[:, 1]
    rebuilt = np.stack([boxes[:, 0], boxes[:, 1], boxes[:, 0] + width, boxes[:, 1] + height], axis=1)
    return rebuilt, width * height


def iou_coco(gt: np.ndarray, gt_area: np.ndarray, det: np.ndarray, det_area: np.ndarray) -> np.ndarray:
    """Row-wise IoU in float64 like pycocotools ``bbIou`` (no crowd); inputs from ``xyxy_to_coco``: [P]."""
    inter_w = np.minimum(det[:, 2], gt[:, 2]) - np.maximum(det[:, 0], gt[:, 0])
    inter_h = np.minimum(det[:, 3], gt[:, 3]) - np.maximum(det[:, 1], gt[:, 1])
    overlap = (inter_w > 0) & (inter_h > 0)
    inter = inter_w * inter_h
    union = det_area + gt_area - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=overlap)


def segment_starts(sorted_ids: np.ndarray) -> np.ndarray:
    """Start offsets of the runs of equal values in a sorted 1-D array."""
    if sorted_ids.size == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.concatenate(([True], sorted_ids[1:] != sorted_ids[:-1])))


def small_ints(values: np.ndarray) -> np.ndarray:
    """Non-negative integer keys (class ids, image * class) as int16 when they fit: numpy's stable sort is a
    radix sort there."""
    if values.size and int(values.max()) < np.iinfo(np.int16).max:
        return values.astype(np.int16)
    return values
