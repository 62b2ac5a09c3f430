"""YOLOv5's validation loss (box, obj, cls) over the batches, timed as its own ``loss`` stage, with the
checkpoint's own loss gains when it records them (``metrics.loss.gains`` says which; see ``loss_gains``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import torch

from smartcash_core.errors import SmartCashError
from smartcash_core.validation.accumulators.base import ArrayAccumulator, MergeRule, ResultDraft, StateArrays
from smartcash_core.validation.detections import ProcessedBatch
from smartcash_core.validation.loss import ValidationLoss, letterboxed_targets
from smartcash_core.validation.loss_gains import loss_gains

if TYPE_CHECKING:
    from smartcash_core.checkpoint import LoadedModel


class LossAccumulator(ArrayAccumulator):
    """Adds each batch's loss parts from the head's raw outputs; its result is ``metrics.loss``."""

    name = "loss"
    stage = "loss"

    def __init__(self, model: LoadedModel) -> None:
        self.gains, self.warning = loss_gains(model)
        self.loss = ValidationLoss.for_model(model.model, self.gains.hyp)

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
        into.metrics["loss"] = {**self.loss.summary(), "gains": self.gains.to_dict()}
        if self.warning is not None:
            into.warnings.append(self.warning)
