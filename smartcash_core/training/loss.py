"""YOLOv5 7.0 detection loss: CIoU box loss, objectness BCE, class BCE, YOLOv5's target assignment.

Semantics follow YOLOv5 7.0 ``utils/loss.py`` (``ComputeLoss``) with the ``hyp.scratch-low`` gains:
- A target is assigned to every anchor whose width and height ratios to the target stay below
  ``anchor_t`` (4.0), in its own cell and in the two neighbour cells whose centre is nearer than half a
  cell (offset 0.5), so each target gets up to 3 cells x 3 anchors per level.
- Box loss: ``1 - CIoU`` between the decoded prediction (``xy = 2*sigmoid - 0.5``,
  ``wh = (2*sigmoid)^2 * anchor``, in grid units) and the target, averaged over assignments.
- Objectness: BCE against the detached CIoU clamped at 0 for assigned cells, 0 elsewhere, weighted per
  level by ``balance`` (P3 4.0, P4 1.0, P5 0.4).
- Classes: one-hot BCE over all classes (targets ``1 - eps/2`` and ``eps/2`` with ``label_smoothing`` eps).
- ``cls_pw``/``obj_pw`` weight positives in the BCEs; ``fl_gamma > 0`` wraps both in YOLOv5's focal loss
  (alpha 0.25). The scratch-low defaults (1, 1, 0, 0) reduce to the plain BCEs.
- The total is ``(box + obj + cls) * batch_size``, which is what YOLOv5 backpropagates.

Used by the demo trainer and reusable for an optional validation loss (feed it the raw head outputs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn
from torch.nn import functional

from smartcash_core.errors import SmartCashError

_CIOU_EPS = 1e-7
# Neighbour cell offsets (own cell, left, up, right, down) in YOLOv5's order, in units of half a cell.
_CELL_OFFSETS = torch.tensor([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]], dtype=torch.float32)
_NEIGHBOUR_MARGIN = 0.5
_FOCAL_ALPHA = 0.25  # YOLOv5's FocalLoss default


class LossInputError(SmartCashError, ValueError):
    """Predictions, targets or anchors handed to the loss have inconsistent shapes."""


@dataclass(frozen=True)
class LossHyp:
    """Loss gains and assignment threshold (YOLOv5 ``hyp.scratch-low`` values before scaling)."""

    box: float = 0.05
    obj: float = 1.0
    cls: float = 0.5
    anchor_t: float = 4.0
    balance: tuple[float, ...] = (4.0, 1.0, 0.4)
    cls_pw: float = 1.0
    obj_pw: float = 1.0
    fl_gamma: float = 0.0
    label_smoothing: float = 0.0

    def scaled(self, num_levels: int, num_classes: int, imgsz: int) -> LossHyp:
        """Scale the gains like YOLOv5's ``train.py`` does for the level count, class count and image size."""
        level_factor = 3.0 / num_levels
        return replace(
            self,
            box=self.box * level_factor,
            cls=self.cls * num_classes / 80.0 * level_factor,
            obj=self.obj * (imgsz / 640.0) ** 2 * level_factor,
        )


@dataclass(frozen=True)
class LevelTargets:
    """Targets assigned to one detection level; ``n`` assignments, every tensor has ``n`` rows.

    ``box`` is ``[n, 4]``: the target centre relative to the assigned cell's corner (in ``[-0.5, 1.5]``)
    and its width and height, all in grid units. ``anchor_wh`` is ``[n, 2]`` in grid units.
    """

    image: Tensor
    anchor: Tensor
    grid_y: Tensor
    grid_x: Tensor
    box: Tensor
    anchor_wh: Tensor
    cls: Tensor

    def __len__(self) -> int:
        return int(self.image.shape[0])


def ciou(pred: Tensor, target: Tensor, eps: float = _CIOU_EPS) -> Tensor:
    """Complete IoU of paired ``[n, 4]`` xywh boxes -> ``[n]`` (YOLOv5's ``bbox_iou(..., CIoU=True)``)."""
    pred_lo, pred_hi = pred[:, :2] - pred[:, 2:] / 2, pred[:, :2] + pred[:, 2:] / 2
    tgt_lo, tgt_hi = target[:, :2] - target[:, 2:] / 2, target[:, :2] + target[:, 2:] / 2
    overlap = (torch.minimum(pred_hi, tgt_hi) - torch.maximum(pred_lo, tgt_lo)).clamp(0)
    inter = overlap[:, 0] * overlap[:, 1]
    union = pred[:, 2] * pred[:, 3] + target[:, 2] * target[:, 3] - inter + eps
    iou = inter / union
    enclosing = torch.maximum(pred_hi, tgt_hi) - torch.minimum(pred_lo, tgt_lo)
    diagonal_sq = enclosing.pow(2).sum(1) + eps
    centre_dist_sq = (target[:, :2] - pred[:, :2]).pow(2).sum(1)
    aspect_gap = torch.atan(target[:, 2] / target[:, 3]) - torch.atan(pred[:, 2] / pred[:, 3])
    aspect = (4 / math.pi**2) * aspect_gap.pow(2)
    with torch.no_grad():  # alpha is a weight, not a path for gradients (as in the CIoU paper and YOLOv5)
        alpha = aspect / (aspect - iou + (1 + eps))
    return iou - (centre_dist_sq / diagonal_sq + aspect * alpha)


def assign_targets(
    targets: Tensor, anchors: Tensor, grid_shapes: Sequence[tuple[int, int]], anchor_t: float = 4.0
) -> list[LevelTargets]:
    """YOLOv5's ``build_targets``: which cells and anchors of each level learn which target.

    ``targets`` is ``[nt, 6]`` rows of ``(image index, class, cx, cy, w, h)`` normalized to ``[0, 1]``;
    ``anchors`` is ``[levels, anchors_per_level, 2]`` in grid units (the Detect buffer);
    ``grid_shapes`` holds ``(ny, nx)`` per level.
    """
    _check_targets(targets)
    if anchors.ndim != 3 or anchors.shape[-1] != 2 or anchors.shape[0] != len(grid_shapes):
        raise LossInputError(
            f"anchors must be [levels={len(grid_shapes)}, anchors, 2], got {tuple(anchors.shape)}"
        )
    return [
        _assign_level(targets, anchors[level], grid_shape, anchor_t)
        for level, grid_shape in enumerate(grid_shapes)
    ]


def _assign_level(
    targets: Tensor, anchors: Tensor, grid_shape: tuple[int, int], anchor_t: float
) -> LevelTargets:
    """Assignments for one level; ``anchors`` is ``[na, 2]`` in this level's grid units."""
    ny, nx = grid_shape
    scale = targets.new_tensor([nx, ny, nx, ny])
    boxes = targets[:, 2:6] * scale  # [nt, 4] in grid units
    # Every (anchor, target) pair whose worst side ratio stays under anchor_t.
    ratio = boxes[None, :, 2:4] / anchors[:, None, :]  # [na, nt, 2]
    anchor_fits = torch.maximum(ratio, 1 / ratio).amax(2) < anchor_t  # [na, nt]
    anchor_idx, target_idx = anchor_fits.nonzero(as_tuple=True)
    centres = boxes[target_idx, :2]
    # Also use the neighbour cells nearest to the centre; YOLOv5 skips cells left of / above x,y <= 1.
    from_far_edge = scale[:2] - centres
    near_low = ((centres % 1 < _NEIGHBOUR_MARGIN) & (centres > 1)).T  # [2, n]: left, up
    near_high = ((from_far_edge % 1 < _NEIGHBOUR_MARGIN) & (from_far_edge > 1)).T  # [2, n]: right, down
    own_cell = torch.ones_like(near_low[0])
    use_offset = torch.stack((own_cell, near_low[0], near_low[1], near_high[0], near_high[1]))  # [5, n]
    offset_idx, pair_idx = use_offset.nonzero(as_tuple=True)
    offsets = _CELL_OFFSETS.to(targets)[offset_idx] * _NEIGHBOUR_MARGIN
    kept_targets, kept_anchors = target_idx[pair_idx], anchor_idx[pair_idx]
    centres = centres[pair_idx]
    cell = (centres - offsets).long()
    cell[:, 0].clamp_(0, nx - 1)
    cell[:, 1].clamp_(0, ny - 1)
    return LevelTargets(
        image=targets[kept_targets, 0].long(),
        anchor=kept_anchors,
        grid_y=cell[:, 1],
        grid_x=cell[:, 0],
        box=torch.cat((centres - cell, boxes[kept_targets, 2:4]), 1),
        anchor_wh=anchors[kept_anchors],
        cls=targets[kept_targets, 1].long(),
    )


def _check_targets(targets: Tensor) -> None:
    if targets.ndim != 2 or targets.shape[1] != 6:
        raise LossInputError(
            f"targets must be [n, 6] rows of (image, class, cx, cy, w, h), got {tuple(targets.shape)}"
        )


class YoloLoss:
    """YOLOv5 7.0 ``ComputeLoss`` for raw head outputs ``[B, na, ny, nx, 5 + nc]`` per level.

    ``anchors`` is ``[levels, na, 2]`` in grid units; ``hyp`` should already be scaled
    (see ``LossHyp.scaled`` or ``YoloLoss.for_model``).
    """

    def __init__(self, anchors: Tensor, num_classes: int, hyp: LossHyp) -> None:
        if len(hyp.balance) != anchors.shape[0]:
            raise LossInputError(
                f"balance has {len(hyp.balance)} weights but the head has {anchors.shape[0]} levels"
            )
        self.anchors = anchors.detach().float()
        self.num_classes = num_classes
        self.hyp = hyp

    @classmethod
    def for_model(cls, model: nn.Module, imgsz: int, hyp: LossHyp | None = None) -> YoloLoss:
        """Read anchors and class count from the model's Detect layer (the last module) and scale gains."""
        detect = _detect_layer(model)
        base = hyp or LossHyp()
        return cls.with_scaled_gains(model, base.scaled(detect.anchors.shape[0], int(detect.nc), imgsz))

    @classmethod
    def with_scaled_gains(cls, model: nn.Module, hyp: LossHyp) -> YoloLoss:
        """The loss of the model's Detect layer with gains already scaled (as a checkpoint records them)."""
        detect = _detect_layer(model)
        return cls(detect.anchors.detach().float(), int(detect.nc), hyp)

    def __call__(self, predictions: Sequence[Tensor], targets: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(total, parts)``: total is the scalar to backpropagate (already times batch size),
        parts is the detached ``[3]`` tensor ``(box, obj, cls)`` per image, as YOLOv5 logs it."""
        self._check_predictions(predictions)
        anchors = self.anchors.to(predictions[0].device)
        grid_shapes = [(int(p.shape[2]), int(p.shape[3])) for p in predictions]
        assigned = assign_targets(targets.to(anchors), anchors, grid_shapes, self.hyp.anchor_t)
        zero = predictions[0].new_zeros(())
        box_loss, obj_loss, cls_loss = zero, zero, zero
        for level, (raw, level_targets) in enumerate(zip(predictions, assigned, strict=True)):
            level_box, objectness_target, level_cls = self._level_terms(raw, level_targets)
            box_loss = box_loss + level_box
            cls_loss = cls_loss + level_cls
            obj_bce = self._bce(raw[..., 4], objectness_target, self.hyp.obj_pw)
            obj_loss = obj_loss + obj_bce * self.hyp.balance[level]
        box_loss = box_loss * self.hyp.box
        obj_loss = obj_loss * self.hyp.obj
        cls_loss = cls_loss * self.hyp.cls
        batch_size = predictions[0].shape[0]
        parts = torch.stack((box_loss, obj_loss, cls_loss)).detach()
        return (box_loss + obj_loss + cls_loss) * batch_size, parts

    def _level_terms(self, raw: Tensor, targets: LevelTargets) -> tuple[Tensor, Tensor, Tensor]:
        """Box loss, objectness target ``[B, na, ny, nx]`` and class loss of one level."""
        objectness_target = torch.zeros_like(raw[..., 4])
        if len(targets) == 0:
            zero = raw.new_zeros(())
            return zero, objectness_target, zero
        picked = raw[targets.image, targets.anchor, targets.grid_y, targets.grid_x]  # [n, 5 + nc]
        pred_xy = picked[:, :2].sigmoid() * 2 - 0.5
        pred_wh = (picked[:, 2:4].sigmoid() * 2) ** 2 * targets.anchor_wh
        iou = ciou(torch.cat((pred_xy, pred_wh), 1), targets.box)
        box_loss = (1.0 - iou).mean()
        # Later assignments to the same cell overwrite earlier ones, as YOLOv5's index_put does.
        objectness_target[targets.image, targets.anchor, targets.grid_y, targets.grid_x] = (
            iou.detach().clamp(0).to(objectness_target.dtype)
        )
        cls_loss = raw.new_zeros(())
        if self.num_classes > 1:  # a single class is learnt through objectness alone
            smoothing = self.hyp.label_smoothing
            one_hot = torch.full_like(picked[:, 5:], 0.5 * smoothing)
            one_hot[torch.arange(len(targets), device=raw.device), targets.cls] = 1.0 - 0.5 * smoothing
            cls_loss = self._bce(picked[:, 5:], one_hot, self.hyp.cls_pw)
        return box_loss, objectness_target, cls_loss

    def _bce(self, logits: Tensor, target: Tensor, positive_weight: float) -> Tensor:
        """Mean BCE with logits; with ``fl_gamma > 0`` YOLOv5's ``FocalLoss`` (alpha 0.25) around it."""
        weight = None if positive_weight == 1.0 else logits.new_tensor([positive_weight])
        gamma = self.hyp.fl_gamma
        if gamma <= 0:
            return functional.binary_cross_entropy_with_logits(logits, target, pos_weight=weight)
        bce = functional.binary_cross_entropy_with_logits
        loss = bce(logits, target, pos_weight=weight, reduction="none")
        probability = logits.sigmoid()
        p_t = target * probability + (1 - target) * (1 - probability)
        alpha_factor = target * _FOCAL_ALPHA + (1 - target) * (1 - _FOCAL_ALPHA)
        return (loss * alpha_factor * (1.0 - p_t) ** gamma).mean()

    def _check_predictions(self, predictions: Sequence[Tensor]) -> None:
        expected_levels, anchors_per_level = self.anchors.shape[:2]
        if len(predictions) != expected_levels:
            raise LossInputError(f"expected {expected_levels} prediction levels, got {len(predictions)}")
        for level, raw in enumerate(predictions):
            if raw.ndim != 5 or raw.shape[1] != anchors_per_level or raw.shape[4] != 5 + self.num_classes:
                raise LossInputError(
                    f"level {level} prediction must be [B, {anchors_per_level}, ny, nx, "
                    f"{5 + self.num_classes}], got {tuple(raw.shape)}"
                )


def _detect_layer(model: nn.Module) -> nn.Module:
    """The YOLOv5 Detect module: the last entry of ``model.model`` (``model.24`` for v5 layouts)."""
    layers = getattr(model, "model", None)
    detect = layers[-1] if isinstance(layers, nn.Sequential | nn.ModuleList) else None
    if detect is None or not hasattr(detect, "anchors") or not hasattr(detect, "nc"):
        raise LossInputError("model has no YOLOv5 Detect layer with anchors at model.model[-1]")
    return detect
