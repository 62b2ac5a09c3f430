"""The ``coco`` protocol: pycocotools ``COCOeval`` (bbox) matching, accumulation and summary.

Matching (``evaluateImg``) is greedy per (image, class): detections in stable score order (top 100), each
takes the unmatched ground truth with the highest IoU >= t, preferring ground truth inside the area range
(ground truth outside it is "ignored" and only taken when nothing else is left); among equal IoUs the
later ground truth wins, as in the original loop. It runs as "rounds" over all groups at once: round r
handles the r-th detection (that has any candidate) of every group, for all 10 thresholds x 4 area ranges.

Accumulation (``accumulate``) only needs the true positives of each precision/recall curve: the precision
envelope and the ``searchsorted`` recall sampling are both decided at true-positive positions, and the
false-positive count before a true positive is (eligible detections before it) - (matched ones before it).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from smartcash_core.metrics.matching import (
    COCO_AREA_RANGES,
    COCO_IOU_THRESHOLDS,
    COCO_MAX_DETS,
    group_pairs,
    iou_coco,
    segment_starts,
    xyxy_to_coco,
)

RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
_MATCH_THRESHOLDS = np.minimum(COCO_IOU_THRESHOLDS, 1 - 1e-10)
_N_T, _N_A = COCO_IOU_THRESHOLDS.size, COCO_AREA_RANGES.shape[0]
_MATCH_THRESHOLDS_TA = np.repeat(_MATCH_THRESHOLDS, _N_A)  # [T * A], column t * A + a
_REGULAR = np.int64(1 << 62)  # key bit of ground truth inside the area range (above any IoU bit pattern)


def area_in_range(boxes: np.ndarray) -> np.ndarray:
    """Which COCO area ranges (all, small, medium, large) hold each xyxy box [N, 4]: [N, 4] bool."""
    area = _coco_area(boxes)[:, None]
    return (area >= COCO_AREA_RANGES[:, 0]) & (area <= COCO_AREA_RANGES[:, 1])


def area_bits(boxes: np.ndarray) -> np.ndarray:
    """``area_in_range`` packed: bit a of [N] uint8 is area range a (all, small, medium, large)."""
    area = _coco_area(boxes)
    bits = np.zeros(area.shape[0], dtype=np.uint8)
    for a, (low, high) in enumerate(COCO_AREA_RANGES):
        bits |= ((area >= low) & (area <= high)).astype(np.uint8) << np.uint8(a)
    return bits


def _coco_area(boxes: np.ndarray) -> np.ndarray:
    """Box area as pycocotools has it (w * h in double), the same value ``xyxy_to_coco`` returns: [N]."""
    boxes = boxes.astype(np.float64, copy=False)
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


@dataclass(frozen=True)
class CocoMatch:
    """Per prediction: rank in its (image, class) by score [N] int32. Only for the predictions matched at
    some (threshold, area): their rows [S] (ascending) and outcomes matched / true positive [S, 10 * 4]
    bool (column t * 4 + a); every other prediction is unmatched everywhere."""

    rank: np.ndarray
    rows: np.ndarray
    matched: np.ndarray
    tp: np.ndarray


def coco_match(
    pred_boxes: np.ndarray,
    pred_scores: np.ndarray,
    pred_classes: np.ndarray,
    pred_image: np.ndarray,
    gt_boxes: np.ndarray,
    gt_classes: np.ndarray,
    gt_image: np.ndarray,
    num_classes: int,
) -> CocoMatch:
    """COCOeval ``evaluateImg`` for every (image, class) of a batch; boxes xyxy [N, 4] / [M, 4]."""
    pred_key = pred_image * num_classes + pred_classes
    rank = _rank_in_group(pred_key, pred_scores)
    pairs = group_pairs(pred_key, gt_image * num_classes + gt_classes)
    det_box, det_area = xyxy_to_coco(pred_boxes)
    gt_box, gt_area = xyxy_to_coco(gt_boxes)
    iou = iou_coco(gt_box[pairs.gt], gt_area[pairs.gt], det_box[pairs.pred], det_area[pairs.pred])
    keep = (iou >= _MATCH_THRESHOLDS[0]) & (rank[pairs.pred] < COCO_MAX_DETS[-1])
    pair_pred, pair_gt, pair_iou = pairs.pred[keep], pairs.gt[keep], iou[keep]
    if pair_pred.size == 0:
        nothing = np.zeros((0, _N_T * _N_A), dtype=bool)
        return CocoMatch(rank, np.zeros(0, dtype=np.int64), nothing, nothing)
    gt_ignored = np.tile(~area_in_range(gt_boxes), (1, _N_T))  # [M, T * A], column t * A + a
    pair_round = _round_of_pairs(pair_pred, pred_key, rank)
    candidates, pair_row = np.unique(pair_pred, return_inverse=True)  # pair_pred is sorted: cheap
    order = np.lexsort((pair_row, pair_round))  # stable: ground truth order kept inside a prediction
    pair_row, pair_gt, pair_iou, pair_round = (
        pair_row[order],
        pair_gt[order],
        pair_iou[order],
        pair_round[order],
    )
    taken = np.zeros((gt_boxes.shape[0], _N_T * _N_A), dtype=bool)
    matched = np.zeros((candidates.size, _N_T * _N_A), dtype=bool)  # rows: predictions with candidates
    tp = np.zeros_like(matched)
    pair_ok = pair_iou[:, None] >= _MATCH_THRESHOLDS_TA
    pair_key = _pair_keys(pair_iou, pair_gt, gt_ignored)
    round_bounds = np.searchsorted(pair_round, np.arange(int(pair_round[-1]) + 2), side="left")
    for start, end in itertools.pairwise(round_bounds):
        rows = slice(start, end)
        _match_round(pair_row[rows], pair_gt[rows], pair_ok[rows], pair_key[rows], taken, matched, tp)
    some = _any_per_row(matched)
    return CocoMatch(rank, candidates[some], matched[some], tp[some])


def _any_per_row(flags: np.ndarray) -> np.ndarray:
    """``flags.any(axis=1)`` for a C-contiguous [S, 40] bool array, read as five 8-byte words per row
    (numpy's row-wise reduction would walk 40 single bytes per row)."""
    if flags.shape[1] % 8 or not flags.flags.c_contiguous:
        return flags.any(axis=1)
    words = flags.view(np.uint64)
    combined = words[:, 0].copy()
    for k in range(1, words.shape[1]):
        combined |= words[:, k]
    return combined != 0


def _rank_in_group(key: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Position of each prediction inside its group in stable descending-score order: [N] int32."""
    order = np.argsort(_small_ints(key), kind="stable")  # rows of a group stay in row order
    sorted_key, sorted_scores = key[order], scores[order]
    rises = (sorted_key[1:] == sorted_key[:-1]) & (sorted_scores[1:] > sorted_scores[:-1])
    if rises.any():  # not in NMS (score-descending) order inside some group: sort by score first
        order = np.argsort(-scores, kind="stable")
        order = order[np.argsort(key[order], kind="stable")]
        sorted_key = key[order]
    starts = segment_starts(sorted_key)
    first = np.repeat(starts, np.diff(np.append(starts, key.shape[0])))
    rank = np.empty(key.shape[0], dtype=np.int32)
    rank[order] = np.arange(key.shape[0]) - first
    return rank


def _round_of_pairs(pair_pred: np.ndarray, pred_key: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Round of each pair: how many earlier detections of its group also have candidates."""
    preds = pair_pred[segment_starts(pair_pred)]
    order = np.lexsort((rank[preds], pred_key[preds]))
    keys = pred_key[preds][order]
    round_sorted = np.arange(preds.size) - np.searchsorted(keys, keys, side="left")
    round_of_pred = np.empty(preds.size, dtype=np.int64)
    round_of_pred[order] = round_sorted
    return round_of_pred[np.searchsorted(preds, pair_pred)]


def _match_round(
    pair_pred: np.ndarray,
    pair_gt: np.ndarray,
    pair_ok: np.ndarray,
    pair_key: np.ndarray,
    taken: np.ndarray,
    matched: np.ndarray,
    tp: np.ndarray,
) -> None:
    """One detection per group; all thresholds x area ranges at once on pair-major arrays [P, T * A].

    ``pair_ok`` [P, T * A]: IoU >= threshold; ``pair_key`` [P, T * A] int64 (``_pair_keys``): larger key =
    preferred ground truth. ``taken`` [M, T * A] and ``matched`` / ``tp`` [N, T * A] (column t * A + a).
    Pair-major rows make every segment reduction run over contiguous rows of T * A values.
    """
    starts = segment_starts(pair_pred)
    segment = np.repeat(np.arange(starts.size), np.diff(np.append(starts, pair_pred.size)))
    available = pair_ok & ~taken[pair_gt]
    key = np.where(available, pair_key, -1)
    best = np.maximum.reduceat(key, starts, axis=0)  # -1: nothing left for this detection
    winner = (key == best[segment]) & available
    pair_index = np.arange(pair_pred.size)[:, None]
    last_winner = np.maximum.reduceat(np.where(winner, pair_index, -1), starts, axis=0)  # later GT wins ties
    seg_index, column = np.nonzero(last_winner >= 0)
    preds, gts = pair_pred[starts[seg_index]], pair_gt[last_winner[seg_index, column]]
    matched[preds, column] = True
    tp[preds, column] = best[seg_index, column] >= _REGULAR  # a regular (not ignored) ground truth
    taken[gts, column] = True


def _pair_keys(pair_iou: np.ndarray, pair_gt: np.ndarray, gt_ignored: np.ndarray) -> np.ndarray:
    """[P, T * A] int64 keys ordering a detection's candidates like ``evaluateImg``: ground truth inside
    the area range before ignored ground truth, then by IoU. The IoU enters as its float64 bit pattern,
    which orders non-negative doubles exactly (equal IoU, equal key: ties stay ties)."""
    iou_bits = pair_iou.astype(np.float64).view(np.int64)[:, None]
    return np.where(gt_ignored[pair_gt], iou_bits, iou_bits | _REGULAR)


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


def coco_metrics(
    scores: np.ndarray,
    classes: np.ndarray,
    rank: np.ndarray,
    pred_area_bits: np.ndarray,
    matched_rows: np.ndarray,
    matched: np.ndarray,
    tp: np.ndarray,
    gt_classes: np.ndarray,
    gt_area_bits: np.ndarray,
    num_classes: int,
) -> CocoMetrics:
    """COCOeval ``accumulate`` over predictions in image order.

    scores [N], classes [N], rank [N] (rank in its image and class; values >= 100 all mean "beyond
    maxDets"), pred_area_bits [N] uint8 (bit a: inside area range a); ``matched_rows`` [S] (ascending) are
    the rows matched at some (threshold, area) and matched/tp [S, 10, 4] bool their outcomes (other rows
    are unmatched everywhere); gt_classes [M], gt_area_bits [M] uint8.
    """
    order = _class_score_order(classes, scores, num_classes)
    class_start = np.searchsorted(classes[order], np.arange(num_classes), side="left")
    gt_count = np.stack(
        [np.bincount(gt_classes[(gt_area_bits >> a) & 1 == 1], minlength=num_classes) for a in range(_N_A)],
        axis=1,
    )  # [K, A] "npig"
    is_matched = np.zeros(order.size, dtype=bool)
    is_matched[matched_rows] = True
    positions = np.flatnonzero(is_matched[order])  # positions of matched rows in the sorted order
    rows = order[positions]
    sorted_area, sorted_rank = pred_area_bits[order], _capped_rank(rank[order])
    del order, is_matched
    curves = _Curves(
        rows_rank=_capped_rank(rank[rows]),
        rows_area=pred_area_bits[rows],
        positions=positions,
        classes=classes[rows],
        class_start=class_start,
        num_classes=num_classes,
    )
    outcome = np.searchsorted(matched_rows, rows)
    matched, tp = matched[outcome], tp[outcome]
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
        return order[np.argsort(_small_ints(classes)[order], kind="stable")]  # 16-bit keys: radix sort
    bits = (scores + np.float32(0)).view(np.uint32)  # + 0 turns -0.0 into 0.0: equal scores, equal bits
    ascending = np.where(bits >> np.uint32(31), ~bits, bits | np.uint32(1 << 31))  # float order as uint
    key = classes.astype(np.uint64) << np.uint64(32 + row_bits)
    key |= (~ascending).astype(np.uint64) << np.uint64(row_bits)  # descending score
    key |= np.arange(n, dtype=np.uint64)
    key.sort()
    key &= np.uint64((1 << row_bits) - 1)
    return _index32(key)


def _small_ints(values: np.ndarray) -> np.ndarray:
    """Class ids as int16 when they fit (numpy's stable sort is a radix sort there)."""
    if values.size and int(values.max()) < np.iinfo(np.int16).max:
        return values.astype(np.int16)
    return values


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
