"""An optional validation loss (YOLOv5's ``box``, ``obj``, ``cls``), as val.py reports it during training.

YOLOv5 adds ``ComputeLoss(train_out, targets)[1]`` (the per-image loss parts) for every batch and divides
by the number of batches. Targets are the labels in the letterboxed input, normalized by its size, which is
exactly where the pass's ``ImageMeta`` (gain and padding) puts each original image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from smartcash_core.data.letterbox import labels_to_letterbox
from smartcash_core.data.loader import ImageMeta
from smartcash_core.training.loss import LossHyp, YoloLoss

LOSS_PARTS = ("box", "obj", "cls")


def letterboxed_targets(
    metas: Sequence[ImageMeta], labels: Mapping[int, np.ndarray], input_hw: tuple[int, int]
) -> torch.Tensor:
    """Targets ``[n, 6]`` (batch image, class, cx, cy, w, h) normalized by the batch input ``(H, W)``.

    ``labels[meta.ref.index]`` is ``[k, 5]`` (class, cx, cy, w, h) normalized by the original image.
    """
    height, width = input_hw
    rows = []
    for slot, meta in enumerate(metas):
        image_labels = np.asarray(labels[meta.ref.index], dtype=np.float64).reshape(-1, 5)
        if not len(image_labels):
            continue
        original_wh = (meta.original_hw[1], meta.original_hw[0])
        placed = labels_to_letterbox(image_labels, original_wh, meta.gain, meta.pad, (width, height))
        rows.append(np.concatenate([np.full((len(placed), 1), float(slot)), placed], axis=1))
    if not rows:
        return torch.zeros((0, 6), dtype=torch.float32)
    return torch.from_numpy(np.concatenate(rows)).float()


@dataclass
class ValidationLoss:
    """Running sum of per-batch loss parts; mergeable across shards (sums and batch counts add)."""

    loss: YoloLoss | None = None
    sums: np.ndarray = field(default_factory=lambda: np.zeros(len(LOSS_PARTS), dtype=np.float64))
    batches: int = 0

    @classmethod
    def for_model(cls, model: nn.Module, hyp: LossHyp) -> ValidationLoss:
        """The loss of ``model``'s Detect head with ``hyp`` (gains already scaled; see ``loss_gains``)."""
        return cls(loss=YoloLoss.with_scaled_gains(model, hyp))

    def update(self, raw: Sequence[torch.Tensor], targets: torch.Tensor) -> None:
        """Add one batch: ``raw`` is the head's list of ``[B, na, ny, nx, 5 + nc]`` outputs."""
        if self.loss is None:
            raise ValueError("this ValidationLoss only holds merged sums; build one with for_model()")
        _, parts = self.loss([level.float() for level in raw], targets.to(raw[0].device))
        self.sums += parts.double().cpu().numpy()
        self.batches += 1

    def merge(self, other: ValidationLoss) -> None:
        self.sums += other.sums
        self.batches += other.batches

    def summary(self) -> dict[str, float]:
        """Mean loss parts per batch (YOLOv5's convention) and their sum as ``total``."""
        means = self.sums / max(self.batches, 1)
        parts = {name: float(value) for name, value in zip(LOSS_PARTS, means, strict=True)}
        return {**parts, "total": float(means.sum())}
