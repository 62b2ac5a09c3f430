"""The sorted state of one evaluator view, prepared once for many image resamples (the bootstrap).

A resample draws images with replacement; it is a vector of per-image multiplicities ``w`` (0, 1, 2, ...).
The metrics of the resampled image list depend only on each class's predictions in the protocol's sort order
(confidence descending), their outcomes, and the multiplicities of the images they come from: copies of one
image are tied in score with identical outcomes, so they form one consecutive run of the same outcome.

What this module keeps per view (everything that does not depend on ``w``):

* every prediction's class, image column and outcome, sorted once as the protocol sorts them (``yolo``:
  YOLOv5's ``np.argsort(-conf)`` then a stable split by class; ``coco``: pycocotools' stable mergesort);
* the *tracked* rows: predictions matched at some IoU threshold (true positives; for ``coco`` also matches
  of ignored ground truth), the only places where a precision/recall curve can change direction;
* the *eligible* predictions (those that count as false positives when unmatched: all for ``yolo``; in the
  area range "all" and inside maxDets=100 for ``coco``) before each tracked row, so a resample's weighted
  false-positive count before a tracked row is one cumulative sum;
* per threshold, which tracked rows are matched there and which of those are true positives;
* per class and image: ground-truth counts (and for ``yolo`` prediction counts).

``resample_ap.resampled_ap`` turns this plus a block of multiplicity vectors into AP per threshold, class and
resample. Tie order: rows keep the order of the full sample's sort; see ``resample_ap`` for what that means
for exactness.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from smartcash_core.metrics.coco import OUTCOME_SHAPE
from smartcash_core.metrics.coco_accumulate import _class_score_order
from smartcash_core.metrics.matching import COCO_MAX_DETS, small_ints
from smartcash_core.metrics.protocol import NUM_IOU_THRESHOLDS, DetectionProtocol
from smartcash_core.metrics.state import StateArrays

_AREA_ALL = 0  # pycocotools' area range "all": the one the headline and per-class AP read


GROUP_ROWS = 2048  # rows per group: a group's [rows, resamples] arrays stay in the core's cache
GROUP_CLASSES = 30  # classes per group: their envelope scales 2**(32 k) stay inside float64's range
_SCALE_BITS = 32  # a positive precision is at least 2**-31 (fewer than 2**31 predictions)


@dataclass(frozen=True)
class RowGroup:
    """The rows of whole classes at one threshold (classes contiguous, in sort order), few enough that the
    arrays of a block of resamples over them stay in cache.

    ``rows`` [R]: indices into the view's tracked rows; ``is_tp`` / ``eligible`` [R] int32 0/1 (``None``:
    all ones, the ``yolo`` case where every match is a true positive and every prediction counts);
    ``classes`` [G]: the classes with rows here, ``starts`` [G + 1]: their local row bounds;
    ``class_of_row`` [R]; ``member`` [R]: the local index (0..G-1) of each row's class.

    ``scale`` [R, 1]: ``2**(32 (G - 1 - member))``. Scaling precisions by it (exact: powers of two) puts
    every positive precision of a class above everything of the classes after it, so one running maximum
    from the end over the whole group, scaled back, is each class's own envelope at its positive rows.
    """

    rows: np.ndarray
    is_tp: np.ndarray | None
    eligible: np.ndarray | None
    classes: np.ndarray
    starts: np.ndarray
    class_of_row: np.ndarray = field(init=False)
    member: np.ndarray = field(init=False)
    last_rows: np.ndarray = field(init=False)
    scale: np.ndarray = field(init=False)
    unscale: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        member = np.repeat(np.arange(self.classes.size), np.diff(self.starts))
        object.__setattr__(self, "member", member)
        object.__setattr__(self, "class_of_row", self.classes[member])
        object.__setattr__(self, "last_rows", self.starts[1:] - 1)
        exponent = (_SCALE_BITS * (self.classes.size - 1 - member)).astype(np.float64)
        object.__setattr__(self, "scale", np.exp2(exponent)[:, None])
        object.__setattr__(self, "unscale", np.exp2(-exponent)[:, None])


@dataclass(frozen=True)
class ThresholdRows:
    """The tracked rows matched at one IoU threshold, as groups of whole classes."""

    groups: tuple[RowGroup, ...]

    @property
    def size(self) -> int:
        return sum(group.rows.size for group in self.groups)


def group_rows(
    rows: np.ndarray,
    is_tp: np.ndarray | None,
    eligible: np.ndarray | None,
    bounds: np.ndarray,
    group_size: int = GROUP_ROWS,
) -> ThresholdRows:
    """Split rows (class c: ``rows[bounds[c]:bounds[c + 1]]``) into groups of whole classes of about
    ``group_size`` rows and at most ``GROUP_CLASSES`` classes (a larger class is a group alone)."""
    groups: list[RowGroup] = []
    classes = [int(c) for c in np.flatnonzero(np.diff(bounds) > 0)]
    while classes:
        taken = [classes.pop(0)]
        while (
            classes and len(taken) < GROUP_CLASSES and bounds[classes[0] + 1] - bounds[taken[0]] <= group_size
        ):
            taken.append(classes.pop(0))
        first, last = int(bounds[taken[0]]), int(bounds[taken[-1] + 1])
        part = slice(first, last)
        starts = np.asarray([bounds[c] - first for c in taken] + [last - first], dtype=np.int64)
        groups.append(
            RowGroup(
                rows[part],
                None if is_tp is None else is_tp[part],
                None if eligible is None else eligible[part],
                np.asarray(taken, dtype=np.int64),
                starts,
            )
        )
    return ThresholdRows(tuple(groups))


@dataclass(frozen=True)
class ViewCurves:
    """One view (fine or mapped) of one evaluator state, ready for ``resample_ap.resampled_ap``.

    Image columns index the resampling axis shared by the jobs being compared (``num_images`` of them).
    """

    protocol: str
    num_classes: int
    num_images: int
    gt_counts: np.ndarray  # [C, I] ground truth per class and image column (coco: area range "all")
    pred_counts: np.ndarray  # [C, I] predictions per class and image column (all of them; used by yolo)
    eligible_images: np.ndarray  # [Ne] image column of each eligible prediction before its class's last
    #                              tracked row, in sort order
    count_positions: np.ndarray  # [P] sorted positions p in 0..Ne where the count of eligible_images[:p]
    #                              is needed: before each tracked row, and where its class starts
    before_end: np.ndarray  # [S] index into count_positions: eligible predictions before the tracked row
    before_start: np.ndarray  # [S] index into count_positions: eligible predictions before its class
    tracked_images: np.ndarray  # [S] image column of each tracked row
    thresholds: tuple[ThresholdRows, ...]  # one per IoU threshold (0.50, 0.55, ..., 0.95)

    @property
    def classes_with_gt(self) -> np.ndarray:
        """Classes with ground truth in the full sample (every image once)."""
        return np.flatnonzero(self.gt_counts.sum(axis=1) > 0)


@dataclass(frozen=True)
class _SortedView:
    """Predictions of a view in sort order: class, image column, eligibility, outcome per threshold."""

    classes: np.ndarray  # [N]
    images: np.ndarray  # [N]
    eligible: np.ndarray  # [N] bool
    matched: np.ndarray  # [N, T] bool
    tp: np.ndarray  # [N, T] bool


def prepare_view(
    protocol: DetectionProtocol,
    state: Mapping[str, np.ndarray],
    view: str,
    image_columns: np.ndarray,
    num_images: int,
) -> ViewCurves:
    """``state`` (``DetectionEvaluator.state_arrays()``, one protocol) as curves of ``view``.

    ``image_columns`` [B]: the resampling column of each image of ``state`` in the order of its sorted
    ``image_ids`` (distinct values in ``0..num_images-1``).
    """
    protocol.check_view(view)
    ordered = protocol.image_ordered(dict(state))
    ids = np.sort(np.asarray(ordered["image_ids"], dtype=np.int64))
    columns = np.asarray(image_columns, dtype=np.int64)
    if columns.shape != ids.shape:
        raise ValueError(f"image_columns must hold one column per image ({ids.size}), got {columns.shape}")
    pred_cols = columns[np.searchsorted(ids, np.asarray(ordered["pred_image"], dtype=np.int64))]
    gt_cols = columns[np.searchsorted(ids, np.asarray(ordered["gt_image"], dtype=np.int64))]
    num_classes = protocol.view_num_classes(view)
    pred_classes = protocol.view_classes(view, ordered["pred_class"]).astype(np.int64)
    gt_classes = protocol.view_classes(view, ordered["gt_class"]).astype(np.int64)
    if protocol.name == "yolo":
        sorted_view = _yolo_sorted(ordered, view, pred_classes, pred_cols)
        gt_keep = np.ones(gt_classes.size, dtype=bool)
    else:
        sorted_view = _coco_sorted(ordered, view, pred_classes, pred_cols, num_classes)
        gt_keep = (np.asarray(ordered["gt_area_bits"]) >> _AREA_ALL) & 1 == 1
    shape = (num_classes, num_images)
    return _curves(
        protocol.name,
        sorted_view,
        num_classes,
        num_images,
        gt_counts=_counts(gt_classes[gt_keep], gt_cols[gt_keep], shape),
        pred_counts=_counts(pred_classes, pred_cols, shape),
    )


def _counts(classes: np.ndarray, columns: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    flat = np.bincount(classes * shape[1] + columns, minlength=shape[0] * shape[1])
    return flat.reshape(shape).astype(np.float64)


def _yolo_sorted(state: StateArrays, view: str, classes: np.ndarray, columns: np.ndarray) -> _SortedView:
    """YOLOv5's order: ``np.argsort(-conf)`` over all predictions in image order (the same call as
    ``yolo.yolo_metrics``, so ties fall the same way), then a stable split by class."""
    conf = np.asarray(state["pred_score"]).astype(np.float32, copy=False)
    order = np.argsort(-conf)
    order = order[np.argsort(small_ints(classes)[order], kind="stable")]
    bits = np.asarray(state[f"{view}_hit_bits"])[order]
    hits = (bits[:, None] >> np.arange(NUM_IOU_THRESHOLDS, dtype=np.uint16)) & 1 == 1
    return _SortedView(classes[order], columns[order], np.ones(order.size, dtype=bool), hits, hits)


def _coco_sorted(
    state: StateArrays, view: str, classes: np.ndarray, columns: np.ndarray, num_classes: int
) -> _SortedView:
    """pycocotools' order (stable by score over images in order, split by class); outcomes at area "all"
    for predictions inside maxDets=100 of their image and class."""
    order = _class_score_order(classes, np.asarray(state["pred_score"]), num_classes)
    live = np.asarray(state[f"{view}_rank"]) < COCO_MAX_DETS[-1]
    has_outcome = np.asarray(state[f"{view}_has_outcome"], dtype=bool)
    matched = np.zeros((classes.size, NUM_IOU_THRESHOLDS), dtype=bool)
    tp = np.zeros_like(matched)
    for name, target in (("matched_bits", matched), ("tp_bits", tp)):
        packed = np.asarray(state[f"{view}_{name}"])
        bits = np.unpackbits(packed, axis=1, count=OUTCOME_SHAPE[0] * OUTCOME_SHAPE[1]).astype(bool)
        target[has_outcome] = bits.reshape(-1, *OUTCOME_SHAPE)[:, :, _AREA_ALL]
    matched &= live[:, None]
    tp &= live[:, None]
    in_range = (np.asarray(state["pred_area_bits"]) >> _AREA_ALL) & 1 == 1
    return _SortedView(classes[order], columns[order], (live & in_range)[order], matched[order], tp[order])


def _curves(
    protocol: str,
    view: _SortedView,
    num_classes: int,
    num_images: int,
    gt_counts: np.ndarray,
    pred_counts: np.ndarray,
) -> ViewCurves:
    tracked = np.flatnonzero(view.matched.any(axis=1))
    tracked_classes = view.classes[tracked]
    class_first = np.searchsorted(view.classes, np.arange(num_classes), side="left")
    # eligible predictions after their class's last tracked row never precede a tracked row: drop them
    last_tracked = np.full(num_classes, -1, dtype=np.int64)
    last_tracked[tracked_classes] = tracked  # tracked is ascending: the last write per class wins
    positions = np.flatnonzero(view.eligible)
    positions = positions[positions < last_tracked[view.classes[positions]]]
    thresholds = tuple(
        _threshold_rows(view, tracked, tracked_classes, t, num_classes, protocol == "yolo")
        for t in range(NUM_IOU_THRESHOLDS)
    )
    before_end = np.searchsorted(positions, tracked)
    before_start = np.searchsorted(positions, class_first[tracked_classes])
    count_positions = np.union1d(before_end, before_start)
    return ViewCurves(
        protocol=protocol,
        num_classes=num_classes,
        num_images=num_images,
        gt_counts=gt_counts,
        pred_counts=pred_counts,
        eligible_images=view.images[positions],
        count_positions=count_positions,
        before_end=np.searchsorted(count_positions, before_end),
        before_start=np.searchsorted(count_positions, before_start),
        tracked_images=view.images[tracked],
        thresholds=thresholds,
    )


def _threshold_rows(
    view: _SortedView,
    tracked: np.ndarray,
    tracked_classes: np.ndarray,
    t: int,
    num_classes: int,
    all_ones: bool,
) -> ThresholdRows:
    rows = np.flatnonzero(view.matched[tracked, t])
    bounds = np.searchsorted(tracked_classes[rows], np.arange(num_classes + 1), side="left")
    if all_ones:
        return group_rows(rows, None, None, bounds)
    positions = tracked[rows]
    is_tp = view.tp[positions, t].astype(np.int32)
    eligible = view.eligible[positions].astype(np.int32)
    return group_rows(rows, is_tp, eligible, bounds)
