"""The ``yolo`` protocol: YOLOv5 7.0 ``val.py`` matching (``process_batch``) and ``ap_per_class``.

Matching rule per image and IoU threshold t (float32): a prediction's candidates are ground truths of its
class with IoU >= t; each prediction keeps its best-IoU candidate; each ground truth then keeps the
*first* prediction (lowest row in the image, i.e. highest confidence after NMS) among those that chose it.
Because the best ground truth of a prediction does not depend on t, one pass gives all 10 thresholds.
Exact IoU ties inside one prediction's candidates are resolved by YOLOv5's own (unstable) argsort, so
the few images that have them are re-matched with the literal per-image procedure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from smartcash_core.metrics.matching import YOLO_IOU_THRESHOLDS, group_pairs, iou_yolo, segment_starts

_EPS = 1e-16
_PX = np.linspace(0, 1, 1000)
_RECALL_POINTS = np.linspace(0, 1, 101)


def yolo_hits(
    pred_boxes: np.ndarray,
    pred_classes: np.ndarray,
    pred_image: np.ndarray,
    gt_boxes: np.ndarray,
    gt_classes: np.ndarray,
    gt_image: np.ndarray,
    num_classes: int,
) -> np.ndarray:
    """True positives per prediction and IoU threshold, [N, 10] bool.

    Boxes are xyxy [N, 4] / [M, 4]; ``*_image`` are non-decreasing image positions. Rows of one image keep
    the caller's order (YOLOv5 uses NMS order: confidence descending).
    """
    hits = np.zeros((pred_boxes.shape[0], YOLO_IOU_THRESHOLDS.shape[0]), dtype=bool)
    pairs = group_pairs(pred_image * num_classes + pred_classes, gt_image * num_classes + gt_classes)
    # cast before gathering: same float32 values, half the memory traffic
    iou = iou_yolo(gt_boxes.astype(np.float32)[pairs.gt], pred_boxes.astype(np.float32)[pairs.pred])
    candidate = iou >= YOLO_IOU_THRESHOLDS[0]
    pair_pred, pair_gt, pair_iou = pairs.pred[candidate], pairs.gt[candidate], iou[candidate]
    if pair_pred.size == 0:
        return hits
    starts = segment_starts(pair_pred)
    best_iou = np.maximum.reduceat(pair_iou, starts)
    segment = np.repeat(np.arange(starts.size), np.diff(np.append(starts, pair_pred.size)))
    at_best = pair_iou == best_iou[segment]
    best_rows = np.flatnonzero(at_best)
    first_best = best_rows[segment_starts(segment[best_rows])]
    preds, best_gt = pair_pred[starts], pair_gt[first_best]
    _mark_first_prediction_per_gt(hits, preds, best_gt, best_iou)
    tied = np.add.reduceat(at_best, starts) > 1
    for position in np.unique(pred_image[preds[tied]]):
        _rematch_image_literally(
            hits, int(position), pred_boxes, pred_classes, pred_image, gt_boxes, gt_classes, gt_image
        )
    return hits


def _mark_first_prediction_per_gt(
    hits: np.ndarray, preds: np.ndarray, best_gt: np.ndarray, best_iou: np.ndarray
) -> None:
    order = np.lexsort((preds, best_gt))  # by ground truth, then prediction row
    for t, threshold in enumerate(YOLO_IOU_THRESHOLDS):
        selected = order[best_iou[order] >= threshold]
        winners = selected[segment_starts(best_gt[selected])]
        hits[preds[winners], t] = True


def _rematch_image_literally(
    hits: np.ndarray,
    position: int,
    pred_boxes: np.ndarray,
    pred_classes: np.ndarray,
    pred_image: np.ndarray,
    gt_boxes: np.ndarray,
    gt_classes: np.ndarray,
    gt_image: np.ndarray,
) -> None:
    """YOLOv5's ``process_batch`` for one image, step by step (same arrays, same sorts)."""
    pred_rows = np.flatnonzero(pred_image == position)
    gt_rows = np.flatnonzero(gt_image == position)
    n_gt, n_pred = gt_rows.size, pred_rows.size
    label_index = np.repeat(np.arange(n_gt), n_pred)
    det_index = np.tile(np.arange(n_pred), n_gt)
    iou = iou_yolo(gt_boxes[gt_rows][label_index], pred_boxes[pred_rows][det_index]).reshape(n_gt, n_pred)
    same_class = gt_classes[gt_rows][:, None] == pred_classes[pred_rows][None, :]
    hits[pred_rows] = False
    for t, threshold in enumerate(YOLO_IOU_THRESHOLDS):
        label, det = np.nonzero((iou >= threshold) & same_class)  # row-major, like torch.where
        if label.size == 0:
            continue
        matches = np.stack([label.astype(np.float32), det.astype(np.float32), iou[label, det]], axis=1)
        if label.size > 1:
            matches = matches[matches[:, 2].argsort()[::-1]]
            matches = matches[np.unique(matches[:, 1], return_index=True)[1]]
            matches = matches[np.unique(matches[:, 0], return_index=True)[1]]
        hits[pred_rows[matches[:, 1].astype(np.int64)], t] = True


@dataclass(frozen=True)
class YoloMetrics:
    """``ap_per_class`` output: classes with ground truth [C], ap [C, 10], precision/recall/f1 [C]."""

    classes: np.ndarray
    ap: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray

    @property
    def map50(self) -> float:
        return float(self.ap[:, 0].mean()) if self.ap.size else 0.0

    @property
    def map50_95(self) -> float:
        return float(self.ap.mean(1).mean()) if self.ap.size else 0.0


def yolo_metrics(
    hits: np.ndarray, scores: np.ndarray, pred_classes: np.ndarray, gt_classes: np.ndarray
) -> YoloMetrics:
    """YOLOv5 7.0 ``ap_per_class`` on predictions concatenated in image order.

    hits [N, 10] bool, scores [N] (cast to float32 as YOLOv5's tensors are), pred_classes [N], gt_classes [M].
    Predictions are ordered with ``np.argsort(-conf)`` (not stable) over the whole array, exactly like
    YOLOv5, so score ties fall the way they fall there on the same numpy build and CPU.
    """
    classes, gt_counts = np.unique(gt_classes, return_counts=True)
    n_classes = classes.shape[0]
    zeros = np.zeros(n_classes)
    if not hits.any():  # val.py skips ap_per_class and reports zeros
        return YoloMetrics(classes, np.zeros((n_classes, hits.shape[1])), zeros, zeros.copy(), zeros.copy())
    conf = scores.astype(np.float32)
    order = np.argsort(-conf)
    hits, conf, pred_classes = hits[order], conf[order], pred_classes[order]
    by_class = np.argsort(pred_classes, kind="stable")  # keeps the confidence order inside a class
    class_starts = np.searchsorted(pred_classes[by_class], classes, side="left")
    class_ends = np.searchsorted(pred_classes[by_class], classes, side="right")
    ap = np.zeros((n_classes, hits.shape[1]))
    p_curve, r_curve = np.zeros((n_classes, _PX.size)), np.zeros((n_classes, _PX.size))
    for ci in range(n_classes):
        rows = by_class[class_starts[ci] : class_ends[ci]]
        if rows.size:
            ap[ci], p_curve[ci], r_curve[ci] = _class_curves(hits[rows], conf[rows], int(gt_counts[ci]))
    f1_curve = 2 * p_curve * r_curve / (p_curve + r_curve + _EPS)
    best = int(_smooth(f1_curve.mean(0), 0.1).argmax())
    return YoloMetrics(classes, ap, p_curve[:, best], r_curve[:, best], f1_curve[:, best])


def _class_curves(
    tp: np.ndarray, conf: np.ndarray, n_labels: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AP [10] and the precision/recall curves [1000] of one class (rows in confidence order)."""
    tpc = tp.cumsum(0)
    fpc = (1 - tp).cumsum(0)
    recall = tpc / (n_labels + _EPS)
    precision = tpc / (tpc + fpc)
    r_curve = np.interp(-_PX, -conf, recall[:, 0], left=0)
    p_curve = np.interp(-_PX, -conf, precision[:, 0], left=1)
    ap = np.array([_interpolated_ap(recall[:, j], precision[:, j]) for j in range(tp.shape[1])])
    return ap, p_curve, r_curve


def _interpolated_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """101-point interpolated AP of the precision envelope, integrated with the trapezoid rule."""
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0]))
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))
    return float(np.trapezoid(np.interp(_RECALL_POINTS, mrec, mpre), _RECALL_POINTS))


def _smooth(values: np.ndarray, fraction: float) -> np.ndarray:
    """YOLOv5's box filter: odd window of ``fraction`` of the length, edges padded with the end values."""
    window = round(len(values) * fraction * 2) // 2 + 1
    pad = np.ones(window // 2)
    padded = np.concatenate((pad * values[0], values, pad * values[-1]), 0)
    return np.convolve(padded, np.ones(window) / window, mode="valid")
