"""Detection metrics: exact YOLOv5 (``yolo``) and pycocotools (``coco``) protocols, fine and mapped views.

Public API: ``DetectionEvaluator`` (update / update_batch / merge / compute / state_arrays /
from_state_arrays / per_image_summary) and ``MetricsResult``; the functional cores live in ``yolo``,
``coco``, ``confusion`` and ``matching``.
"""

from smartcash_core.metrics.confusion import confusion_matrix, map_confusion
from smartcash_core.metrics.evaluator import PROTOCOLS, DetectionEvaluator, MetricsResult
from smartcash_core.metrics.matching import COCO_IOU_THRESHOLDS, YOLO_IOU_THRESHOLDS

__all__ = [
    "COCO_IOU_THRESHOLDS",
    "PROTOCOLS",
    "YOLO_IOU_THRESHOLDS",
    "DetectionEvaluator",
    "MetricsResult",
    "confusion_matrix",
    "map_confusion",
]
