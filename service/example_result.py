"""The example result shown in the OpenAPI schema (Swagger UI): the shape of a real result (a test compares
its keys with a real one), shortened to one class per view."""

from __future__ import annotations

from typing import Any


def _example_class(class_id: int, name: str, ap50: float, instances: int) -> dict[str, Any]:
    return {
        "id": class_id, "name": name, "ap50": ap50, "ap50_95": round(ap50 * 0.8, 3), "precision": 0.91,
        "recall": 0.88, "instances": instances, "images": instances // 2,
    }


def _example_cache(hits: int, misses: int, stored: int) -> dict[str, int]:
    return {"hits": hits, "misses": misses, "hit_bytes": hits * 196608, "stored_bytes": stored}


# The shape of a real result (a test compares its keys with a real one), shortened to one class per view.
EXAMPLE_RESULT: dict[str, Any] = {
    "metrics": {
        "protocol": "yolo",
        "map50": 0.875, "map50_95": 0.723, "precision": 0.673, "recall": 0.858,
        "per_class": [_example_class(0, "1000", 0.966, 14)],
        "fine": {
            "map50": 0.886, "map50_95": 0.734, "precision": 0.666, "recall": 0.866,
            "per_class": [_example_class(0, "1000_whole", 0.96, 7)],
        },
        "classification": {
            "images": 32, "decision_conf": 0.25, "accuracy": 0.75, "macro_precision": 0.71,
            "macro_recall": 0.69, "macro_f1": 0.7, "labels": ["1000", "2000", "none"],
            "confusion_matrix": [[6, 0, 1], [1, 7, 0], [0, 0, 0]],
        },
    },
    "dataset": {"images": 32, "instances": 173, "skipped": []},
    "speed_ms_per_image": {
        "decode": 1.2, "preprocess": 0.4, "inference": 9.8, "nms": 0.6, "metrics": 0.1, "loader_wait": 0.3,
    },
    "wall_s": 0.42,
    "cache": {
        "image": {"hits": 32, "misses": 32, "evictions": 0, "entries": 32, "bytes": 6291456,
                  "max_bytes": 1073741824},
    },
    "cache_job": {"image": _example_cache(32, 0, 0), "label": _example_cache(32, 0, 0)},
    "params": {
        "imgsz": 256, "batch_size": 16, "conf_thres": 0.001, "iou_thres": 0.6, "max_det": 300,
        "multi_label": True, "rect": True, "protocol": "yolo", "device": "cpu", "half": False, "workers": 2,
        "split": "val", "compute_loss": False, "fast_decode": False, "precision": "fp32",
    },
    "model": {
        "source": "demo_yolov5n.safetensors", "sha256": "bdacf433dc67...", "imgsz": 256, "stride": 32,
        "num_classes": 17, "num_params": 1786918, "device": "cpu", "precision": "fp32",
    },
    "warnings": [],
}
