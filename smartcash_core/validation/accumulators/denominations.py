"""Each image's denomination decision (true and predicted); its result is ``metrics.classification`` and the
``true_denomination`` / ``predicted_denomination`` columns of the per-image rows."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from smartcash_core.classes import ClassTable
from smartcash_core.validation.accumulators.base import ArrayAccumulator, MergeRule, ResultDraft, StateArrays
from smartcash_core.validation.denomination import denomination_metrics, image_denominations, whole_class_ids
from smartcash_core.validation.detections import ProcessedBatch

NONE_ID = -1  # "no denomination" in the state arrays (mapped ids are >= 0)


class DenominationAccumulator(ArrayAccumulator):
    name = "denominations"

    def __init__(self, class_table: ClassTable) -> None:
        self.class_table = class_table
        self.whole = whole_class_ids(class_table)
        self.fine_to_mapped = class_table.map_array()
        self.order: list[int] = []
        self.true: list[int] = []
        self.predicted: list[int] = []

    def update(self, batch: ProcessedBatch) -> None:
        for image in batch.images:
            true_id, predicted_id = image_denominations(image, self.whole, self.fine_to_mapped)
            self.order.append(image.order)
            self.true.append(NONE_ID if true_id is None else true_id)
            self.predicted.append(NONE_ID if predicted_id is None else predicted_id)

    def state(self) -> StateArrays:
        return {
            "order": np.asarray(self.order, dtype=np.int64),
            "true": np.asarray(self.true, dtype=np.int64),
            "predicted": np.asarray(self.predicted, dtype=np.int64),
        }

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        self.order, self.true, self.predicted = (
            [int(value) for value in np.asarray(state[key])] for key in ("order", "true", "predicted")
        )

    def merge_rules(self) -> Mapping[str, MergeRule]:
        concatenated = MergeRule.CONCAT
        return {"order": MergeRule.IMAGE_ID, "true": concatenated, "predicted": concatenated}

    def result(self, into: ResultDraft) -> None:
        rows = []
        for order, true_id, predicted_id in sorted(zip(self.order, self.true, self.predicted, strict=True)):
            row = {
                "true_denomination": None if true_id == NONE_ID else true_id,
                "predicted_denomination": None if predicted_id == NONE_ID else predicted_id,
            }
            into.image_columns.setdefault(order, {}).update(row)
            rows.append(row)
        into.metrics["classification"] = denomination_metrics(rows, self.class_table)
