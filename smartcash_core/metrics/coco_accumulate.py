"""The ``coco`` accumulation: pycocotools ``COCOeval.accumulate`` and ``summarize`` from the match outcomes.

Accumulation only needs the true positives of each precision/recall curve: the precision envelope and the
``searchsorted`` recall sampling are both decided at true-positive positions, and the false-positive count
before a true positive is (eligible detections before it) - (matched ones before it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from smartcash_core.metrics.matching import COCO_AREA_RANGES, COCO_IOU_THRESHOLDS, COCO_MAX_DETS, small_ints

RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
_N_T, _N_A = COCO_IOU_THRESHOLDS.size, COCO_AREA_RANGES.shape[0]


@dataclass(frozen=True)
class CocoMetrics:
    """``COCOeval.eval`` arrays: precision [T, R, K, A, M], recall [T, K, A, M]; -1 where undefined."""

    precision: np.ndarray
    recall: np.ndarray

    def stats(self) -> np.ndarray:
        """The 12 numbers of ``COCOeval.summarize()`` (``COCOeval.stats``)."""
        big = COCO_MAX_DETS[-1]
        return np.array(
            [
                self._summarize(True),
                self._summarize(True, iou=0.5),
                self._summarize(True, iou=0.75),
                self._summarize(True, area=1),
                self._summarize(True, area=2),
                self._summarize(True, area=3),
                self._summarize(False, max_det=COCO_MAX_DETS[0]),
                self._summarize(False, max_det=COCO_MAX_DETS[1]),
                self._summarize(False, max_det=big),
                self._summarize(False, area=1),
                self._summarize(False, area=2),
                self._summarize(False, area=3),
            ]
        )

    def _summarize(self, ap: bool, iou: float | None = None, area: int = 0, max_det: int = 100) -> float:
        m = COCO_MAX_DETS.index(max_det)
        values = self.precision if ap else self.recall
        if iou is not None:
            values = values[np.where(iou == COCO_IOU_THRESHOLDS)[0]]
        values = values[..., area, m]
        defined = values[values > -1]
        return float(np.mean(defined)) if defined.size else -1.0

    def per_class_ap(self) -> np.ndarray:
        """AP per class and IoU threshold (area all, 100 detections): [K, T], -1 for classes without GT."""
        values = self.precision[:, :, :, 0, -1]  # [T, R, K]
        defined = values > -1
        total = np.where(defined, values, 0.0).sum(axis=1)
        count = defined.sum(axis=1)
        return np.where(count > 0, total / np.maximum(count, 1), -1.0).T


@dataclass(frozen=True)
class CocoDetections:
    """One view's predictions in image order, as the ``coco`` state keeps them.

    scores [N], classes [N], rank [N] (rank in its image and class; values >= 100 all mean "beyond
    maxDets"), area_bits [N] uint8 (bit a: inside area range a); ``matched_rows`` [S] (ascending) are the
    rows matched at some (threshold, area) and matched / tp [S, 10, 4] bool their outcomes (other rows are
    unmatched everywhere).
    """

    scores: np.ndarray
    classes: np.ndarray
    rank: np.ndarray
    area_bits: np.ndarray
    matched_rows: np.ndarray
    matched: np.ndarray
    tp: np.ndarray


def coco_metrics(
    detections: CocoDetections, gt_classes: np.ndarray, gt_area_bits: np.ndarray, num_classes: int
) -> CocoMetrics:
    """COCOeval ``accumulate`` over ``detections``; gt_classes [M], gt_area_bits [M] uint8 (bit a: inside
    area range a)."""
    classes, rank, area_bits = detections.classes, detections.rank, detections.area_bits
    order = _class_score_order(classes, detections.scores, num_classes)
    class_start = np.searchsorted(classes[order], np.arange(num_classes), side="left")
    gt_count = _gt_count(gt_classes, gt_area_bits, num_classes)
    is_matched = np.zeros(order.size, dtype=bool)
    is_matched[detections.matched_rows] = True
    positions = np.flatnonzero(is_matched[order])  # positions of matched rows in the sorted order
    rows = order[positions]
    sorted_area, sorted_rank = area_bits[order], _capped_rank(rank[order])
    del order, is_matched
    curves = _Curves(
        rows_rank=_capped_rank(rank[rows]),
        rows_area=area_bits[rows],
        positions=positions,
        classes=classes[rows],
        class_start=class_start,
        num_classes=num_classes,
    )
    outcome = np.searchsorted(detections.matched_rows, rows)
    matched, tp = detections.matched[outcome], detections.tp[outcome]
    precision = -np.ones((_N_T, RECALL_THRESHOLDS.size, num_classes, _N_A, len(COCO_MAX_DETS)))
    recall = -np.ones((_N_T, num_classes, _N_A, len(COCO_MAX_DETS)))
    for a in range(_N_A):
        in_range = (sorted_area >> a) & 1 == 1
        for m, max_det in enumerate(COCO_MAX_DETS):
            eligible_before = np.zeros(in_range.size + 1, dtype=np.int32)  # exclusive prefix counts
            np.cumsum(in_range & (sorted_rank < max_det), out=eligible_before[1:])
            q, rc = curves.sample(a, max_det, matched, tp, eligible_before, gt_count[:, a])
            has_gt = gt_count[:, a] > 0
            precision[:, :, has_gt, a, m] = q[:, has_gt].transpose(0, 2, 1)
            recall[:, has_gt, a, m] = rc[:, has_gt]
    return CocoMetrics(precision, recall)


def _gt_count(gt_classes: np.ndarray, gt_area_bits: np.ndarray, num_classes: int) -> np.ndarray:
    """Ground truth per class inside each area range: [K, A] (pycocotools' "npig")."""
    return np.stack(
        [np.bincount(gt_classes[(gt_area_bits >> a) & 1 == 1], minlength=num_classes) for a in range(_N_A)],
        axis=1,
    )


def _class_score_order(classes: np.ndarray, scores: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows by class, then score descending, ties in row order: pycocotools' stable mergesort of scores
    over images concatenated in order, split by class. [N] int32 (int64 when N needs it).

    float32 scores (the usual state) with few enough rows and classes: one ``np.sort`` of a packed
    uint64 key ``class | ~score bits | row`` (unique, so any sort is stable) instead of two argsorts.
    """
    n = scores.shape[0]
    row_bits = max(int(n - 1).bit_length(), 1)
    class_bits = max(int(num_classes - 1).bit_length(), 1)
    if scores.dtype != np.float32 or class_bits + 32 + row_bits > 64:
        order = _index32(np.argsort(-scores, kind="stable"))
        return order[np.argsort(small_ints(classes)[order], kind="stable")]  # 16-bit keys: radix sort
    bits = (scores + np.float32(0)).view(np.uint32)  # + 0 turns -0.0 into 0.0: equal scores, equal bits
    ascending = np.where(bits >> np.uint32(31), ~bits, bits | np.uint32(1 << 31))  # float order as uint
    key = classes.astype(np.uint64) << np.uint64(32 + row_bits)
    key |= (~ascending).astype(np.uint64) << np.uint64(row_bits)  # descending score
    key |= np.arange(n, dtype=np.uint64)
    key.sort()
    key &= np.uint64((1 << row_bits) - 1)
    return _index32(key)


def _index32(index: np.ndarray) -> np.ndarray:
    """A permutation as int32 when it fits: half the memory for the sort orders kept during compute."""
    return index.astype(np.int32) if index.size < np.iinfo(np.int32).max else index


def _capped_rank(rank: np.ndarray) -> np.ndarray:
    """Ranks as uint8, capped at the largest maxDets (only ``rank < maxDet`` is ever asked)."""
    return np.minimum(rank, COCO_MAX_DETS[-1]).astype(np.uint8)


class _Curves:
    """Precision/recall sampling at true-positive positions, for all thresholds and classes at once."""

    def __init__(
        self,
        rows_rank: np.ndarray,
        rows_area: np.ndarray,
        positions: np.ndarray,
        classes: np.ndarray,
        class_start: np.ndarray,
        num_classes: int,
    ) -> None:
        # every prediction matched somewhere, in the (class, -score, image) order:
        self.rows_rank = rows_rank  # rank in its image and class (capped)
        self.rows_area = rows_area  # area-range bits
        self.positions = positions  # positions in that order
        self.classes = classes
        self.class_start = class_start
        self.num_classes = num_classes

    def _segment_first(self, segment: np.ndarray) -> np.ndarray:
        """For class ids ``segment`` (non-decreasing): the index of each element's first same-class one."""
        return np.searchsorted(segment, np.arange(self.num_classes))[segment]

    def sample(
        self,
        a: int,
        max_det: int,
        matched: np.ndarray,
        tp: np.ndarray,
        eligible_before: np.ndarray,
        gt_count: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Precision at the 101 recall thresholds [T, K, R] and final recall [T, K] for one (area, maxDet).

        ``matched`` / ``tp`` [S, T, A] belong to the matched rows, in sorted order. One threshold at a time
        keeps the per-entry temporaries a tenth of the size.
        """
        within_max_det = self.rows_rank < max_det
        in_range_rows = ((self.rows_area >> a) & 1).astype(np.int64)
        npig = gt_count.astype(np.float64)
        recall_steps = _recall_index(npig)  # [K, R], before capping at each curve's true positives
        q = np.empty((_N_T, self.num_classes, RECALL_THRESHOLDS.size))
        final_recall = np.empty((_N_T, self.num_classes))
        for t in range(_N_T):
            j = np.flatnonzero(matched[:, t, a] & within_max_det)  # by position: classes are contiguous
            q[t], final_recall[t] = self._threshold_curve(
                j, tp[j, t, a], in_range_rows, eligible_before, npig, recall_steps
            )
        return q, final_recall

    def _threshold_curve(
        self,
        j: np.ndarray,
        is_tp: np.ndarray,
        in_range_rows: np.ndarray,
        eligible_before: np.ndarray,
        npig: np.ndarray,
        recall_steps: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Precision at the recall thresholds [K, R] and final recall [K] of one threshold, from the live
        matched rows ``j`` (``is_tp``: which of them are true positives)."""
        segment = self.classes[j]  # non-decreasing: entries of a class are contiguous
        in_range = in_range_rows[j]
        first = self._segment_first(segment)
        running = np.cumsum(in_range)
        matched_in_range_before = running - in_range - (running[first] - in_range[first])
        eligible_in_class_before = (
            eligible_before[self.positions[j]].astype(np.int64) - eligible_before[self.class_start[segment]]
        )
        false_pos = (eligible_in_class_before - matched_in_range_before)[is_tp].astype(np.float64)
        segment = segment[is_tp]
        true_pos = (np.arange(1, segment.size + 1) - self._segment_first(segment)).astype(np.float64)
        n_tp = np.bincount(segment, minlength=self.num_classes)
        with np.errstate(divide="ignore", invalid="ignore"):
            final_recall = n_tp / npig
        envelope = _segment_envelope(
            true_pos / (false_pos + true_pos + np.spacing(1)), segment, true_pos, self.num_classes
        )
        index = np.minimum(recall_steps, n_tp[:, None])  # [K, R]
        inside = index < n_tp[:, None]  # beyond the last true positive pycocotools leaves 0
        if envelope.shape[1] == 0:
            return np.zeros(index.shape), final_recall
        picked = np.take_along_axis(envelope, np.minimum(index, envelope.shape[1] - 1), axis=1)
        return np.where(inside, picked, 0.0), final_recall


def _segment_envelope(
    pr: np.ndarray, segment: np.ndarray, true_pos: np.ndarray, n_segments: int
) -> np.ndarray:
    """Reverse running max of precision inside each segment, padded to [n_segments, L] (pad = -inf)."""
    width = int(true_pos.max()) if true_pos.size else 0
    grid = np.full((n_segments, width), -np.inf)
    grid[segment, true_pos.astype(np.int64) - 1] = pr
    return np.flip(np.maximum.accumulate(np.flip(grid, axis=1), axis=1), axis=1)


def _recall_index(npig: np.ndarray) -> np.ndarray:
    """``searchsorted(i / npig for i in 1..n, RECALL_THRESHOLDS, 'left')`` per segment for unbounded n,
    exactly: [S, R]; capping it at a curve's n true positives gives that curve's index.

    Counts i >= 1 with fl(i / npig) < thr: start from floor(thr * npig) and fix the estimate with the
    exact float64 comparison (it is off by at most one step either way).
    """
    npig = np.where(npig > 0, npig, 1.0)[:, None]
    count = np.floor(RECALL_THRESHOLDS[None, :] * npig)
    for _ in range(4):
        count = np.where((count + 1) / npig < RECALL_THRESHOLDS, count + 1, count)
        count = np.where((count >= 1) & (count / npig >= RECALL_THRESHOLDS), count - 1, count)
    return count.astype(np.int64)
