"""YOLOv5 detector built from the standard YOLOv5 model YAML (``yolov5n`` ... ``yolov5x`` ship as data):
``modules`` (the blocks), ``config`` (YAML to layers), ``yolo`` (the detector)."""

from smartcash_core.model.config import MODEL_NAMES, load_model_config
from smartcash_core.model.modules import Detect, decode_grid
from smartcash_core.model.yolo import DetectionModel, build_model

__all__ = [
    "MODEL_NAMES",
    "Detect",
    "DetectionModel",
    "build_model",
    "decode_grid",
    "load_model_config",
]
