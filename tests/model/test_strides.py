"""Level strides are computed from the layers (strided convs, upsampling) without a forward; they equal what
YOLOv5's dry forward measures (input size / feature-map size), for P5 and P6 layouts, and building a model
imports none of torch's compiler machinery (start-up cost, issue 14)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import torch

from smartcash_core.model import build_model, load_model_config
from smartcash_core.model.yolo import DetectionModel


def measured_strides(model: DetectionModel, size: int = 256) -> list[float]:
    """YOLOv5's own way: a dry forward and input size / feature-map height per level."""
    model.eval()
    with torch.no_grad():
        features = model(torch.zeros(1, 3, size, size), features_only=True)
    return [size / feature.shape[-2] for feature in features]


def p6_config() -> dict[str, Any]:
    """A four-level (P3-P6, strides 8-64) layout in the style of YOLOv5's ``*6`` models."""
    return {
        "nc": 17, "depth_multiple": 0.33, "width_multiple": 0.25,
        "anchors": [[19, 27, 44, 40, 38, 94], [96, 68, 86, 152, 180, 137],
                    [140, 301, 303, 264, 238, 542], [436, 615, 739, 380, 925, 792]],
        "backbone": [
            [-1, 1, "Conv", [64, 6, 2, 2]], [-1, 1, "Conv", [128, 3, 2]], [-1, 1, "C3", [128]],
            [-1, 1, "Conv", [256, 3, 2]], [-1, 2, "C3", [256]], [-1, 1, "Conv", [512, 3, 2]],
            [-1, 1, "C3", [512]], [-1, 2, "Conv", [768, 3, 2]], [-1, 1, "C3", [768]],
            [-1, 1, "SPPF", [768, 5]],
        ],
        "head": [
            [-1, 1, "Conv", [512, 1, 1]], [-1, 1, "nn.Upsample", ["None", 2, "nearest"]],
            [[-1, 6], 1, "Concat", [1]], [-1, 1, "C3", [512, False]],  # 13: P4/16
            [-1, 1, "Conv", [256, 1, 1]], [-1, 1, "nn.Upsample", ["None", 2, "nearest"]],
            [[-1, 4], 1, "Concat", [1]], [-1, 1, "C3", [256, False]],  # 17: P3/8
            [-1, 1, "Conv", [256, 3, 2]], [[-1, 14], 1, "Concat", [1]], [-1, 1, "C3", [512, False]],  # 20
            [-1, 1, "Conv", [512, 3, 2]], [[-1, 10], 1, "Concat", [1]], [-1, 1, "C3", [768, False]],  # 23
            [-1, 1, "Conv", [768, 3, 2]], [-1, 1, "C3", [768, False]],  # 25: P6/64
            [[17, 20, 23, 25], 1, "Detect", ["nc", "anchors"]],
        ],
    }


@pytest.mark.parametrize("name", ["yolov5n", "yolov5s"])
def test_strides_equal_the_dry_forward(name: str) -> None:
    model = build_model(name)
    assert model.stride.tolist() == measured_strides(model) == [8.0, 16.0, 32.0]


def test_p6_strides_equal_the_dry_forward() -> None:
    model = build_model(load_model_config(p6_config()))
    assert model.stride.tolist() == measured_strides(model) == [8.0, 16.0, 32.0, 64.0]
    assert model.detect.anchors.shape == (4, 3, 2)


def test_building_a_model_imports_no_compiler_machinery() -> None:
    code = (
        "import sys, torch\n"
        "from smartcash_core.model import build_model\n"
        "build_model('yolov5n')\n"
        "print(sorted(m for m in ('torch._dynamo', 'sympy') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
