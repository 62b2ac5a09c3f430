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

from smartcash_core.metrics.matching import group_pairs, iou_yolo, segment_starts

CONFUSION_CONF = 0.25
CONFUSION_IOU = 0.45


def confusion_matrix(
    pred_boxes: np.ndarray,
    pred_scores: np.ndarray,
    pred_classes: np.ndarray,
    pred_image: np.ndarray,
    gt_boxes: np.ndarray,
    gt_classes: np.ndarray,
    gt_image: np.ndarray,
    num_classes: int,
    conf: float = CONFUSION_CONF,
    iou: float = CONFUSION_IOU,
) -> np.ndarray:
    """Counts [K + 1, K + 1] int64 for a batch; boxes xyxy [N, 4] / [M, 4], ``*_image`` image positions."""
    confident = np.flatnonzero(pred_scores.astype(np.float32) > np.float32(conf))
    pairs = group_pairs(pred_image[confident], gt_image)
    pair_iou = iou_yolo(
        gt_boxes.astype(np.float32)[pairs.gt], pred_boxes[confident].astype(np.float32)[pairs.pred]
    )
    keep = pair_iou > np.float32(iou)
    pair_pred, pair_gt, pair_iou = pairs.pred[keep], pairs.gt[keep], pair_iou[keep]
    by_pred = np.lexsort((pair_gt, -pair_iou, pair_pred))  # best ground truth of each prediction first
    best_of_pred = by_pred[segment_starts(pair_pred[by_pred])]
    pair_pred, pair_gt, pair_iou = pair_pred[best_of_pred], pair_gt[best_of_pred], pair_iou[best_of_pred]
    by_gt = np.lexsort((pair_pred, -pair_iou, pair_gt))  # then the best prediction of each ground truth
    winners = by_gt[segment_starts(pair_gt[by_gt])]
    matched_pred, matched_gt = confident[pair_pred[winners]], pair_gt[winners]

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


def map_confusion(matrix: np.ndarray, fine_to_mapped: np.ndarray, num_mapped: int) -> np.ndarray:
    """Aggregate a fine matrix [K + 1, K + 1] into the mapped one [K' + 1, K' + 1].

    Matching is class-agnostic, so mapping the classes after matching equals matching mapped inputs.
    """
    index = np.append(fine_to_mapped, num_mapped)
    mapped = np.zeros((num_mapped + 1, num_mapped + 1), dtype=np.int64)
    np.add.at(mapped, (index[:, None], index[None, :]), matrix)
    return mapped
