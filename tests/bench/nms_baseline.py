"""Frozen copy of smartcash_core/ops/nms.py as of commit 0220c8d (before the faster NMS): the bench baseline.

Not used by the library; tests/bench/bench_nms.py times it against the current implementation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from smartcash_core.ops.boxes import xywh2xyxy

MAX_WH = 7680  # YOLOv5's class offset: boxes of different classes are shifted apart so they never overlap
BLOCK = 512  # candidates compared per vectorized step of the pure-torch fallback

NmsFunction = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]


def _load_torchvision_nms() -> NmsFunction | None:
    try:  # torchvision may be absent or built against another torch; either way fall back
        from torchvision.ops import nms as torchvision_nms
    except Exception:
        return None
    return torchvision_nms


_TORCHVISION_NMS = _load_torchvision_nms()


def nms_backend() -> str:
    """``torchvision`` or ``torch`` (the exact pure-torch fallback)."""
    return "torchvision" if _TORCHVISION_NMS is not None else "torch"


def _pairwise_iou_like_torchvision(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """``[N, M]`` IoU in float32, operation for operation as torchvision's CPU kernel (no eps)."""
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    width = np.maximum(
        np.minimum(boxes1[:, None, 2], boxes2[None, :, 2])
        - np.maximum(boxes1[:, None, 0], boxes2[None, :, 0]),
        np.float32(0),
    )
    height = np.maximum(
        np.minimum(boxes1[:, None, 3], boxes2[None, :, 3])
        - np.maximum(boxes1[:, None, 1], boxes2[None, :, 1]),
        np.float32(0),
    )
    inter = width * height
    with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 for degenerate boxes: NaN, never > thres
        return inter / (area1[:, None] + area2[None, :] - inter)


def _resolve_block(ious: np.ndarray, iou_thres: float, room: int) -> list[int]:
    """Greedy within one block whose rows are in score order; returns kept row indices (at most ``room``)."""
    suppresses = np.triu(ious > iou_thres, k=1)
    suppressed = np.zeros(len(ious), dtype=bool)
    kept: list[int] = []
    for row in range(len(ious)):
        if suppressed[row]:
            continue
        kept.append(row)
        if len(kept) == room:
            break
        suppressed |= suppresses[row]
    return kept


def greedy_nms(
    boxes: torch.Tensor, scores: torch.Tensor, iou_thres: float, max_keep: int | None = None
) -> torch.Tensor:
    """Exact greedy NMS: indices ``[K]`` (int64, by decreasing score) of the kept boxes of ``[N, 4]`` xyxy.

    Same result as ``torchvision.ops.nms`` (stable descending score order, IoU > ``iou_thres`` suppresses),
    truncated to the first ``max_keep`` kept boxes when given.
    """
    count = boxes.shape[0]
    limit = count if max_keep is None else min(max_keep, count)
    if count == 0 or limit <= 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores.detach().float().cpu(), descending=True, stable=True).indices.numpy()
    sorted_boxes = boxes.detach().float().cpu().numpy()[order]
    kept_positions = greedy_on_sorted(sorted_boxes, iou_thres, limit)
    return torch.from_numpy(order[kept_positions]).to(boxes.device)


def greedy_on_sorted(sorted_boxes: np.ndarray, iou_thres: float, limit: int) -> list[int]:
    """Greedy NMS over float32 xyxy boxes ``[N, 4]`` already in score order; kept positions (<= limit)."""
    kept_positions: list[int] = []
    for start in range(0, len(sorted_boxes), BLOCK):
        block = sorted_boxes[start : start + BLOCK]
        alive = np.arange(len(block))
        if kept_positions:
            overlaps_kept = _pairwise_iou_like_torchvision(sorted_boxes[kept_positions], block) > iou_thres
            alive = alive[~overlaps_kept.any(axis=0)]
        if len(alive):
            among_survivors = _pairwise_iou_like_torchvision(block[alive], block[alive])
            survivors = alive[_resolve_block(among_survivors, iou_thres, limit - len(kept_positions))]
            kept_positions.extend(int(start + index) for index in survivors)
        if len(kept_positions) >= limit:
            break
    return kept_positions


def nms_indices(boxes: torch.Tensor, scores: torch.Tensor, iou_thres: float, max_keep: int) -> torch.Tensor:
    """Kept indices ``[K <= max_keep]`` by decreasing score, with torchvision when available."""
    if _TORCHVISION_NMS is not None:
        return _TORCHVISION_NMS(boxes, scores, iou_thres)[:max_keep]
    return greedy_nms(boxes, scores, iou_thres, max_keep)


def _candidates(
    image_pred: torch.Tensor, conf_thres: float, multi_label: bool, num_classes: int
) -> torch.Tensor:
    """``[N, 5 + nc]`` raw rows -> ``[M, 6]`` (x1, y1, x2, y2, conf, cls), conf = obj * cls > conf_thres."""
    rows = image_pred[image_pred[:, 4] > conf_thres]
    class_conf = rows[:, 5 : 5 + num_classes] * rows[:, 4:5]
    boxes = xywh2xyxy(rows[:, :4])
    if multi_label:
        box_index, class_index = (class_conf > conf_thres).nonzero(as_tuple=True)
        return torch.cat(
            (boxes[box_index], class_conf[box_index, class_index, None], class_index[:, None].to(rows.dtype)),
            1,
        )
    best_conf, best_class = class_conf.max(1, keepdim=True)
    rows = torch.cat((boxes, best_conf, best_class.to(rows.dtype)), 1)
    return rows[best_conf.view(-1) > conf_thres]


def non_max_suppression(
    prediction: torch.Tensor,
    conf_thres: float = 0.001,
    iou_thres: float = 0.6,
    classes: Sequence[int] | None = None,
    multi_label: bool = True,
    max_det: int = 300,
    max_nms: int = 30000,
    agnostic: bool = False,
) -> list[torch.Tensor]:
    """YOLOv5 7.0 NMS on decoded head output ``[B, N, 5 + nc]`` (xywh pixels, objectness, class scores).

    Returns one ``[n, 6]`` tensor per image: (x1, y1, x2, y2, conf, cls), by decreasing confidence,
    ``n <= max_det``. Candidates are every (box, class) with obj * cls > ``conf_thres`` (``multi_label``) or
    each box's best class; the ``max_nms`` most confident go into class-aware greedy NMS (YOLOv5's
    coordinate-offset trick, so its float32 rounding is reproduced too).
    """
    if not 0 <= conf_thres <= 1 or not 0 <= iou_thres <= 1:
        raise ValueError(f"conf_thres and iou_thres must be in [0, 1], got {conf_thres} and {iou_thres}")
    num_classes = prediction.shape[2] - 5
    multi_label = multi_label and num_classes > 1
    wanted = None if classes is None else torch.tensor(list(classes), device=prediction.device)
    output: list[torch.Tensor] = []
    if prediction.device.type == "cpu" and _TORCHVISION_NMS is None:
        # numpy on CPU: the same float32 arithmetic, without intra-op thread hand-offs that make many
        # small torch ops slow on a busy machine
        wanted_np = None if classes is None else np.asarray(list(classes), dtype=np.float32)
        settings = (conf_thres, iou_thres, multi_label, num_classes, max_det, max_nms, agnostic)
        return [
            torch.from_numpy(_image_nms_numpy(image_pred, wanted_np, *settings))
            for image_pred in prediction.detach().float().numpy()
        ]
    for image_pred in prediction:
        rows = _candidates(image_pred, conf_thres, multi_label, num_classes)
        if wanted is not None:
            rows = rows[(rows[:, 5:6] == wanted).any(1)]
        if rows.shape[0] == 0:
            output.append(torch.zeros((0, 6), dtype=prediction.dtype, device=prediction.device))
            continue
        rows = rows[torch.sort(rows[:, 4], descending=True, stable=True).indices[:max_nms]]
        offsets = rows[:, 5:6] * (0 if agnostic else MAX_WH)
        keep = nms_indices(rows[:, :4] + offsets, rows[:, 4], iou_thres, max_det)
        output.append(rows[keep])
    return output


def _image_nms_numpy(
    image_pred: np.ndarray,
    wanted: np.ndarray | None,
    conf_thres: float,
    iou_thres: float,
    multi_label: bool,
    num_classes: int,
    max_det: int,
    max_nms: int,
    agnostic: bool,
) -> np.ndarray:
    """One image of :func:`non_max_suppression` in numpy float32: ``[N, 5 + nc]`` -> ``[n, 6]``."""
    rows = image_pred[image_pred[:, 4] > conf_thres]
    class_conf = rows[:, 5 : 5 + num_classes] * rows[:, 4:5]
    half_wh = rows[:, 2:4] / np.float32(2)
    boxes = np.concatenate((rows[:, 0:2] - half_wh, rows[:, 0:2] + half_wh), axis=1)
    if multi_label:
        box_index, class_index = np.nonzero(class_conf > conf_thres)
        scores = class_conf[box_index, class_index]
    else:
        box_index, class_index = np.arange(len(rows)), class_conf.argmax(1) if len(rows) else np.zeros(0, int)
        scores = class_conf[box_index, class_index]
        box_index, class_index, scores = (
            part[scores > conf_thres] for part in (box_index, class_index, scores)
        )
    table = np.concatenate(
        (boxes[box_index], scores[:, None], class_index[:, None].astype(np.float32)), axis=1
    ).astype(np.float32, copy=False)
    if wanted is not None:
        table = table[np.isin(table[:, 5], wanted)]
    if len(table) == 0:
        return np.zeros((0, 6), dtype=np.float32)
    table = table[np.argsort(-table[:, 4], kind="stable")[:max_nms]]
    offsets = table[:, 5:6] * np.float32(0 if agnostic else MAX_WH)
    kept = greedy_on_sorted(table[:, :4] + offsets, iou_thres, max_det)
    return table[kept]
