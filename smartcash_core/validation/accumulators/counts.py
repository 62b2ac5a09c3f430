"""Ground-truth instances and images of each class (fine and mapped): the ``Instances`` and ``Images``
columns of the metric tables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from smartcash_core.classes import ClassTable
from smartcash_core.validation.accumulators.base import ArrayAccumulator, MergeRule, ResultDraft, StateArrays
from smartcash_core.validation.detections import ProcessedBatch

COUNT_KEYS = ("fine_instances", "fine_images", "mapped_instances", "mapped_images")


@dataclass
class ClassCounts:
    """Ground-truth instances and images containing each class, fine ``[nc]`` and mapped ``[nm]`` (int64)."""

    fine_to_mapped: np.ndarray
    fine_instances: np.ndarray
    fine_images: np.ndarray
    mapped_instances: np.ndarray
    mapped_images: np.ndarray

    @classmethod
    def empty(cls, class_table: ClassTable) -> ClassCounts:
        fine, mapped = np.zeros(class_table.num_fine, np.int64), np.zeros(class_table.num_mapped, np.int64)
        return cls(class_table.map_array(), fine, fine.copy(), mapped, mapped.copy())

    def add(self, gt_classes: np.ndarray) -> None:
        """Count one image's ground-truth classes ``[M]``."""
        mapped = self.fine_to_mapped[gt_classes]
        self.fine_instances += np.bincount(gt_classes, minlength=len(self.fine_instances))
        self.mapped_instances += np.bincount(mapped, minlength=len(self.mapped_instances))
        self.fine_images[np.unique(gt_classes)] += 1
        self.mapped_images[np.unique(mapped)] += 1


class ClassCountsAccumulator(ArrayAccumulator):
    """Counts every image's ground truth; its result is ``into.class_counts`` for the metric tables."""

    name = "class_counts"

    def __init__(self, class_table: ClassTable) -> None:
        self.counts = ClassCounts.empty(class_table)

    def update(self, batch: ProcessedBatch) -> None:
        for image in batch.images:
            self.counts.add(image.gt_classes.numpy())

    def state(self) -> StateArrays:
        return {key: getattr(self.counts, key).copy() for key in COUNT_KEYS}

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        for key in COUNT_KEYS:
            getattr(self.counts, key)[:] = state[key]

    def merge_rules(self) -> Mapping[str, MergeRule]:
        return dict.fromkeys(COUNT_KEYS, MergeRule.SUM)

    def result(self, into: ResultDraft) -> None:
        into.class_counts = self.counts
