"""The ``coco`` matching: pycocotools ``COCOeval.evaluateImg`` (bbox) for every (image, class) of a batch.

Greedy per (image, class): detections in stable score order (top 100), each takes the unmatched ground
truth with the highest IoU >= t, preferring ground truth inside the area range (ground truth outside it is
"ignored" and only taken when nothing else is left); among equal IoUs the later ground truth wins, as in the
original loop. It runs as "rounds" over all groups at once: round r handles the r-th detection (that has
any candidate) of every group, for all 10 thresholds x 4 area ranges.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from smartcash_core.metrics.inputs import FlatBatch
from smartcash_core.metrics.matching import (
    COCO_AREA_RANGES,
    COCO_IOU_THRESHOLDS,
    COCO_MAX_DETS,
    group_pairs,
    iou_coco,
    segment_starts,
    small_ints,
    xyxy_to_coco,
)

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


def coco_match(batch: FlatBatch, num_classes: int) -> CocoMatch:
    """COCOeval ``evaluateImg`` for every (image, class) of ``batch``, its classes in ``0..num_classes-1``
    (a mapped view passes a batch with mapped classes)."""
    pred_key = batch.pred_image * num_classes + batch.pred_classes
    rank = _rank_in_group(pred_key, batch.pred_scores)
    pairs = group_pairs(pred_key, batch.gt_image * num_classes + batch.gt_classes)
    det_box, det_area = xyxy_to_coco(batch.pred_boxes)
    gt_box, gt_area = xyxy_to_coco(batch.gt_boxes)
    iou = iou_coco(gt_box[pairs.gt], gt_area[pairs.gt], det_box[pairs.pred], det_area[pairs.pred])
    keep = (iou >= _MATCH_THRESHOLDS[0]) & (rank[pairs.pred] < COCO_MAX_DETS[-1])
    pair_pred, pair_gt, pair_iou = pairs.pred[keep], pairs.gt[keep], iou[keep]
    if pair_pred.size == 0:
        nothing = np.zeros((0, _N_T * _N_A), dtype=bool)
        return CocoMatch(rank, np.zeros(0, dtype=np.int64), nothing, nothing)
    gt_ignored = np.tile(~area_in_range(batch.gt_boxes), (1, _N_T))  # [M, T * A], column t * A + a
    pair_round = _round_of_pairs(pair_pred, pred_key, rank)
    candidates, pair_row = np.unique(pair_pred, return_inverse=True)  # pair_pred is sorted: cheap
    order = np.lexsort((pair_row, pair_round))  # stable: ground truth order kept inside a prediction
    pair_row, pair_gt, pair_iou, pair_round = (
        pair_row[order],
        pair_gt[order],
        pair_iou[order],
        pair_round[order],
    )
    taken = np.zeros((batch.gt_boxes.shape[0], _N_T * _N_A), dtype=bool)
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
    order = np.argsort(small_ints(key), kind="stable")  # rows of a group stay in row order
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
