"""What a metrics protocol is: the object that owns a protocol's state keys, per-batch matching and compute.

``DetectionEvaluator`` holds one protocol object (``yolo.YoloProtocol`` or ``coco.CocoProtocol``) and only
stores, checks and merges what it returns. A protocol is configured once (number of classes, optional class
table) and then works on whole values: a checked :class:`~smartcash_core.metrics.inputs.FlatBatch` in, a dict
of state arrays out (``batch_state``); the accumulated state in, a ``MetricsResult`` out (``compute``).

Shared here, so each protocol only writes what differs: the per-prediction and per-ground-truth keys every
protocol keeps (image id, score, class), the views (fine; mapped when there is a class table: classes of
predictions and ground truth mapped, then matched again), putting merged shards back in image order, and the
confusion matrix (class-agnostic, the same for both protocols).

Adding a protocol: subclass :class:`DetectionProtocol`, declare its keys in ``_own_keys`` (each with its
merge rule), implement the four hooks, and list the class in ``evaluator.PROTOCOL_TYPES``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import replace
from typing import ClassVar

import numpy as np

from smartcash_core.classes import ClassTable
from smartcash_core.metrics.confusion import confusion_from_overlaps, map_confusion
from smartcash_core.metrics.grid import Overlaps, overlaps
from smartcash_core.metrics.inputs import FlatBatch
from smartcash_core.metrics.matching import YOLO_IOU_THRESHOLDS
from smartcash_core.metrics.result import MetricsResult, ViewMetrics, with_mapped
from smartcash_core.metrics.state import (
    MergeRule,
    Rows,
    StateArrays,
    StateKey,
    compact_ids,
    compact_scores,
)

CONFUSION_KEY = "confusion"  # [K + 1, K + 1] int64 counts: not per row, summed across ranks
NUM_IOU_THRESHOLDS = YOLO_IOU_THRESHOLDS.size  # both protocols: 0.50, 0.55, ..., 0.95
COMMON_KEYS = (
    StateKey("image_ids", MergeRule.IMAGE_ID, Rows.IMAGES, np.int64),
    StateKey("pred_image", MergeRule.IMAGE_ID, Rows.PREDICTIONS, np.int32),
    StateKey("pred_score", MergeRule.CONCAT, Rows.PREDICTIONS, np.float32),
    StateKey("pred_class", MergeRule.CONCAT, Rows.PREDICTIONS, np.int32),
    StateKey("gt_image", MergeRule.IMAGE_ID, Rows.GROUND_TRUTH, np.int32),
    StateKey("gt_class", MergeRule.CONCAT, Rows.GROUND_TRUTH, np.int32),
)


class DetectionProtocol(ABC):
    """One metrics protocol, configured for ``num_classes`` fine classes and an optional class table.

    ``state_keys``: every per-row state array, in state order, with its merge rule; ``merge_rules()`` adds
    the summed confusion matrix. ``views``: ``("fine",)`` or ``("fine", "mapped")``.
    """

    name: ClassVar[str]

    def __init__(self, num_classes: int, class_table: ClassTable | None = None) -> None:
        self.num_classes = num_classes
        self.class_table = class_table
        self.views: tuple[str, ...] = ("fine", "mapped") if class_table is not None else ("fine",)
        self._fine_to_mapped = class_table.map_array() if class_table is not None else None
        self.state_keys: tuple[StateKey, ...] = (*COMMON_KEYS, *self._own_keys())

    # ------------------------------------------------------------------ hooks
    @abstractmethod
    def _own_keys(self) -> tuple[StateKey, ...]:
        """The protocol's keys (after ``COMMON_KEYS``), for every view in ``self.views``."""

    @abstractmethod
    def _overlap_rows(self, batch: FlatBatch) -> np.ndarray:
        """Rows of ``batch`` whose IoU grids the protocol needs (at least every confident prediction, which
        the confusion matrix reads from the same grids)."""

    @abstractmethod
    def _match(self, batch: FlatBatch, overlap: Overlaps) -> StateArrays:
        """The protocol's own keys for one checked batch (every view)."""

    @abstractmethod
    def _view_metrics(
        self, view: str, state: StateArrays, pred_classes: np.ndarray, gt_classes: np.ndarray
    ) -> ViewMetrics:
        """Metrics of one view from the image-ordered state; classes already mapped to the view."""

    @abstractmethod
    def true_positives(self, state: Mapping[str, np.ndarray], view: str, iou_index: int) -> np.ndarray:
        """Per prediction, in state order: matched a ground truth at IoU threshold ``iou_index`` [N] bool
        (``coco``: area range "all"). ``state`` as ``DetectionEvaluator.state_arrays()`` returns it."""

    def _reorder_matched(self, state: StateArrays, order: np.ndarray) -> None:  # noqa: B027 (optional hook)
        """Put ``Rows.MATCHED`` keys in the order their predictions take under ``order`` (none by default)."""

    def upgrade_state(self, arrays: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        """State arrays of an older layout in today's layout (unchanged by default)."""
        return arrays

    # ------------------------------------------------------------------ state
    def merge_rules(self) -> dict[str, MergeRule]:
        """How every key of ``state_arrays()`` merges across ranks (``state.merge_state_arrays``)."""
        return {**{key.name: key.rule for key in self.state_keys}, CONFUSION_KEY: MergeRule.SUM}

    def empty_confusion(self) -> np.ndarray:
        return np.zeros((self.num_classes + 1, self.num_classes + 1), dtype=np.int64)

    def batch_state(self, batch: FlatBatch) -> tuple[StateArrays, np.ndarray]:
        """The state arrays of one checked batch and its confusion matrix.

        The float32 IoU of the predictions with the ground truth of their images is computed once
        (``grid.overlaps``) and shared by the matching of every view and the confusion matrix.
        """
        state: StateArrays = {
            "image_ids": batch.image_ids,
            "pred_image": compact_ids(batch.image_ids[batch.pred_image]),
            "pred_score": compact_scores(batch.pred_scores),
            "pred_class": batch.pred_classes.astype(np.int32),
            "gt_image": compact_ids(batch.image_ids[batch.gt_image]),
            "gt_class": batch.gt_classes.astype(np.int32),
        }
        overlap = overlaps(batch, self._overlap_rows(batch))
        state.update(self._match(batch, overlap))
        return state, confusion_from_overlaps(overlap, batch, self.num_classes)

    def image_ordered(self, state: StateArrays) -> StateArrays:
        """``state`` with predictions (and ground truth) sorted by image id, stable inside an image.

        States of one process are in image order already; merged shards may not be (any merge order).
        """
        for rows, image_key in ((Rows.PREDICTIONS, "pred_image"), (Rows.GROUND_TRUTH, "gt_image")):
            image = state[image_key]
            if not (image.size and np.any(image[1:] < image[:-1])):
                continue
            order = np.argsort(image, kind="stable")
            if rows is Rows.PREDICTIONS:
                self._reorder_matched(state, order)
            for key in self.state_keys:
                if key.rows is rows:
                    state[key.name] = state[key.name][order]
        return state

    # ------------------------------------------------------------------ views
    def check_view(self, view: str) -> None:
        if view not in self.views:
            raise ValueError(f"view must be one of {self.views}, got {view!r}")

    def view_classes(self, view: str, classes: np.ndarray) -> np.ndarray:
        """Fine class ids as the view sees them (mapped through the class table for ``mapped``)."""
        return classes if view == "fine" or self._fine_to_mapped is None else self._fine_to_mapped[classes]

    def view_num_classes(self, view: str) -> int:
        return self.num_classes if view == "fine" or self.class_table is None else self.class_table.num_mapped

    def view_batch(self, batch: FlatBatch, view: str) -> FlatBatch:
        """``batch`` with the view's classes (the same arrays otherwise)."""
        if view == "fine" or self._fine_to_mapped is None:
            return batch
        return replace(
            batch,
            pred_classes=self._fine_to_mapped[batch.pred_classes],
            gt_classes=self._fine_to_mapped[batch.gt_classes],
        )

    def _class_names(self, view: str) -> tuple[str, ...]:
        if self.class_table is None:
            return tuple(str(c) for c in range(self.num_classes))
        return self.class_table.fine_names if view == "fine" else self.class_table.mapped_names

    # ---------------------------------------------------------------- compute
    def compute(self, state: StateArrays, confusion: np.ndarray) -> MetricsResult:
        """The fine view of an image-ordered state (``image_ordered``), with ``.mapped`` when there is a
        class table."""
        fine = self._compute_view("fine", state, confusion)
        if self.class_table is None or self._fine_to_mapped is None:
            return fine
        mapped_confusion = map_confusion(confusion, self._fine_to_mapped, self.class_table.num_mapped)
        return with_mapped(fine, self._compute_view("mapped", state, mapped_confusion))

    def _compute_view(self, view: str, state: StateArrays, confusion: np.ndarray) -> MetricsResult:
        # int32 class ids in the state: no full-length int64 copies for the fine view
        pred_classes = self.view_classes(view, state["pred_class"])
        gt_classes = self.view_classes(view, state["gt_class"])
        return MetricsResult(
            protocol=self.name,
            view=view,
            class_names=self._class_names(view),
            confusion=confusion,
            num_images=int(state["image_ids"].size),
            num_predictions=int(pred_classes.size),
            num_ground_truth=int(gt_classes.size),
            **self._view_metrics(view, state, pred_classes, gt_classes),
        )
