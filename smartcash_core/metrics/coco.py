"""The ``coco`` protocol: pycocotools ``COCOeval`` (bbox) as a protocol object.

Matching lives in ``coco_match`` (``evaluateImg``), accumulation and the summary in ``coco_accumulate``
(``accumulate`` / ``summarize``). The state keeps per prediction its area-range bits, its rank in its
(image, class) and whether it matched anywhere; the packed outcomes (matched / true positive at 10
thresholds x 4 area ranges) only for the predictions that matched somewhere (sparse, ``Rows.MATCHED``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from smartcash_core.metrics.coco_accumulate import CocoDetections, coco_metrics
from smartcash_core.metrics.coco_match import area_bits, coco_match
from smartcash_core.metrics.confusion import confident_rows
from smartcash_core.metrics.grid import Overlaps
from smartcash_core.metrics.inputs import FlatBatch
from smartcash_core.metrics.matching import COCO_AREA_RANGES, COCO_IOU_THRESHOLDS, COCO_MAX_DETS
from smartcash_core.metrics.protocol import DetectionProtocol
from smartcash_core.metrics.result import ViewMetrics
from smartcash_core.metrics.state import MergeRule, Rows, StateArrays, StateKey

OUTCOME_SHAPE = (COCO_IOU_THRESHOLDS.size, COCO_AREA_RANGES.shape[0])  # thresholds x area ranges
_OUTCOMES = OUTCOME_SHAPE[0] * OUTCOME_SHAPE[1]  # bits per prediction, packed into bytes
_SPARSE = ("matched_bits", "tp_bits")


class CocoProtocol(DetectionProtocol):
    """pycocotools ``COCOeval``: state about 15 bytes per prediction plus 10 per matched prediction.

    Matching is per (image, class) on float64 IoU, so the IoU grids only serve the confusion matrix: they
    cover the confident predictions alone.
    """

    name = "coco"

    def _own_keys(self) -> tuple[StateKey, ...]:
        concat, preds = MergeRule.CONCAT, Rows.PREDICTIONS
        return (
            StateKey("pred_area_bits", concat, preds, np.uint8),  # bit a: inside area range a
            StateKey("gt_area_bits", concat, Rows.GROUND_TRUTH, np.uint8),
            *(  # rank in its image and class (capped at 100) and whether it matched anywhere
                StateKey(f"{view}_{name}", concat, preds, dtype)
                for view in self.views
                for name, dtype in (("rank", np.uint8), ("has_outcome", np.bool_))
            ),
            *(  # the packed outcomes [S, 5] of those S predictions, in state order
                StateKey(f"{view}_{name}", concat, Rows.MATCHED, np.uint8, (_OUTCOMES // 8,))
                for view in self.views
                for name in _SPARSE
            ),
        )

    def _overlap_rows(self, batch: FlatBatch) -> np.ndarray:
        return confident_rows(batch.pred_scores)  # the confusion matrix needs only these

    def _match(self, batch: FlatBatch, overlap: Overlaps) -> StateArrays:
        state = {"pred_area_bits": area_bits(batch.pred_boxes), "gt_area_bits": area_bits(batch.gt_boxes)}
        for view in self.views:
            match = coco_match(self.view_batch(batch, view), self.view_num_classes(view))
            has_outcome = np.zeros(match.rank.shape[0], dtype=bool)
            has_outcome[match.rows] = True
            state[f"{view}_rank"] = np.minimum(match.rank, COCO_MAX_DETS[-1]).astype(np.uint8)
            state[f"{view}_has_outcome"] = has_outcome
            state[f"{view}_matched_bits"] = np.packbits(match.matched, axis=1)
            state[f"{view}_tp_bits"] = np.packbits(match.tp, axis=1)
        return state

    def _reorder_matched(self, state: StateArrays, order: np.ndarray) -> None:
        for view in self.views:
            has_outcome = state[f"{view}_has_outcome"]
            sparse_row = np.cumsum(has_outcome) - 1
            moved = sparse_row[order][has_outcome[order]]
            for name in _SPARSE:
                state[f"{view}_{name}"] = state[f"{view}_{name}"][moved]

    def _view_metrics(
        self, view: str, state: StateArrays, pred_classes: np.ndarray, gt_classes: np.ndarray
    ) -> ViewMetrics:
        matched, tp = (self._unpack(state[f"{view}_{name}"]) for name in _SPARSE)
        detections = CocoDetections(
            scores=state["pred_score"],
            classes=pred_classes,
            rank=state[f"{view}_rank"],
            area_bits=state["pred_area_bits"],
            matched_rows=np.flatnonzero(state[f"{view}_has_outcome"]),
            matched=matched,
            tp=tp,
        )
        metrics = coco_metrics(detections, gt_classes, state["gt_area_bits"], self.view_num_classes(view))
        stats = metrics.stats()
        classes = np.unique(gt_classes)
        ap = metrics.per_class_ap()[classes] if classes.size else np.zeros((0, COCO_IOU_THRESHOLDS.size))
        return ViewMetrics(
            classes=classes,
            ap=ap,
            precision=None,
            recall=None,
            f1=None,
            map50=max(float(stats[1]), 0.0),
            map50_95=max(float(stats[0]), 0.0),
            coco_stats=stats,
        )

    @staticmethod
    def _unpack(packed: np.ndarray) -> np.ndarray:
        """Packed outcomes [S, 5] uint8 -> [S, thresholds, area ranges] bool."""
        return np.unpackbits(packed, axis=1, count=_OUTCOMES).astype(bool).reshape(-1, *OUTCOME_SHAPE)

    def true_positives(self, state: Mapping[str, np.ndarray], view: str, iou_index: int) -> np.ndarray:
        has_outcome = np.asarray(state[f"{view}_has_outcome"], dtype=bool)
        bits = np.unpackbits(np.asarray(state[f"{view}_tp_bits"]), axis=1, count=_OUTCOMES)
        hit = np.zeros(has_outcome.size, dtype=bool)
        hit[has_outcome] = bits.reshape(-1, *OUTCOME_SHAPE)[:, iou_index, 0] == 1
        return hit
