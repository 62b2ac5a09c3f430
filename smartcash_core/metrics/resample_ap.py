"""AP of resampled image lists, for a block of resamples at once, as each protocol computes it.

A resample is a column of per-image multiplicities ``w``; ``resampled_ap(curves, weights)`` returns AP per
IoU threshold, class and resample: what ``DetectionEvaluator.compute()`` returns on the literal resampled list
(every drawn image's predictions and ground truth concatenated in draw order, each copy a new image), up to
float rounding (~1e-15), with one documented difference (score ties, below).

In the expanded list a tracked row ``j`` of weight ``w_j`` is a run of ``w_j`` identical points; ``T_j`` (true
positives up to and including the run) and ``E_j`` (eligible predictions before it) are cumulative sums of
weights. Only true-positive runs move recall, so both protocols reduce to values at the runs:

* precision at the run's last copy (the highest in the run: precision rises inside a run of true positives),
  and its envelope ``V_j`` (the running maximum from the end, exactly as both protocols take it);
* ``yolo`` (``compute_ap``: ``np.interp`` of the envelope at 101 recall points, ``np.trapezoid``): between
  recall levels ``a = T_j - w_j`` and ``a + 1`` the curve runs from the envelope at level ``a``'s last point
  (``max(V_j, a / E_j)``, or 1.0 before any prediction) to ``V_j``; from level ``a + 1`` to ``T_j`` it is
  flat at ``V_j``; after the last run it falls from ``K / N`` (the last prediction's precision) to 0 at
  recall 1. A single weighted step (one point at ``T_j``) would be wrong: the exact curve bends at ``a + 1``;
* ``coco`` (``accumulate``: ``searchsorted(recall, thresholds, 'left')`` into the envelope): recall
  threshold ``r`` reads ``V`` of the run holding the first level ``m`` with ``m / n >= r``, so run ``j``
  collects the thresholds in ``(a / n, T_j / n]`` (from 0 for the first run).

Which of the 101 recall points fall between two levels depends only on the class's ground-truth count ``n``
in the resample, so ``LevelTables`` holds, per class, resample and level ``k = 0..n+1``, the grid counts and
the trapezoid-weighted pieces (the same for every threshold and for both compared jobs); a run then costs a
few table lookups. Grid counts are exact (``grid_count``).

Ties: copies of one prediction tie with identical outcomes, so their order never matters. Different
predictions of a class with exactly equal scores keep the order of the full sample's sort here; in the
literal resampled list ``yolo``'s unstable ``argsort`` (and, for ``coco``, the draw order of the images)
may order them differently, which changes AP only when tied predictions have different outcomes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from smartcash_core.metrics.resample_curves import RowGroup, ViewCurves

_GRID = np.linspace(0, 1, 101)  # YOLOv5's recall points and pycocotools' recThrs (the same values)
_EXACT_HUNDREDTHS = np.arange(_GRID.size) / 100.0  # fl(i / 100): the double of every k / n equal to i / 100
_YOLO_TIE = (_GRID < _EXACT_HUNDREDTHS).astype(np.int64)  # counted in #{x_i < r} when r == i / 100
_COCO_TIE = (_GRID <= _EXACT_HUNDREDTHS).astype(np.int64)  # counted in #{x_i <= r} when r == i / 100
_STEPS = np.diff(_GRID)
_TRAPEZOID = np.concatenate(([_STEPS[0] / 2], (_STEPS[:-1] + _STEPS[1:]) / 2, [_STEPS[-1] / 2]))
_TRAPEZOID_PREFIX = np.concatenate(([0.0], np.cumsum(_TRAPEZOID)))  # [102]: weight of points before i
# trapezoid weight x (1 - x) of the points from i to 99 (the last point, recall 1, always reads 0)
_FALL_SUFFIX = np.concatenate((np.cumsum((_TRAPEZOID * (1 - _GRID))[:-1][::-1])[::-1], [0.0, 0.0]))
_YOLO_EPS = 1e-16  # YOLOv5: recall = tpc / (n_l + eps)
_COCO_EPS = np.spacing(1)  # pycocotools: precision = tp / (fp + tp + spacing(1))
_CHUNK_ROWS = 8192  # eligible predictions per step of the running count (a chunk stays in cache)


def grid_count(level: np.ndarray, n: np.ndarray, ties: np.ndarray) -> np.ndarray:
    """How many of the 101 grid points are below (``_YOLO_TIE``: ``<``; ``_COCO_TIE``: ``<=``) the double
    ``level / n`` (capped at 100 beyond recall 1); level and n non-negative integers (as floats), n >= 1.

    For rationals ``i / 100 < level / n`` iff ``i < q = 100 * level / n``. The doubles compare the same way
    unless the rationals are equal (their gap is otherwise at least ``1 / (100 n)``, far above rounding);
    then ``level / n`` rounds to ``fl(i / 100)`` and the ``ties`` table holds how grid point ``i`` compares.
    ``q`` is computed in floats: exact when it is an integer, and on the right side of every integer
    otherwise.
    """
    q = (100.0 * level) / n
    above = np.ceil(q)
    index = np.minimum(above, 100.0).astype(np.int64)
    return index + np.take(ties, index) * (above == q)


@dataclass(frozen=True)
class LevelTables:
    """Per class and resample of a block (one view): the entries of recall levels ``k = 0..n+1`` start at
    ``base[c, b]`` in the flat tables.

    ``present`` [C, B]: the class has ground truth in the resample (``n`` is its count there, 1 if not).
    ``yolo``: ``grid`` = #{x_i < k / (n + eps)} (the grid points below level k's recall); ``grid_prefix``
    = their trapezoid weight; ``entry`` = sum over the points in ``[r_k, r_k+1)`` of weight x ``(r_k+1 -
    x_i) / (r_k+1 - r_k)`` (their share of the interpolation's left end). ``coco``: ``steps`` = #{recall
    thresholds <= k / n} for k >= 1, 0 for k = 0.

    Built from the 101 grid points rather than the levels: each point belongs to one level (``yolo``: the
    last level at or below it; ``coco``: the first level at or above it), found by exact arithmetic (see
    ``grid_count``); counts per level are then a histogram and a running sum.
    """

    present: np.ndarray
    n: np.ndarray
    base: np.ndarray
    grid: np.ndarray
    grid_prefix: np.ndarray
    entry: np.ndarray
    steps: np.ndarray

    @classmethod
    def build(cls, protocol: str, gt: np.ndarray) -> LevelTables:
        """Tables for ground-truth counts ``gt`` [C, B] (weighted, integers as floats)."""
        present = gt > 0
        n = np.where(present, gt, 1.0)
        sizes = (n + 2).astype(np.int64)
        base = (np.cumsum(sizes) - sizes.ravel()).reshape(n.shape)
        total = int(sizes.sum())
        # i * n / 100 for every grid point i: exact when an integer, far from integers otherwise
        p = (np.arange(_GRID.size, dtype=np.float64) * n[..., None]) / 100.0  # [C, B, 101]
        whole = p == np.floor(p)
        empty = np.zeros(0)
        if protocol != "yolo":
            # the first level k >= 1 with rt_i <= k / n collects recall threshold i
            level = np.maximum(np.floor(p) + 1 - whole * _COCO_TIE, 1).astype(np.int64)
            steps = _running_count(base[..., None] + level, base, total)
            return cls(present, n, base, empty, empty, empty, steps)
        # the last level k with k / (n + eps) <= x_i holds grid point i in its piece [r_k, r_k+1)
        level = (np.ceil(p) - 1 + whole * (1 - _YOLO_TIE)).astype(np.int64)
        grid = _running_count(base[..., None] + level + 1, base, total)
        denominator = n[..., None] + _YOLO_EPS
        left, right = level / denominator, (level + 1) / denominator
        share = _TRAPEZOID * ((right - _GRID) / (right - left))
        share[..., -1] = 0.0  # recall 1 reads 0 (the curve's end), whatever the level
        entry = np.bincount((base[..., None] + level).ravel(), weights=share.ravel(), minlength=total)
        return cls(present, n, base, grid, np.take(_TRAPEZOID_PREFIX, grid), entry, empty)


def _running_count(positions: np.ndarray, base: np.ndarray, total: int) -> np.ndarray:
    """Per segment (starting at ``base``): how many of its 101 ``positions`` are at or before each entry."""
    hits = np.bincount(positions.ravel(), minlength=total)
    running = np.cumsum(hits)
    segment_start = np.repeat(np.arange(base.size) * _GRID.size, (np.diff(np.append(base.ravel(), total))))
    return running - segment_start


def resampled_ap(curves: ViewCurves, weights: np.ndarray, tables: LevelTables | None = None) -> np.ndarray:
    """AP [T, C, B] of the view for each resample (column of ``weights`` [I, B], image multiplicities);
    NaN where a class has no ground truth in a resample (it is then not part of that resample's mAP).

    ``tables``: ``LevelTables.build(curves.protocol, curves.gt_counts @ weights)``, shareable between
    views of equal ground truth (built here when not given)."""
    weights_f = np.asarray(weights, dtype=np.float64)
    if tables is None:
        tables = LevelTables.build(curves.protocol, curves.gt_counts @ weights_f)
    whole = weights_f.astype(_count_dtype(curves, weights_f))  # integer scans: faster than float, exact
    before = _eligible_before(curves, whole)
    tracked_weights = np.take(whole, curves.tracked_images, axis=0)
    ap = np.zeros((len(curves.thresholds), curves.num_classes, whole.shape[1]))
    found = np.zeros_like(ap)  # yolo: true positives per threshold, class and resample
    for t, rows in enumerate(curves.thresholds):
        for group in rows.groups:
            w = np.take(tracked_weights, group.rows, axis=0)
            count_before = np.take(before, group.rows, axis=0)
            if curves.protocol == "yolo":
                ap[t, group.classes], found[t, group.classes] = _yolo_group(group, w, count_before, tables)
            else:
                ap[t, group.classes] = _coco_group(group, w, count_before, tables)
    if curves.protocol == "yolo":
        ap += _yolo_final_segments(found, curves.pred_counts @ weights_f, tables)
    ap[:, ~tables.present] = np.nan
    return ap


def _count_dtype(curves: ViewCurves, weights: np.ndarray) -> type[np.integer]:
    """int32 when no weighted count of predictions can reach 2**31, else int64."""
    per_image = float(curves.pred_counts.sum(axis=0).max(initial=0.0))
    drawn = float(weights.sum(axis=0).max(initial=0.0))
    return np.int32 if per_image * drawn < np.iinfo(np.int32).max else np.int64


def _eligible_before(curves: ViewCurves, weights: np.ndarray) -> np.ndarray:
    """Weighted eligible predictions of its class before each tracked row: [S, B] (integers).

    A running sum over the eligible predictions, in chunks that stay in cache, on the transposed block
    (an integer running sum along contiguous memory is about twice as fast); only the counts at
    ``count_positions`` are kept."""
    positions = curves.count_positions
    by_resample = np.ascontiguousarray(weights.T)  # [B, I]
    counts = np.zeros((weights.shape[1], positions.size), dtype=weights.dtype)
    carry = np.zeros((weights.shape[1], 1), dtype=weights.dtype)
    images = curves.eligible_images
    for first in range(0, images.size, _CHUNK_ROWS):
        last = min(first + _CHUNK_ROWS, images.size)
        gathered = np.take(by_resample, images[first:last], axis=1)
        running = np.cumsum(gathered, axis=1, dtype=weights.dtype)
        lo, hi = np.searchsorted(positions, (first, last), side="right")  # positions in (first, last]
        counts[:, lo:hi] = np.take(running, positions[lo:hi] - first - 1, axis=1) + carry
        carry += running[:, -1:]
    before = np.take(counts, curves.before_end, axis=1) - np.take(counts, curves.before_start, axis=1)
    return np.ascontiguousarray(before.T)


def _class_cumsum(values: np.ndarray, group: RowGroup) -> np.ndarray:
    """Running sum inside each class of the group (integers: one running sum, minus the sum before each
    class)."""
    running = np.cumsum(values, axis=0, dtype=values.dtype)
    before = np.zeros((group.classes.size, values.shape[1]), dtype=values.dtype)
    before[1:] = running[group.starts[1:-1] - 1]
    return running - np.take(before, group.member, axis=0)


def _class_envelope(precision: np.ndarray, group: RowGroup) -> np.ndarray:
    """Running maximum from the end inside each class (both protocols' precision envelope), exact at every
    row whose class has a positive precision at or after it (``RowGroup.scale``); other rows (only rows of
    weight 0, before a class's first drawn true positive or in a class with none) may read a later class's
    value, which nothing uses."""
    scaled = precision * group.scale
    np.maximum.accumulate(scaled[::-1], axis=0, out=scaled[::-1])
    scaled *= group.unscale
    return scaled


def _class_level(group: RowGroup, tables: LevelTables, cumulative: np.ndarray) -> np.ndarray:
    """Flat table index of each row's cumulative level: [R, B]."""
    return np.take(tables.base, group.class_of_row, axis=0) + cumulative


# ----------------------------------------------------------------------------------------------- yolo
def _yolo_group(
    group: RowGroup, w: np.ndarray, count_before: np.ndarray, tables: LevelTables
) -> tuple[np.ndarray, np.ndarray]:
    """``compute_ap`` of the group's classes at one threshold, without the part after the last true
    positive, and their true positives: both [G, B].

    Rows of weight 0 (images not drawn) need no mask in the envelope: their "precision" is that of the last
    real point before them, which never exceeds the envelope of the runs before it.
    """
    cum_tp = _class_cumsum(w, group)
    level_before = cum_tp - w
    envelope = _class_envelope(cum_tp / np.maximum(count_before + w, 1), group)  # tpc / (tpc + fpc)
    # the envelope at level a's last point: the previous run's last copy or a false positive (a / E), or the
    # curve's head (1.0) when nothing comes before (E = 0, then a = 0)
    tail = np.maximum(envelope, level_before / np.maximum(count_before, 1) + (count_before == 0))
    end = _class_level(group, tables, cum_tp)
    start = end - w
    # from level a to T every grid point reads V, except that the points between levels a and a + 1 read
    # V + (tail - V) x their share of the interpolation's left end
    reach = np.take(tables.grid_prefix, end) - np.take(tables.grid_prefix, start)
    contributions = envelope * reach + (tail - envelope) * np.take(tables.entry, start)
    contributions *= w > 0
    ap = np.add.reduceat(contributions, group.starts[:-1], axis=0)
    return ap, np.take(cum_tp, group.last_rows, axis=0)


def _yolo_final_segments(found: np.ndarray, totals: np.ndarray, tables: LevelTables) -> np.ndarray:
    """After the last true positive (K of them among N predictions): from (K / n, K / N) down to (1, 0),
    for every threshold [T, C, B]; 0 for classes without any. Summed over the grid points there as
    ``(K / N) / (1 - r) x sum w_i (1 - x_i)``."""
    index = tables.base[None] + found.astype(np.int64)
    recall = found / (tables.n + _YOLO_EPS)[None]
    start = np.take(tables.grid, index)
    with np.errstate(divide="ignore", invalid="ignore"):
        last_precision = np.where(found > 0, found / totals[None], 0.0)
        fall = np.where(recall < 1.0, np.take(_FALL_SUFFIX, start) / (1.0 - recall), 0.0)
    return last_precision * fall


# ----------------------------------------------------------------------------------------------- coco
def _coco_group(group: RowGroup, w: np.ndarray, count_before: np.ndarray, tables: LevelTables) -> np.ndarray:
    """``accumulate`` (area "all", maxDets 100) of the group's classes at one threshold, averaged over the
    101 recall thresholds: [G, B]."""
    w_tp = w if group.is_tp is None else w * group.is_tp[:, None]
    w_eligible = w if group.eligible is None else w * group.eligible[:, None]  # flags 0/1: stays integer
    cum_tp = _class_cumsum(w_tp, group)
    cum_matched = cum_tp if w_eligible is w_tp else _class_cumsum(w_eligible, group)
    false_pos = count_before - (cum_matched - w_eligible)
    # rows without a weighted true positive read the precision of the last point before them (never above
    # the envelope of earlier runs) and add no recall steps: no mask needed
    envelope = _class_envelope(cum_tp / ((false_pos + cum_tp) + _COCO_EPS), group)
    end = _class_level(group, tables, cum_tp)
    steps = np.take(tables.steps, end) - np.take(tables.steps, end - w_tp)
    return np.add.reduceat(envelope * steps, group.starts[:-1], axis=0) / _GRID.size
