"""YOLOv5 detector built from the standard YOLOv5 model YAML (``yolov5n`` ... ``yolov5x`` ship as data)."""

from smartcash_core.model.yolo import (
    MODEL_NAMES,
    Detect,
    DetectionModel,
    build_model,
    decode_grid,
    load_model_config,
)

__all__ = [
    "MODEL_NAMES",
    "Detect",
    "DetectionModel",
    "build_model",
    "decode_grid",
    "load_model_config",
]
