"""Box conversions, IoU and rescaling with YOLOv5 7.0 numerics.

Boxes are float tensors ``[N, 4]``: ``xyxy`` is (x1, y1, x2, y2), ``xywh`` is (center x, center y, w, h).
Every function accepts empty inputs (``[0, 4]``) and returns new tensors; nothing is modified in place.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

YOLO_IOU_EPS = 1e-7  # YOLOv5 adds this to the union; its threshold decisions follow it


def xywh2xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """``[N, 4]`` center/size boxes -> ``[N, 4]`` corner boxes (same dtype and device)."""
    half_wh = boxes[..., 2:4] / 2
    return torch.cat((boxes[..., 0:2] - half_wh, boxes[..., 0:2] + half_wh), dim=-1)


def xyxy2xywh(boxes: torch.Tensor) -> torch.Tensor:
    """``[N, 4]`` corner boxes -> ``[N, 4]`` center/size boxes."""
    center = (boxes[..., 0:2] + boxes[..., 2:4]) / 2
    return torch.cat((center, boxes[..., 2:4] - boxes[..., 0:2]), dim=-1)


def xywhn2xyxy(boxes: torch.Tensor, width: float, height: float) -> torch.Tensor:
    """``[N, 4]`` normalized center/size boxes (YOLO labels) -> ``[N, 4]`` corner boxes in pixels."""
    scale = torch.tensor((width, height, width, height), dtype=boxes.dtype, device=boxes.device)
    return xywh2xyxy(boxes * scale)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """``[N, 4]`` xyxy -> ``[N]`` areas (negative extents count as zero)."""
    return (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = YOLO_IOU_EPS) -> torch.Tensor:
    """Pairwise IoU ``[N, M]`` of xyxy boxes ``[N, 4]`` and ``[M, 4]``, computed as YOLOv5 7.0 does.

    ``inter / (area1 + area2 - inter + eps)`` in the inputs' dtype (float32 in val.py), so thresholds at
    0.50:0.95 fall exactly where YOLOv5's do.
    """
    top_left1, bottom_right1 = boxes1.unsqueeze(1).chunk(2, dim=2)
    top_left2, bottom_right2 = boxes2.unsqueeze(0).chunk(2, dim=2)
    inter = (torch.min(bottom_right1, bottom_right2) - torch.max(top_left1, top_left2)).clamp(0).prod(2)
    area1 = (bottom_right1 - top_left1).prod(2)
    area2 = (bottom_right2 - top_left2).prod(2)
    return inter / (area1 + area2 - inter + eps)


def clip_boxes(boxes: torch.Tensor, height: float, width: float) -> torch.Tensor:
    """``[N, 4]`` xyxy boxes clamped to an image of ``height`` x ``width`` pixels."""
    x = boxes[..., 0::2].clamp(0, width)
    y = boxes[..., 1::2].clamp(0, height)
    return torch.stack((x[..., 0], y[..., 0], x[..., 1], y[..., 1]), dim=-1)


def scale_boxes_to_original(
    boxes: torch.Tensor,
    gain: float,
    pad: Sequence[float],
    original_hw: Sequence[int],
) -> torch.Tensor:
    """Map ``[N, 4]`` xyxy boxes from network-input pixels back to the original image, then clip.

    ``gain`` is input pixels per original pixel (resize ratio), ``pad`` the (left, top) letterbox
    padding in input pixels, as YOLOv5's ``scale_boxes`` with ``ratio_pad``: subtract pad, divide by gain.
    """
    offset = torch.tensor((pad[0], pad[1], pad[0], pad[1]), dtype=boxes.dtype, device=boxes.device)
    restored = (boxes[:, :4] - offset) / gain
    return clip_boxes(restored, original_hw[0], original_hw[1])
