"""The ``yolo`` protocol: YOLOv5 7.0 ``val.py`` matching (``process_batch``) and ``ap_per_class``.

``YoloProtocol`` keeps, per prediction and view, one uint16 bit set (``{view}_hit_bits``, bit t: true
positive at IoU threshold t); ``yolo_hit_bits`` and ``yolo_metrics`` are its functional core.

Matching rule per image and IoU threshold t (float32): a prediction's candidates are ground truths of its
class with IoU >= t; each prediction keeps its best-IoU candidate; each ground truth then keeps the
*first* prediction (lowest row in the image, i.e. highest confidence after NMS) among those that chose it.
Because the best ground truth of a prediction does not depend on t, one pass gives all 10 thresholds.
Exact IoU ties inside one prediction's candidates are resolved by YOLOv5's own (unstable) argsort, so
the few images that have them are re-matched with the literal per-image procedure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from smartcash_core.metrics.grid import ImageGrid, Overlaps
from smartcash_core.metrics.inputs import FlatBatch
from smartcash_core.metrics.matching import YOLO_IOU_THRESHOLDS, iou_yolo, segment_starts, small_ints
from smartcash_core.metrics.protocol import DetectionProtocol
from smartcash_core.metrics.result import ViewMetrics
from smartcash_core.metrics.state import MergeRule, Rows, StateArrays, StateKey

_PAD_CLASS = -1  # class of padding slots in a grid: equal to no prediction's class
_EPS = 1e-16
_PX = np.linspace(0, 1, 1000)
_RECALL_POINTS = np.linspace(0, 1, 101)
_N_T = YOLO_IOU_THRESHOLDS.size


def yolo_hit_bits(overlap: Overlaps, batch: FlatBatch) -> np.ndarray:
    """True positives per prediction of ``batch``, bit t for IoU threshold t: [N] uint16.

    ``overlap`` covers every prediction of an image with ground truth (``grid.overlaps``). A mapped view
    passes a batch with mapped classes. Rows of one image keep the caller's order (YOLOv5 uses NMS order:
    confidence descending).
    """
    bits = np.zeros(batch.pred_boxes.shape[0], dtype=np.uint16)
    found = [
        _best_same_class(grid, iou, batch.pred_classes, batch.gt_classes)
        for grid, iou in zip(overlap.grids, overlap.ious, strict=True)
    ]
    if not found:
        return bits
    preds, best_gt, best_iou, tied = (np.concatenate(parts) for parts in zip(*found, strict=True))
    if preds.size == 0:
        return bits
    _mark_first_prediction_per_gt(bits, preds, best_gt, best_iou)
    for position in np.unique(batch.pred_image[preds[tied]]):
        _rematch_image_literally(bits, int(position), batch)
    return bits


def _best_same_class(
    grid: ImageGrid, iou: np.ndarray, pred_classes: np.ndarray, gt_classes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Predictions with a same-class candidate (IoU >= 0.5): rows, best ground truth (the first at the
    best IoU, like a stable order would give), best IoU, and whether the best IoU is tied.

    iou [W, n] (``grid.grid_iou_yolo``); only the few candidates are looked at slot by slot.
    """
    same = grid.per_slot(gt_classes, _PAD_CLASS) == pred_classes[grid.preds]
    masked = np.where(same, iou, np.float32(-1))
    best = masked.max(axis=0)
    local = np.flatnonzero(best >= YOLO_IOU_THRESHOLDS[0])
    masked, best = masked[:, local], best[local]
    at_best = masked == best
    slots = at_best.argmax(axis=0)  # first slot at the best IoU
    tied = at_best.sum(axis=0) > 1
    return grid.preds[local], grid.gt_rows(local, slots), best, tied


def _mark_first_prediction_per_gt(
    bits: np.ndarray, preds: np.ndarray, best_gt: np.ndarray, best_iou: np.ndarray
) -> None:
    order = np.lexsort((preds, best_gt))  # by ground truth, then prediction row
    for t, threshold in enumerate(YOLO_IOU_THRESHOLDS):
        selected = order[best_iou[order] >= threshold]
        winners = selected[segment_starts(best_gt[selected])]
        bits[preds[winners]] |= np.uint16(1 << t)


def _rematch_image_literally(bits: np.ndarray, position: int, batch: FlatBatch) -> None:
    """YOLOv5's ``process_batch`` for one image, step by step (same arrays, same sorts)."""
    pred_rows = np.flatnonzero(batch.pred_image == position)
    gt_rows = np.flatnonzero(batch.gt_image == position)
    n_gt, n_pred = gt_rows.size, pred_rows.size
    label_index = np.repeat(np.arange(n_gt), n_pred)
    det_index = np.tile(np.arange(n_pred), n_gt)
    gt_boxes, pred_boxes = batch.gt_boxes[gt_rows], batch.pred_boxes[pred_rows]
    iou = iou_yolo(gt_boxes[label_index], pred_boxes[det_index]).reshape(n_gt, n_pred)
    same_class = batch.gt_classes[gt_rows][:, None] == batch.pred_classes[pred_rows][None, :]
    bits[pred_rows] = 0
    for t, threshold in enumerate(YOLO_IOU_THRESHOLDS):
        label, det = np.nonzero((iou >= threshold) & same_class)  # row-major, like torch.where
        if label.size == 0:
            continue
        matches = np.stack([label.astype(np.float32), det.astype(np.float32), iou[label, det]], axis=1)
        if label.size > 1:
            matches = matches[matches[:, 2].argsort()[::-1]]
            matches = matches[np.unique(matches[:, 1], return_index=True)[1]]
            matches = matches[np.unique(matches[:, 0], return_index=True)[1]]
        bits[pred_rows[matches[:, 1].astype(np.int64)]] |= np.uint16(1 << t)


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
    hit_bits: np.ndarray, scores: np.ndarray, pred_classes: np.ndarray, gt_classes: np.ndarray
) -> YoloMetrics:
    """YOLOv5 7.0 ``ap_per_class`` on predictions concatenated in image order.

    hit_bits [N] uint16 (bit t: true positive at IoU threshold t), scores [N] (cast to float32 as YOLOv5's
    tensors are), pred_classes [N], gt_classes [M]. Predictions are ordered with ``np.argsort(-conf)``
    (not stable) over the whole array, exactly like YOLOv5, so score ties fall the way they fall there on
    the same numpy build and CPU.
    """
    classes, gt_counts = np.unique(gt_classes, return_counts=True)
    n_classes = classes.shape[0]
    zeros = np.zeros(n_classes)
    if not hit_bits.any():  # val.py skips ap_per_class and reports zeros
        return YoloMetrics(classes, np.zeros((n_classes, _N_T)), zeros, zeros.copy(), zeros.copy())
    conf = scores.astype(np.float32, copy=False)
    order = np.argsort(-conf)
    if order.size < np.iinfo(np.int32).max:
        order = order.astype(np.int32)  # half the memory of the permutations kept below
    # stable partition by class keeps the confidence order inside a class (16-bit keys: radix sort)
    order = order[np.argsort(small_ints(pred_classes)[order], kind="stable")]
    sorted_classes = pred_classes[order]
    starts = np.searchsorted(sorted_classes, classes, side="left")
    ends = np.searchsorted(sorted_classes, classes, side="right")
    neg_conf, bits = -conf[order], hit_bits[order]
    del order, conf, sorted_classes
    ap = np.zeros((n_classes, _N_T))
    p_curve, r_curve = np.zeros((n_classes, _PX.size)), np.zeros((n_classes, _PX.size))
    tp_rows = np.flatnonzero(bits)  # positions (in class, confidence order) with a hit somewhere
    tp_bits = (bits[tp_rows, None] >> np.arange(_N_T, dtype=np.uint16)) & 1 == 1  # [S, 10]
    for ci in range(n_classes):
        start, end = int(starts[ci]), int(ends[ci])
        if end == start:
            continue
        n_labels = int(gt_counts[ci])
        p_curve[ci], r_curve[ci] = _confidence_curves(bits[start:end] & 1 == 1, neg_conf[start:end], n_labels)
        first, last = np.searchsorted(tp_rows, (start, end))
        class_rows, class_bits = tp_rows[first:last] - start, tp_bits[first:last]
        for t in range(_N_T):
            ap[ci, t] = _ap_from_true_positives(class_rows[class_bits[:, t]], end - start, n_labels)
    f1_curve = 2 * p_curve * r_curve / (p_curve + r_curve + _EPS)
    best = int(_smooth(f1_curve.mean(0), 0.1).argmax())
    return YoloMetrics(classes, ap, p_curve[:, best], r_curve[:, best], f1_curve[:, best])


def _confidence_curves(tp: np.ndarray, neg_conf: np.ndarray, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall of one class at IoU 0.5 on the 1000-point confidence grid, as YOLOv5 samples
    them: tp [n] bool and -conf [n] float32 in confidence order."""
    tpc = tp.cumsum()
    fpc = (1 - tp).cumsum()
    recall = tpc / (n_labels + _EPS)
    precision = tpc / (tpc + fpc)
    return np.interp(-_PX, neg_conf, precision, left=1), np.interp(-_PX, neg_conf, recall, left=0)


def _ap_from_true_positives(positions: np.ndarray, n_predictions: int, n_labels: int) -> float:
    """YOLOv5's ``compute_ap`` of one class at one threshold from its true-positive positions alone.

    ``compute_ap`` samples ``np.interp(x, mrec, envelope)`` at 101 recall points, and ``np.interp`` only
    reads, for each x, the last point with recall <= x and the point after it. Recall steps up at true
    positives only, so those points are (per recall level) the level's true positive and the last
    prediction before the next one. Their envelope values follow from the true positives too: a false
    positive's precision is below that of the next true positive, and after the last true positive the
    precision falls, so the envelope there is the last prediction's. This builds exactly those points, in
    order, and calls the same ``np.interp`` and ``np.trapezoid``: the same bits, without [n, 10] curves.
    """
    m = positions.size
    k = np.arange(1, m + 1)
    recall = k / (n_labels + _EPS)
    envelope = np.flip(np.maximum.accumulate(np.flip(k / (positions + 1))))
    if m == 0:
        mrec, mpre = np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0])
    else:
        # tail of level k: the last prediction before true positive k + 1 (or the last one) when it
        # is a false positive; its envelope is that of true positive k + 1 (or its own precision)
        has_tail = np.append(positions[1:] - 1 > positions[:-1], positions[-1] < n_predictions - 1)
        tail_value = np.append(envelope[1:], m / n_predictions)
        points = np.stack([recall, recall], axis=1)
        values = np.stack([envelope, tail_value], axis=1)
        keep = np.stack([np.ones(m, dtype=bool), has_tail], axis=1)
        head_x, head_y = ([0.0, 0.0], [1.0, envelope[0]]) if positions[0] > 0 else ([0.0], [1.0])
        mrec = np.concatenate((head_x, points[keep], [1.0]))
        mpre = np.concatenate((head_y, values[keep], [0.0]))
    return float(np.trapezoid(np.interp(_RECALL_POINTS, mrec, mpre), _RECALL_POINTS))


def _smooth(values: np.ndarray, fraction: float) -> np.ndarray:
    """YOLOv5's box filter: odd window of ``fraction`` of the length, edges padded with the end values."""
    window = round(len(values) * fraction * 2) // 2 + 1
    pad = np.ones(window // 2)
    padded = np.concatenate((pad * values[0], values, pad * values[-1]), 0)
    return np.convolve(padded, np.ones(window) / window, mode="valid")


class YoloProtocol(DetectionProtocol):
    """YOLOv5 7.0 ``val.py``: the state is one hit bit set per prediction and view (2 bytes).

    Matching needs the same-class IoU of every prediction, so the IoU grids cover all predictions; the
    confusion matrix reads its confident rows from the same grids.
    """

    name = "yolo"

    def _own_keys(self) -> tuple[StateKey, ...]:
        return tuple(
            StateKey(f"{view}_hit_bits", MergeRule.CONCAT, Rows.PREDICTIONS, np.uint16) for view in self.views
        )

    def _overlap_rows(self, batch: FlatBatch) -> np.ndarray:
        return np.arange(batch.pred_scores.shape[0])

    def _match(self, batch: FlatBatch, overlap: Overlaps) -> StateArrays:
        return {
            f"{view}_hit_bits": yolo_hit_bits(overlap, self.view_batch(batch, view)) for view in self.views
        }

    def _view_metrics(
        self, view: str, state: StateArrays, pred_classes: np.ndarray, gt_classes: np.ndarray
    ) -> ViewMetrics:
        metrics = yolo_metrics(state[f"{view}_hit_bits"], state["pred_score"], pred_classes, gt_classes)
        return ViewMetrics(
            classes=metrics.classes,
            ap=metrics.ap,
            precision=metrics.precision,
            recall=metrics.recall,
            f1=metrics.f1,
            map50=metrics.map50,
            map50_95=metrics.map50_95,
            coco_stats=None,
        )

    def true_positives(self, state: Mapping[str, np.ndarray], view: str, iou_index: int) -> np.ndarray:
        return (np.asarray(state[f"{view}_hit_bits"]) >> iou_index) & 1 == 1

    def upgrade_state(self, arrays: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        """Older state (``{view}_hits`` [N, 10] bool, before bit-packing) -> ``{view}_hit_bits``."""
        legacy = [key for key in arrays if key.endswith("_hits") and f"{key[:-5]}_hit_bits" not in arrays]
        if not legacy:
            return arrays
        upgraded = dict(arrays)
        weights = (1 << np.arange(_N_T)).astype(np.uint16)
        for key in legacy:
            hits = np.asarray(arrays[key], dtype=bool).reshape(-1, _N_T)
            upgraded[f"{key[:-5]}_hit_bits"] = (hits * weights).sum(axis=1, dtype=np.uint16)
        return upgraded
