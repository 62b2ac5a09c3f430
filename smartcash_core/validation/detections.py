"""NMS, then each image's detections in its original pixels beside its ground truth: the
:class:`ProcessedBatch` every accumulator receives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from smartcash_core.data.loader import ImageMeta, LoadedBatch
from smartcash_core.ops.boxes import scale_boxes_to_original, xywhn2xyxy
from smartcash_core.ops.nms import non_max_suppression
from smartcash_core.validation.params import ValidationParams
from smartcash_core.validation.source import PassPlan


def suppress(decoded: torch.Tensor, params: ValidationParams) -> list[torch.Tensor]:
    """Class-aware NMS of a batch: one ``[n, 6]`` tensor (x1, y1, x2, y2, score, class) per image, in input
    pixels, most confident first."""
    return non_max_suppression(
        decoded,
        params.conf_thres,
        params.iou_thres,
        multi_label=params.multi_label,
        max_det=params.max_det,
    )


@dataclass(frozen=True)
class ImageDetections:
    """One image after NMS, in its original pixels (CPU tensors).

    ``boxes [N, 4]`` xyxy, ``scores [N]``, ``classes [N]`` int64, most confident first; ``gt_boxes [M, 4]``
    xyxy and ``gt_classes [M]`` int64 from its labels. ``index``: position in the dataset; ``order``:
    position in the full pass's processing order (the metric state's image id); ``file``: its name.
    """

    index: int
    order: int
    file: str
    boxes: torch.Tensor
    scores: torch.Tensor
    classes: torch.Tensor
    gt_boxes: torch.Tensor
    gt_classes: torch.Tensor


@dataclass(frozen=True)
class ProcessedBatch:
    """What accumulators see of one batch.

    ``images``: one :class:`ImageDetections` per image of the batch, in batch order. ``metas``: where each
    image sits in the network input (gain, padding). ``labels``: YOLO labels ``[k, 5]`` by sample index.
    ``head_levels``: the network's raw per-level outputs (``None`` when it gives none). ``input_hw``: the
    batch input's ``(height, width)``.
    """

    images: tuple[ImageDetections, ...]
    metas: Sequence[ImageMeta]
    labels: Mapping[int, np.ndarray]
    head_levels: Sequence[torch.Tensor] | None
    input_hw: tuple[int, int]

    @property
    def image_ids(self) -> list[int]:
        """Processing-order ids of the batch's images: global, so shards merge like one pass."""
        return [image.order for image in self.images]


def image_detections(meta: ImageMeta, det: torch.Tensor, plan: PassPlan) -> ImageDetections:
    """One image's NMS output ``det [n, 6]`` (input pixels) in its original pixels, with its labels."""
    position = meta.ref.index
    height, width = meta.original_hw
    boxes = scale_boxes_to_original(det[:, :4], meta.gain, meta.pad, meta.original_hw).cpu()
    labels = torch.from_numpy(plan.labels[position])
    return ImageDetections(
        index=position,
        order=plan.order[position],
        file=plan.names[position],
        boxes=boxes,
        scores=det[:, 4].cpu(),
        classes=det[:, 5].cpu().long(),
        gt_boxes=xywhn2xyxy(labels[:, 1:5], width, height),
        gt_classes=labels[:, 0].long(),
    )


def processed_batch(
    batch: LoadedBatch,
    detections: Sequence[torch.Tensor],
    head_levels: Sequence[torch.Tensor] | None,
    input_hw: tuple[int, int],
    plan: PassPlan,
) -> ProcessedBatch:
    images = tuple(
        image_detections(meta, det, plan) for meta, det in zip(batch.metas, detections, strict=True)
    )
    return ProcessedBatch(images, batch.metas, plan.labels, head_levels, input_hw)
