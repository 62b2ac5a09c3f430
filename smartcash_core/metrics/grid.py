"""Every prediction against every ground truth of its own image, as padded [W, n] tables.

Both the ``yolo`` matching (same class, IoU >= 0.5) and the confusion matrix (any class, IoU > 0.45) need
the float32 IoU of a prediction with the ground truth of its image. Computing it once per chunk on a
padded table (row = slot of a ground truth inside the image, column = prediction) replaces the two pair
lists and their index gathers with broadcast arithmetic; slot-major rows keep the reductions over slots
(best ground truth of a prediction) elementwise over long contiguous rows. Images are bucketed by
ground-truth count (powers of two) whenever one wide image would make the padding cost more than the real
pairs.

Padding slots point one past the last ground truth: a zero box with class -1, so their IoU is 0 and they
never match.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from smartcash_core.metrics.inputs import FlatBatch

_YOLO_EPS = np.float32(1e-7)
_PAD_CLASS = -1
_WASTE_SLACK = 4096  # padded cells accepted for free before bucketing pays for its extra passes


@dataclass(frozen=True)
class ImageGrid:
    """Predictions ``preds`` [n] of some images, each with a column of ``table`` [W, B'] (its image's
    ground-truth rows by slot; ``M`` = padding)."""

    preds: np.ndarray
    image: np.ndarray  # [n] column of ``table`` of each prediction, non-decreasing
    table: np.ndarray  # [W, B'] int64 ground-truth rows, padding = number of ground truths
    repeats: np.ndarray  # [B'] predictions per column of ``table``

    def per_slot(self, gt_values: np.ndarray, pad: float | int) -> np.ndarray:
        """``gt_values`` [M] spread over the grid: [W, n], ``pad`` in padding slots."""
        padded = np.append(gt_values, np.asarray(pad, dtype=gt_values.dtype))[self.table]
        # predictions come image by image, so repeating columns is the gather (and ~10x cheaper)
        return np.repeat(padded, self.repeats, axis=1)

    def gt_rows(self, local: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """Ground-truth row of slot ``slots`` [k] for grid columns ``local`` [k]."""
        return self.table[slots, self.image[local]]


@dataclass(frozen=True)
class Overlaps:
    """Float32 IoU grids ``ious[k]`` [W, n] over ``grids[k]``: some predictions of a batch against the
    ground truth of their images (``overlaps``). Shared by the ``yolo`` matching of every view and the
    confusion matrix, so the IoU is computed once per chunk."""

    grids: list[ImageGrid]
    ious: list[np.ndarray]


def overlaps(batch: FlatBatch, pred_rows: np.ndarray) -> Overlaps:
    """IoU grids of the predictions ``pred_rows`` of ``batch`` (ascending) with their images' ground truth."""
    grids = image_grids(pred_rows, batch.pred_image[pred_rows], batch.gt_image, batch.num_images)
    gt32, pred32 = batch.gt_boxes.astype(np.float32), batch.pred_boxes.astype(np.float32)
    return Overlaps(grids, [grid_iou_yolo(grid, gt32, pred32) for grid in grids])


def image_grids(
    pred_rows: np.ndarray, pred_image: np.ndarray, gt_image: np.ndarray, num_images: int
) -> list[ImageGrid]:
    """Grids covering the predictions ``pred_rows`` (image positions ``pred_image`` [n], non-decreasing)
    against the ground truth of their images (``gt_image`` [M], non-decreasing). Images without ground
    truth are left out (their predictions have no pair)."""
    gt_count = np.bincount(gt_image, minlength=num_images)
    pred_count = np.bincount(pred_image, minlength=num_images)
    width = int(gt_count.max(initial=0))
    pairs = int(pred_count @ gt_count)
    if pairs == 0:
        return []
    gt_start = np.cumsum(gt_count) - gt_count
    if int(pred_rows.size) * width <= 2 * pairs + _WASTE_SLACK:
        images = np.arange(num_images)
        return [_grid(pred_rows, pred_image, images, gt_count, gt_start, gt_image.size)]
    level = np.where(gt_count > 0, np.ceil(np.log2(np.maximum(gt_count, 1))), -1)
    level[pred_count == 0] = -1
    grids = []
    for value in np.unique(level[level >= 0]):
        images = np.flatnonzero(level == value)
        chosen = np.flatnonzero(level[pred_image] == value)
        local = np.searchsorted(images, pred_image[chosen])
        grids.append(_grid(pred_rows[chosen], local, images, gt_count, gt_start, gt_image.size))
    return grids


def _grid(
    preds: np.ndarray,
    local_image: np.ndarray,
    images: np.ndarray,
    gt_count: np.ndarray,
    gt_start: np.ndarray,
    num_gt: int,
) -> ImageGrid:
    counts = gt_count[images]
    slots = np.arange(int(counts.max(initial=0)))
    table = np.where(slots[:, None] < counts, gt_start[images] + slots[:, None], num_gt)
    return ImageGrid(preds, local_image, table, np.bincount(local_image, minlength=images.size))


def grid_iou_yolo(grid: ImageGrid, gt_boxes32: np.ndarray, pred_boxes32: np.ndarray) -> np.ndarray:
    """IoU [W, n] float32 of each grid prediction with each ground truth slot, bit-identical to YOLOv5's
    ``box_iou(labels, detections)`` (same operations, same order; padding slots give 0).

    gt_boxes32 [M, 4] and pred_boxes32 [N, 4] are float32 xyxy (all rows of the batch).
    """
    px1, py1, px2, py2 = (pred_boxes32[grid.preds, k] for k in range(4))
    inter = _overlap(grid, gt_boxes32[:, 0], gt_boxes32[:, 2], px1, px2)
    inter *= _overlap(grid, gt_boxes32[:, 1], gt_boxes32[:, 3], py1, py2)
    gt_area = (gt_boxes32[:, 2] - gt_boxes32[:, 0]) * (gt_boxes32[:, 3] - gt_boxes32[:, 1])
    union = grid.per_slot(gt_area, 0)
    union += (px2 - px1) * (py2 - py1)
    union -= inter
    union += _YOLO_EPS
    inter /= union
    return inter


def _overlap(
    grid: ImageGrid, gt_low: np.ndarray, gt_high: np.ndarray, pred_low: np.ndarray, pred_high: np.ndarray
) -> np.ndarray:
    """``(min(high) - max(low)).clamp(0)`` along one axis: [W, n], at most two [W, n] arrays alive."""
    extent = grid.per_slot(np.ascontiguousarray(gt_high), 0)
    np.minimum(extent, pred_high, out=extent)
    low = grid.per_slot(np.ascontiguousarray(gt_low), 0)
    np.maximum(low, pred_low, out=low)
    extent -= low
    return np.maximum(extent, 0, out=extent)
