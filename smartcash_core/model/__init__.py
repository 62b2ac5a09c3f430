"""YOLOv5 detector built from the standard YOLOv5 model YAML (``yolov5n`` ... ``yolov5x`` ship as data)."""

from smartcash_core.model.yolo import (
    GRID_CACHE,
    MODEL_NAMES,
    Detect,
    DetectionModel,
    GridCache,
    build_model,
    load_model_config,
)

__all__ = [
    "GRID_CACHE",
    "MODEL_NAMES",
    "Detect",
    "DetectionModel",
    "GridCache",
    "build_model",
    "load_model_config",
]
