"""Turn per-image predictions and ground truth (numpy or torch, any device) into one checked flat batch.

Every check is vectorized over the whole batch; an error names the argument, the image id and the row,
so a caller can find the bad box without re-running anything.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np

ArrayLike = Any  # numpy array, torch tensor (any device) or nested lists


@dataclass(frozen=True)
class FlatBatch:
    """Many images concatenated in image order.

    ``pred_image`` / ``gt_image`` are positions in ``image_ids`` (0..B-1), non-decreasing.
    Shapes: pred_boxes [N, 4] xyxy, pred_scores [N], pred_classes [N] int64, gt_boxes [M, 4] xyxy,
    gt_classes [M] int64, image_ids [B] int64. Boxes and scores stay float32 when given as float32 (every
    consumer casts to the precision its reference uses; float32 -> float64 is exact), else float64.
    """

    pred_boxes: np.ndarray
    pred_scores: np.ndarray
    pred_classes: np.ndarray
    pred_image: np.ndarray
    gt_boxes: np.ndarray
    gt_classes: np.ndarray
    gt_image: np.ndarray
    image_ids: np.ndarray

    @property
    def num_images(self) -> int:
        return int(self.image_ids.shape[0])


def to_numpy(value: ArrayLike) -> np.ndarray:
    """A numpy view/copy of ``value``; torch tensors are detached and moved to the CPU first."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _concat(parts: Sequence[ArrayLike], width: int) -> np.ndarray:
    """Concatenate per-image parts as [rows, width] (width 1: flat [rows]); torch parts are joined on
    their device and copied to the host once. Row counts were checked by ``_row_counts`` already."""
    shape = (-1, width) if width > 1 else (-1,)
    if parts and all(hasattr(part, "detach") for part in parts):
        import torch  # only reached when the caller already uses torch

        return to_numpy(torch.cat([part.reshape(shape) for part in parts]))
    if not parts:
        return np.zeros((0, width) if width > 1 else (0,))
    if _all_numpy_shaped(parts, width):  # the common case: no per-image conversion or reshape
        return np.concatenate(parts)
    return np.concatenate([np.asarray(to_numpy(part)).reshape(shape) for part in parts])


def _all_numpy_shaped(parts: Sequence[ArrayLike], width: int) -> bool:
    """Whether every part is a numpy array already shaped [rows, width] (width 1: [rows])."""
    if not all(type(part) is np.ndarray for part in parts):
        return False
    if width == 1:
        return all(part.ndim == 1 for part in parts)
    return all(part.ndim == 2 and part.shape[1] == width for part in parts)


def flatten_images(
    pred_boxes: Sequence[ArrayLike],
    pred_scores: Sequence[ArrayLike],
    pred_classes: Sequence[ArrayLike],
    gt_boxes: Sequence[ArrayLike],
    gt_classes: Sequence[ArrayLike],
    image_ids: np.ndarray,
    num_classes: int,
) -> FlatBatch:
    """Check lengths per image, concatenate, and validate values (see ``validate_batch``)."""
    lists = {
        "pred_boxes": pred_boxes,
        "pred_scores": pred_scores,
        "pred_classes": pred_classes,
        "gt_boxes": gt_boxes,
        "gt_classes": gt_classes,
    }
    for name, parts in lists.items():
        if len(parts) != len(image_ids):
            raise ValueError(f"{name} has {len(parts)} images but the batch has {len(image_ids)}")
    pred_counts = _row_counts("pred", pred_boxes, pred_scores, pred_classes, image_ids)
    gt_counts = _row_counts("gt", gt_boxes, None, gt_classes, image_ids)
    positions = np.arange(len(image_ids), dtype=np.int64)
    batch = FlatBatch(
        pred_boxes=_boxes(_concat(pred_boxes, 4), "pred_boxes"),
        pred_scores=_floats(_concat(pred_scores, 1).reshape(-1)),
        pred_classes=_classes(_concat(pred_classes, 1), "pred_classes"),
        pred_image=np.repeat(positions, pred_counts),
        gt_boxes=_boxes(_concat(gt_boxes, 4), "gt_boxes"),
        gt_classes=_classes(_concat(gt_classes, 1), "gt_classes"),
        gt_image=np.repeat(positions, gt_counts),
        image_ids=image_ids,
    )
    validate_batch(batch, num_classes)
    return replace(
        batch,
        pred_classes=batch.pred_classes.astype(np.int64, copy=False),
        gt_classes=batch.gt_classes.astype(np.int64, copy=False),
    )


def _row_counts(
    kind: str,
    boxes: Sequence[ArrayLike],
    scores: Sequence[ArrayLike] | None,
    classes: Sequence[ArrayLike],
    image_ids: np.ndarray,
) -> np.ndarray:
    """Rows per image; mismatched lengths between the arrays of one image raise ``ValueError``."""
    if _all_numpy_shaped(boxes, 4):
        counts = np.fromiter((part.shape[0] for part in boxes), dtype=np.int64, count=len(boxes))
    else:
        counts = np.fromiter(
            (_num_boxes(b, f"{kind}_boxes", int(i)) for b, i in zip(boxes, image_ids, strict=True)),
            dtype=np.int64,
            count=len(boxes),
        )
    others = (
        {f"{kind}_classes": classes} if scores is None else {"pred_scores": scores, "pred_classes": classes}
    )
    for name, parts in others.items():
        lengths = np.fromiter(
            (_num_entries(part) for part in parts),
            dtype=np.int64,
            count=len(parts),
        )
        bad = np.flatnonzero(lengths != counts)
        if bad.size:
            first = int(bad[0])
            raise ValueError(
                f"{name} of image {int(image_ids[first])} has {int(lengths[first])} entries but "
                f"{kind}_boxes has {int(counts[first])} boxes: one entry per box is needed"
            )
    return counts


def _num_entries(part: ArrayLike) -> int:
    if type(part) is np.ndarray:
        return part.size
    return int(part.numel()) if hasattr(part, "numel") else len(part)


def _num_boxes(boxes: ArrayLike, name: str, image_id: int) -> int:
    shape = tuple(boxes.shape) if hasattr(boxes, "shape") else np.shape(boxes)
    if len(shape) == 2 and shape[1] == 4:
        return int(shape[0])
    if int(np.prod(shape)) == 0:
        return 0
    raise ValueError(f"{name} of image {image_id} has shape {shape}; expected [N, 4] xyxy boxes")


def _boxes(array: np.ndarray, name: str) -> np.ndarray:
    if array.size == 0:
        return np.zeros((0, 4), dtype=np.float64)
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(f"{name} must be real numbers, got dtype {array.dtype}")
    return _floats(array.reshape(-1, 4))


def _floats(array: np.ndarray) -> np.ndarray:
    """float32 stays float32 (no copy), anything else becomes float64."""
    return array if array.dtype == np.float32 else array.astype(np.float64, copy=False)


def _classes(array: np.ndarray, name: str) -> np.ndarray:
    """Integer ids stay int64; float ids (YOLO tensors carry classes as floats) stay float64 until checked."""
    flat = array.reshape(-1)
    if flat.dtype.kind in "iub":
        return flat.astype(np.int64, copy=False)
    if flat.dtype.kind != "f":
        raise ValueError(f"{name} must be numbers, got dtype {flat.dtype}")
    return flat.astype(np.float64, copy=False)


def validate_batch(batch: FlatBatch, num_classes: int) -> None:
    """Raise ``ValueError`` naming the argument, image id and row of the first bad value.

    Rejected: NaN/inf boxes or scores, x2 < x1 or y2 < y1 (negative sizes), class ids outside
    ``0..num_classes-1``.
    """
    for name, boxes, image in (
        ("pred_boxes", batch.pred_boxes, batch.pred_image),
        ("gt_boxes", batch.gt_boxes, batch.gt_image),
    ):
        _reject_rows(name, ~np.isfinite(boxes).all(axis=1), image, batch, "is not finite (NaN or inf)")
        negative = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
        _reject_rows(name, negative, image, batch, "has x2 < x1 or y2 < y1 (negative size); boxes are xyxy")
    _reject_rows("pred_scores", ~np.isfinite(batch.pred_scores), batch.pred_image, batch, "is not finite")
    for name, classes, image in (
        ("pred_classes", batch.pred_classes, batch.pred_image),
        ("gt_classes", batch.gt_classes, batch.gt_image),
    ):
        if classes.dtype.kind == "f":
            fractional = ~np.isfinite(classes) | (classes != np.round(classes))
            _reject_rows(name, fractional, image, batch, "is not an integer class id")
        outside = (classes < 0) | (classes >= num_classes)
        _reject_rows(name, outside, image, batch, f"is outside 0..{num_classes - 1}")


def _reject_rows(name: str, bad: np.ndarray, image: np.ndarray, batch: FlatBatch, reason: str) -> None:
    rows = np.flatnonzero(bad)
    if rows.size == 0:
        return
    flat_row = int(rows[0])
    position = int(image[flat_row])
    row_in_image = flat_row - int(np.searchsorted(image, position, side="left"))
    raise ValueError(
        f"{name} of image {int(batch.image_ids[position])} (batch position {position}), "
        f"row {row_in_image} {reason}"
    )


_NO_BOXES = np.zeros((0, 4))  # what ``_boxes`` makes of no boxes (float64), shared read-only
_NO_BOXES.flags.writeable = False
_FLOAT_KINDS = (np.dtype(np.float32), np.dtype(np.float64))
_SUM, _MIN, _MAX = np.add.reduce, np.minimum.reduce, np.maximum.reduce


class OneImage(NamedTuple):
    """One checked image, its arrays copied (``flatten_one_image``); ``staging`` joins such images into a
    :class:`FlatBatch` off the caller's thread. A tuple, not a dataclass: it is made once per image."""

    pred_boxes: np.ndarray
    pred_scores: np.ndarray
    pred_classes: np.ndarray  # int64
    gt_boxes: np.ndarray
    gt_classes: np.ndarray  # int64
    image_id: int

    @property
    def num_images(self) -> int:
        return 1


def flatten_one_image(
    pred_boxes: ArrayLike,
    pred_scores: ArrayLike,
    pred_classes: ArrayLike,
    gt_boxes: ArrayLike,
    gt_classes: ArrayLike,
    image_id: int,
    num_classes: int,
) -> OneImage | None:
    """One image of plain, valid numpy arrays (float boxes and scores, integer classes), checked in a
    handful of numpy calls, arrays as ``flatten_images`` would make them; ``None`` for anything else (other
    types or shapes, and any value ``validate_batch`` might reject), which the caller hands to
    ``flatten_images``.

    The arrays are copied: the caller may reuse its buffers once this returns.
    """
    arrays = (pred_boxes, pred_scores, pred_classes, gt_boxes, gt_classes)
    if not _plain_image(*arrays) or not _plainly_valid(*arrays, num_classes):
        return None
    return OneImage(
        pred_boxes.copy() if pred_boxes.shape[0] else _NO_BOXES,
        pred_scores.copy(),
        pred_classes.astype(np.int64),
        gt_boxes.copy() if gt_boxes.shape[0] else _NO_BOXES,
        gt_classes.astype(np.int64),
        image_id,
    )


def _plain_image(boxes: Any, scores: Any, classes: Any, gt_boxes: Any, gt_classes: Any) -> bool:
    """numpy arrays of the exact shapes and dtypes the one-image fast path handles."""
    if not all(type(array) is np.ndarray for array in (boxes, scores, classes, gt_boxes, gt_classes)):
        return False
    return (
        boxes.ndim == 2
        and boxes.shape[1] == 4
        and gt_boxes.ndim == 2
        and gt_boxes.shape[1] == 4
        and scores.shape == classes.shape == (boxes.shape[0],)
        and gt_classes.shape == (gt_boxes.shape[0],)
        and boxes.dtype in _FLOAT_KINDS
        and scores.dtype in _FLOAT_KINDS
        and gt_boxes.dtype in _FLOAT_KINDS
        and classes.dtype.kind in "iu"
        and gt_classes.dtype.kind in "iu"
    )


def _plainly_valid(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    gt_boxes: np.ndarray,
    gt_classes: np.ndarray,
    num_classes: int,
) -> bool:
    """Every value passes ``validate_batch`` (a finite sum means no NaN or inf; a sum that overflows only
    sends the image down the general path). Plain ufunc reductions: the ``ndarray`` methods add a Python
    wrapper call each, which is most of the cost on arrays this small."""
    total = _SUM(boxes, axis=None) + _SUM(scores, axis=None) + _SUM(gt_boxes, axis=None)
    if not math.isfinite(total):
        return False
    for rows, ids in ((boxes, classes), (gt_boxes, gt_classes)):
        if rows.shape[0] and not (
            _MIN(rows[:, 2:] - rows[:, :2], axis=None) >= 0
            and _MIN(ids, axis=None) >= 0
            and _MAX(ids, axis=None) < num_classes
        ):
            return False
    return True
