"""Property tests: random small inputs against pycocotools and the literal YOLOv5 procedure.

Boxes sit on a coarse integer grid and scores come from a few values, so exact IoU ties, IoUs exactly at
thresholds, duplicate boxes and score ties are all common. Both oracles run in this process, so the
YOLOv5 argsort uses the same numpy kernel as the engine.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.metrics.helpers import coco_differences, evaluate_images, yolo_differences
from tests.metrics.reference import coco_reference, yolo_reference

N_CLASSES = 2
TOLERANCE = 1e-9


@st.composite
def boxes(draw: st.DrawFn) -> list[float]:
    x1, y1 = draw(st.integers(0, 6)) * 8.0, draw(st.integers(0, 6)) * 8.0
    w, h = draw(st.integers(1, 6)) * 8.0, draw(st.integers(1, 6)) * 8.0
    return [x1, y1, x1 + w, y1 + h]


@st.composite
def images(draw: st.DrawFn) -> list[dict[str, Any]]:
    result = []
    for _ in range(draw(st.integers(1, 4))):
        gt = [[*draw(boxes()), draw(st.integers(0, N_CLASSES - 1))] for _ in range(draw(st.integers(0, 4)))]
        pred = [
            [*draw(boxes()), draw(st.sampled_from([0.3, 0.5, 0.7, 0.9])), draw(st.integers(0, N_CLASSES - 1))]
            for _ in range(draw(st.integers(0, 6)))
        ]
        pred.sort(key=lambda row: -row[4])  # NMS output order
        result.append({"width": 100, "height": 100, "gt": gt, "pred": pred})
    return result


SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(images())
def test_coco_protocol_equals_pycocotools(case: list[dict[str, Any]]) -> None:
    result = evaluate_images(case, N_CLASSES, "coco")
    assert coco_differences(result, coco_reference(case, N_CLASSES), N_CLASSES) <= TOLERANCE


@SETTINGS
@given(images())
def test_yolo_protocol_equals_literal_yolov5(case: list[dict[str, Any]]) -> None:
    result = evaluate_images(case, N_CLASSES, "yolo")
    if not any(image["gt"] for image in case):
        assert result.classes.size == 0 and result.map50_95 == 0.0
        return
    expected = yolo_reference(case)
    if "classes" not in expected:  # no true positive anywhere: val.py reports zeros
        assert result.map50 == 0.0 and not result.ap.any()
        return
    assert yolo_differences(result, expected) <= TOLERANCE


@SETTINGS
@given(images())
def test_ap_values_are_probabilities(case: list[dict[str, Any]]) -> None:
    for protocol in ("yolo", "coco"):
        result = evaluate_images(case, N_CLASSES, protocol)
        assert np.all((result.ap >= 0) & (result.ap <= 1))
        assert 0.0 <= result.map50_95 <= 1.0 and 0.0 <= result.map50 <= 1.0
