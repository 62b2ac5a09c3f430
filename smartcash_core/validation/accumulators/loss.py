"""YOLOv5's validation loss (box, obj, cls) over the batches, timed as its own ``loss`` stage."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from smartcash_core.errors import SmartCashError
from smartcash_core.validation.accumulators.base import ArrayAccumulator, MergeRule, ResultDraft, StateArrays
from smartcash_core.validation.detections import ProcessedBatch
from smartcash_core.validation.loss import ValidationLoss, letterboxed_targets


class LossAccumulator(ArrayAccumulator):
    """Adds each batch's loss parts from the head's raw outputs; its result is ``metrics.loss``."""

    name = "loss"
    stage = "loss"

    def __init__(self, network: nn.Module, imgsz: int) -> None:
        self.loss = ValidationLoss.for_model(network, imgsz)

    def update(self, batch: ProcessedBatch) -> None:
        if batch.head_levels is None:
            raise SmartCashError("the validation loss needs the network's per-level outputs; it gave none")
        with torch.inference_mode():
            targets = letterboxed_targets(batch.metas, batch.labels, batch.input_hw)
            self.loss.update(batch.head_levels, targets)

    def state(self) -> StateArrays:
        return {"sums": self.loss.sums.copy(), "batches": np.asarray([self.loss.batches], dtype=np.int64)}

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        self.loss.sums = np.asarray(state["sums"], dtype=np.float64).copy()
        self.loss.batches = int(np.asarray(state["batches"]).sum())

    def merge_rules(self) -> Mapping[str, MergeRule]:
        return {"sums": MergeRule.SUM, "batches": MergeRule.SUM}

    def result(self, into: ResultDraft) -> None:
        into.metrics["loss"] = self.loss.summary()
