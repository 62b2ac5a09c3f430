"""Detection confusion matrix with YOLOv5 conventions (``utils/metrics.py: ConfusionMatrix``).

Layout: ``matrix[predicted, true]`` of shape [K + 1, K + 1]; the last row counts ground truth nobody found
(background predicted), the last column counts predictions that hit no ground truth (background true).
Only predictions with confidence > 0.25 count; matching is class-agnostic with IoU > 0.45 (float32, as in
YOLOv5): each prediction keeps its best ground truth, then each ground truth keeps its best prediction.
Two deliberate differences from YOLOv5 7.0: exact IoU ties go to the lower row (YOLOv5's unstable sort
makes them arbitrary), and unmatched predictions are counted as background even in images where nothing
matched (YOLOv5 skips them there, which hides false positives on empty images).
"""

from __future__ import annotations

import numpy as np

from smartcash_core.metrics.grid import ImageGrid, Overlaps, overlaps
from smartcash_core.metrics.inputs import FlatBatch
from smartcash_core.metrics.matching import segment_starts

CONFUSION_CONF = 0.25
CONFUSION_IOU = 0.45


def confusion_matrix(
    batch: FlatBatch, num_classes: int, conf: float = CONFUSION_CONF, iou: float = CONFUSION_IOU
) -> np.ndarray:
    """Counts [K + 1, K + 1] int64 for a checked batch (``inputs.flatten_images``)."""
    confident = confident_rows(batch.pred_scores, conf)
    return confusion_from_overlaps(overlaps(batch, confident), batch, num_classes, conf, iou)


def confident_rows(pred_scores: np.ndarray, conf: float = CONFUSION_CONF) -> np.ndarray:
    """Rows of the predictions the confusion matrix counts (float32 score > ``conf``, like YOLOv5)."""
    return np.flatnonzero(pred_scores.astype(np.float32) > np.float32(conf))


def confusion_from_overlaps(
    overlap: Overlaps,
    batch: FlatBatch,
    num_classes: int,
    conf: float = CONFUSION_CONF,
    iou: float = CONFUSION_IOU,
) -> np.ndarray:
    """``confusion_matrix`` from IoU grids (``grid.overlaps``) that cover at least every confident
    prediction of an image with ground truth; reuses the IoU the ``yolo`` matching computed."""
    pred_scores, pred_classes, gt_classes = batch.pred_scores, batch.pred_classes, batch.gt_classes
    confident = confident_rows(pred_scores, conf)
    is_confident = np.zeros(pred_scores.shape[0], dtype=bool)
    is_confident[confident] = True
    best = [
        _best_ground_truth(grid, grid_iou, is_confident, iou)
        for grid, grid_iou in zip(overlap.grids, overlap.ious, strict=True)
    ]
    if best:
        pair_pred, pair_gt, pair_iou = (np.concatenate(parts) for parts in zip(*best, strict=True))
    else:
        pair_pred, pair_gt, pair_iou = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    by_gt = np.lexsort((pair_pred, -pair_iou, pair_gt))  # the best prediction of each ground truth
    winners = by_gt[segment_starts(pair_gt[by_gt])]
    matched_pred, matched_gt = pair_pred[winners], pair_gt[winners]

    background = num_classes
    gt_found = np.zeros(gt_classes.shape[0], dtype=bool)
    gt_found[matched_gt] = True
    pred_found = np.zeros(pred_classes.shape[0], dtype=bool)
    pred_found[matched_pred] = True
    unmatched_pred = confident[~pred_found[confident]]
    rows = np.concatenate(
        [pred_classes[matched_pred], np.full((~gt_found).sum(), background), pred_classes[unmatched_pred]]
    )
    cols = np.concatenate(
        [gt_classes[matched_gt], gt_classes[~gt_found], np.full(unmatched_pred.size, background)]
    )
    size = num_classes + 1
    return np.bincount(rows * size + cols, minlength=size * size).reshape(size, size).astype(np.int64)


def _best_ground_truth(
    grid: ImageGrid, iou: np.ndarray, is_confident: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each confident prediction's best ground truth (any class, IoU > threshold; exact ties: the lower
    row, which is the first slot): prediction rows, ground-truth rows, IoU. iou [W, n]."""
    best = iou.max(axis=0)
    local = np.flatnonzero(is_confident[grid.preds] & (best > np.float32(threshold)))
    best = best[local]
    slots = (iou[:, local] == best).argmax(axis=0)
    return grid.preds[local], grid.gt_rows(local, slots), best


def map_confusion(matrix: np.ndarray, fine_to_mapped: np.ndarray, num_mapped: int) -> np.ndarray:
    """Aggregate a fine matrix [K + 1, K + 1] into the mapped one [K' + 1, K' + 1].

    Matching is class-agnostic, so mapping the classes after matching equals matching mapped inputs.
    """
    index = np.append(fine_to_mapped, num_mapped)
    mapped = np.zeros((num_mapped + 1, num_mapped + 1), dtype=np.int64)
    np.add.at(mapped, (index[:, None], index[None, :]), matrix)
    return mapped
