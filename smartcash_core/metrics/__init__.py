"""Detection metrics: exact YOLOv5 (``yolo``) and pycocotools (``coco``) protocols, fine and mapped views.

Public API: ``DetectionEvaluator`` (update / update_batch / merge / merged_from_states / compute /
state_arrays / from_state_arrays / merge_rules / true_positives_at / per_image_summary) and
``MetricsResult``. Each protocol is one object (``YoloProtocol`` in ``yolo``, ``CocoProtocol`` in ``coco``,
both ``protocol.DetectionProtocol``) owning its state keys, matching and compute; ``state`` declares how
state keys merge across ranks (``MergeRule``) and merges states (``merge_state_arrays``). Functional cores:
``yolo``, ``coco_match``, ``coco_accumulate``, ``confusion``, ``grid`` and ``matching``.
"""

from smartcash_core.metrics.coco import CocoProtocol
from smartcash_core.metrics.confusion import confusion_matrix, map_confusion
from smartcash_core.metrics.evaluator import PROTOCOL_TYPES, PROTOCOLS, DetectionEvaluator
from smartcash_core.metrics.matching import COCO_IOU_THRESHOLDS, YOLO_IOU_THRESHOLDS
from smartcash_core.metrics.protocol import DetectionProtocol
from smartcash_core.metrics.result import MetricsResult
from smartcash_core.metrics.state import MergeRule, StateKey, merge_state_arrays
from smartcash_core.metrics.yolo import YoloProtocol

__all__ = [
    "COCO_IOU_THRESHOLDS",
    "PROTOCOLS",
    "PROTOCOL_TYPES",
    "YOLO_IOU_THRESHOLDS",
    "CocoProtocol",
    "DetectionEvaluator",
    "DetectionProtocol",
    "MergeRule",
    "MetricsResult",
    "StateKey",
    "YoloProtocol",
    "confusion_matrix",
    "map_confusion",
    "merge_state_arrays",
]
