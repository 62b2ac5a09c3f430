"""Exact greedy non-maximum suppression with YOLOv5 7.0 ``val.py`` semantics.

No time limit: the kept boxes never depend on how fast the machine is. Each image gets exactly what
YOLOv5's ``non_max_suppression`` returns with ``torchvision.ops.nms``:

- candidates as YOLOv5 builds them (:mod:`smartcash_core.ops.candidates`),
- ordered by ``x[:, 4].argsort(descending=True)``: torch's *unstable* sort (x86-simd-sort on AVX2/AVX-512
  CPUs), cut to ``max_nms``. torchvision's own sort is stable, so it keeps that order: equal scores come
  out in the order torch's unstable sort gives them, not by index,
- greedy NMS with YOLOv5's class offsets, IoU compared with the threshold in double, cut to ``max_det``.

``torchvision.ops.nms`` is used when torchvision imports (and YOLOv5's steps run in torch on any device).
Otherwise, on CPU, numpy reaches the same result faster: with many candidates it orders only the best ones
(those scoring at least a threshold picked for about :data:`HEAD` of them, the rest only if NMS gets that
far) and runs the blocked greedy of :mod:`smartcash_core.ops.greedy`, which stops once ``max_det`` boxes
are kept (later candidates can never displace an earlier kept box). Any descending order of distinct
scores is *the* order; where equal scores sit in the part that decides the result, the answer is computed
again along torch's full unstable sort, so ties are ordered exactly as in YOLOv5.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from smartcash_core.ops.boxes import xywh2xyxy
from smartcash_core.ops.candidates import MAX_WH, Candidates, yolov5_candidates
from smartcash_core.ops.greedy import GreedyNms, greedy_few

__all__ = ["MAX_WH", "greedy_nms", "nms_backend", "nms_indices", "non_max_suppression"]

BLOCK = 512  # candidates per vectorised greedy step
HEAD = 2048  # with many candidates, about this many best ones are ordered first; the rest only if needed
FEW = 64  # up to this many candidates (greedy_few's limit), all pairs are compared in one step

NmsFunction = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]


def _load_torchvision_nms() -> NmsFunction | None:
    try:  # torchvision may be absent or built against another torch; either way fall back
        from torchvision.ops import nms as torchvision_nms
    except Exception:
        return None
    return torchvision_nms


_TORCHVISION_NMS = _load_torchvision_nms()


def nms_backend() -> str:
    """``torchvision`` or ``torch`` (the exact fallback: numpy on CPU)."""
    return "torchvision" if _TORCHVISION_NMS is not None else "torch"


def greedy_nms(
    boxes: torch.Tensor, scores: torch.Tensor, iou_thres: float, max_keep: int | None = None
) -> torch.Tensor:
    """Exact stand-in for ``torchvision.ops.nms``: indices ``[K]`` (int64, by decreasing score) of the kept
    boxes of ``[N, 4]`` xyxy, truncated to the first ``max_keep`` kept boxes when given.

    torchvision sorts the scores with a *stable* descending sort, so equal scores keep index order.
    """
    count = boxes.shape[0]
    limit = count if max_keep is None else min(max_keep, count)
    if count == 0 or limit <= 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores.detach().float().cpu(), descending=True, stable=True).indices.numpy()
    sorted_boxes = boxes.detach().float().cpu().numpy()[order]
    greedy = GreedyNms(iou_thres, limit)
    for start in range(0, count, BLOCK):
        greedy.feed(sorted_boxes[start : start + BLOCK])
        if greedy.full:
            break
    return torch.from_numpy(order[greedy.kept]).to(boxes.device)


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
    if prediction.dim() != 3 or prediction.shape[2] < 6:
        raise ValueError(f"prediction must be [batch, boxes, 5 + classes >= 6], got {list(prediction.shape)}")
    conf_thres, iou_thres = float(conf_thres), float(iou_thres)  # Python floats compare as YOLOv5's do
    num_classes = prediction.shape[2] - 5
    multi_label = multi_label and num_classes > 1
    if prediction.device.type == "cpu" and _TORCHVISION_NMS is None:
        # numpy on CPU: the same float32 arithmetic, without intra-op thread hand-offs that make many
        # small torch ops slow on a busy machine
        wanted = None if classes is None else np.asarray(list(classes), dtype=np.float32)
        settings = (conf_thres, iou_thres, multi_label, num_classes, max_det, max_nms, agnostic)
        return [
            torch.from_numpy(_image_nms_numpy(image_pred, wanted, *settings))
            for image_pred in prediction.detach().float().numpy()
        ]
    return _nms_torch(prediction, conf_thres, iou_thres, classes, multi_label, max_det, max_nms, agnostic)


def _nms_torch(
    prediction: torch.Tensor,
    conf_thres: float,
    iou_thres: float,
    classes: Sequence[int] | None,
    multi_label: bool,
    max_det: int,
    max_nms: int,
    agnostic: bool,
) -> list[torch.Tensor]:
    """YOLOv5's own torch steps (any device), with torchvision's NMS or the exact stand-in."""
    num_classes = prediction.shape[2] - 5
    wanted = None if classes is None else torch.tensor(list(classes), device=prediction.device)
    output: list[torch.Tensor] = []
    for image_pred in prediction:
        rows = _candidates(image_pred, conf_thres, multi_label, num_classes)
        if wanted is not None:
            rows = rows[(rows[:, 5:6] == wanted).any(1)]
        if rows.shape[0] == 0:
            output.append(torch.zeros((0, 6), dtype=prediction.dtype, device=prediction.device))
            continue
        rows = rows[rows[:, 4].argsort(descending=True)[:max_nms]]  # YOLOv5's unstable sort, ties included
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
    candidates = yolov5_candidates(image_pred, conf_thres, multi_label, num_classes, wanted)
    if len(candidates) == 0 or max_det <= 0 or max_nms <= 0:
        return np.zeros((0, 6), dtype=np.float32)
    if len(candidates) <= FEW:
        detections = _few_detections(candidates, iou_thres, max_det, max_nms, agnostic)
        if detections is not None:
            return detections
    return candidates.detections(kept_candidates(candidates, iou_thres, max_det, max_nms, agnostic))


def kept_candidates(
    candidates: Candidates, iou_thres: float, max_det: int, max_nms: int, agnostic: bool
) -> np.ndarray:
    """Indices of the candidates YOLOv5 + torchvision keep, in their output order."""
    if len(candidates) > FEW:
        kept = _kept_along_partial_order(candidates, iou_thres, max_det, max_nms, agnostic)
        if kept is not None:
            return kept
    order = yolov5_order(candidates.scores)[:max_nms]
    greedy = GreedyNms(iou_thres, max_det)
    for start in range(0, len(order), BLOCK):
        if greedy.full:
            break
        greedy.feed(candidates.offset_xyxy(order[start : start + BLOCK], agnostic))
    return order[greedy.kept]


def _few_detections(
    candidates: Candidates, iou_thres: float, max_det: int, max_nms: int, agnostic: bool
) -> np.ndarray | None:
    """:func:`non_max_suppression`'s rows for a few candidates, with the least numpy calls: every row built
    at once, numpy's sort, one all-pairs greedy step. ``None`` when two scores are equal (only torch's
    unstable sort knows their order)."""
    table = candidates.detections(np.arange(len(candidates)))
    ranked = table[np.argsort(table[:, 4])[::-1]]
    if bool((ranked[:-1, 4] == ranked[1:, 4]).any()):
        return None
    ranked = ranked[:max_nms]
    boxes = ranked[:, :4] if agnostic else ranked[:, :4] + ranked[:, 5:6] * np.float32(MAX_WH)
    return ranked[greedy_few(boxes, iou_thres, max_det)]


def yolov5_order(scores: np.ndarray) -> np.ndarray:
    """YOLOv5's ``x[:, 4].argsort(descending=True)``: torch's unstable sort, which decides ties."""
    return torch.argsort(torch.from_numpy(scores), descending=True).numpy()


def _kept_along_partial_order(
    candidates: Candidates, iou_thres: float, max_det: int, max_nms: int, agnostic: bool
) -> np.ndarray | None:
    """:func:`kept_candidates` without torch's full sort: with many candidates only the best (those scoring
    at least a threshold) are ordered, and the rest only if NMS reaches them.

    ``None`` as soon as equal scores occur where their order matters: only the unstable sort knows it.
    """
    scores = candidates.scores
    threshold = _score_above(scores, HEAD) if len(scores) > 2 * HEAD else None
    order = _descending(
        scores, np.arange(len(scores)) if threshold is None else np.flatnonzero(scores >= threshold)
    )
    greedy = GreedyNms(iou_thres, max_det)
    if not _feed_distinct(greedy, candidates, order, 0, min(len(order), max_nms), agnostic):
        return None
    if not greedy.full and len(order) < min(len(scores), max_nms):  # order the rest: all below threshold
        head_size = len(order)
        order = np.concatenate((order, _descending(scores, np.flatnonzero(scores < threshold))))
        if not _feed_distinct(greedy, candidates, order, head_size, min(len(order), max_nms), agnostic):
            return None
    return order[greedy.kept]


def _feed_distinct(
    greedy: GreedyNms, candidates: Candidates, order: np.ndarray, start: int, end: int, agnostic: bool
) -> bool:
    """Feeds ``order[start:end]`` block by block; False if equal scores make the result order-dependent.

    A position that decides the result (every one up to the last kept box, or up to the block's end while
    fewer than ``max_det`` are kept) holds the same candidate in every descending order only if its score
    differs from both neighbours' (the one after it too, else that one could take its place). The
    head/rest boundary needs no check: every later score is strictly lower by construction.
    """
    scores = candidates.scores
    for block_start in range(start, end, BLOCK):
        block_end = min(block_start + BLOCK, end)
        greedy.feed(candidates.offset_xyxy(order[block_start:block_end], agnostic))
        last = greedy.kept[-1] if greedy.full else block_end - 1
        window = scores[order[max(block_start - 1, 0) : last + 2]]
        if bool((window[:-1] == window[1:]).any()):
            return False
        if greedy.full:
            break
    return True


def _descending(scores: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``index`` by decreasing score; equal scores in any order (the caller checks for them)."""
    return index[np.argsort(scores[index])[::-1]]


def _score_above(scores: np.ndarray, count: int) -> np.float32:
    """A score ``t`` with roughly ``1.25 * count`` (at least ``count`` when possible) scores ``>= t``, from a
    sample instead of a full selection: only the speed depends on how close it lands."""
    step = max(1, len(scores) // (4 * count))
    sample = scores[::step]
    rank = min(len(sample) - 1, (count + count // 4) // step)
    threshold = np.partition(sample, len(sample) - 1 - rank)[len(sample) - 1 - rank]
    if np.count_nonzero(scores >= threshold) < count:
        threshold = np.partition(scores, len(scores) - count)[len(scores) - count]
    return threshold
