"""The metric state (``DetectionEvaluator``: matching per IoU threshold, ``yolo`` or ``coco`` protocol) and
the mAP tables computed from it."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from smartcash_core.classes import ClassTable
from smartcash_core.errors import SmartCashError
from smartcash_core.metrics import DetectionEvaluator
from smartcash_core.validation.accumulators.base import ArrayAccumulator, MergeRule, ResultDraft, StateArrays
from smartcash_core.validation.detections import ProcessedBatch
from smartcash_core.validation.summary import summarize_metrics


class EvaluatorAccumulator(ArrayAccumulator):
    """Matches every image's detections against its ground truth; its result is the headline metrics
    (mapped view), ``metrics.fine``, and ``into.evaluator`` for the per-image counts and plots."""

    name = "evaluator"

    def __init__(self, class_table: ClassTable, protocol: str) -> None:
        self.evaluator = DetectionEvaluator(
            num_classes=class_table.num_fine, protocol=protocol, class_table=class_table
        )

    def update(self, batch: ProcessedBatch) -> None:
        images = batch.images
        self.evaluator.update_batch(
            [image.boxes for image in images],
            [image.scores for image in images],
            [image.classes for image in images],
            [image.gt_boxes for image in images],
            [image.gt_classes for image in images],
            image_ids=batch.image_ids,
        )

    def state(self) -> StateArrays:
        return self.evaluator.state_arrays()

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        like = self.evaluator
        self.evaluator = DetectionEvaluator.from_state_arrays(
            state, like.num_classes, like.protocol, like.class_table
        )

    def merge_rules(self) -> Mapping[str, MergeRule]:
        return self.evaluator.merge_rules()

    def result(self, into: ResultDraft) -> None:
        if into.class_counts is None:
            raise SmartCashError("the metric tables need the class counts: list them before the evaluator")
        computed = self.evaluator.compute()
        into.metrics.update(summarize_metrics(computed, into.class_table, into.protocol, into.class_counts))
        into.evaluator = self.evaluator
