"""One row per validated image: where it is (dataset index, processing order, file), its match counts at
the decision confidence, and the columns other accumulators add (denominations)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from smartcash_core.errors import SmartCashError
from smartcash_core.validation.accumulators.base import ArrayAccumulator, MergeRule, ResultDraft, StateArrays
from smartcash_core.validation.detections import ProcessedBatch
from smartcash_core.validation.summary import with_match_counts


class PerImageAccumulator(ArrayAccumulator):
    """Its result is ``per_image``, in processing order; it reads ``into.evaluator`` (the match counts) and
    ``into.image_columns``, so it comes after the accumulators that fill them."""

    name = "per_image"

    def __init__(self) -> None:
        self.index: list[int] = []
        self.order: list[int] = []
        self.file: list[str] = []

    def update(self, batch: ProcessedBatch) -> None:
        for image in batch.images:
            self.index.append(image.index)
            self.order.append(image.order)
            self.file.append(image.file)

    def state(self) -> StateArrays:
        return {
            "index": np.asarray(self.index, dtype=np.int64),
            "order": np.asarray(self.order, dtype=np.int64),
            "file": np.asarray(self.file, dtype=object),  # object: names keep every character (no NUL trim)
        }

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        self.index = [int(value) for value in np.asarray(state["index"])]
        self.order = [int(value) for value in np.asarray(state["order"])]
        self.file = [str(value) for value in np.asarray(state["file"])]

    def merge_rules(self) -> Mapping[str, MergeRule]:
        return {"index": MergeRule.CONCAT, "order": MergeRule.IMAGE_ID, "file": MergeRule.CONCAT}

    def result(self, into: ResultDraft) -> None:
        if into.evaluator is None:
            raise SmartCashError("per-image rows need the evaluator's match counts: list it before them")
        identities: list[dict[str, Any]] = [
            {"index": index, "order": order, "file": file}
            for order, index, file in sorted(zip(self.order, self.index, self.file, strict=True))
        ]
        rows = with_match_counts(identities, into.evaluator)
        into.per_image = [{**row, **into.image_columns.get(row["order"], {})} for row in rows]
