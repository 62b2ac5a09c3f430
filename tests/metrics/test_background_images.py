"""Images without ground truth (YOLO background images) mixed with labelled ones: both protocols give
exactly what YOLOv5 7.0's val.py and pycocotools give on the same inputs (``reference.py``)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.metrics.helpers import evaluator_over, random_images
from tests.metrics.reference import coco_reference, yolo_reference


def _as_reference_images(images: list[tuple[np.ndarray, ...]]) -> list[dict[str, object]]:
    converted = []
    for boxes, scores, classes, gt_boxes, gt_classes in images:
        gt = [[*box, int(cls)] for box, cls in zip(gt_boxes, gt_classes, strict=True)]
        pred = [[*box, float(p), int(c)] for box, p, c in zip(boxes, scores, classes, strict=True)]
        converted.append({"width": 640, "height": 640, "gt": gt, "pred": pred})
    return converted


def _mixed_images(seed: int) -> list[tuple[np.ndarray, ...]]:
    """Random images where every third one has its ground truth removed (a background image with
    predictions) and one has neither ground truth nor predictions."""
    images = random_images(seed, count=18)
    empty_boxes, empty_ids = np.zeros((0, 4)), np.zeros(0, dtype=np.int64)
    mixed = [
        (*image[:3], empty_boxes, empty_ids) if position % 3 == 1 else image
        for position, image in enumerate(images)
    ]
    mixed[4] = (empty_boxes, np.zeros(0), empty_ids, empty_boxes, empty_ids)
    return mixed


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_yolo_protocol_on_a_mixed_set_equals_yolov5(seed: int) -> None:
    images = _mixed_images(seed)
    assert sum(len(image[0]) for image in images[1::3]) > 0  # background images do carry predictions
    result = evaluator_over(images, "yolo", None).compute()
    expected = yolo_reference(_as_reference_images(images))
    assert result.classes.tolist() == expected["classes"]
    np.testing.assert_allclose(result.ap, expected["ap"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.precision, expected["precision"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.recall, expected["recall"], rtol=0, atol=1e-12)
    assert result.map50 == pytest.approx(expected["map50"], abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_coco_protocol_on_a_mixed_set_equals_pycocotools(seed: int) -> None:
    pytest.importorskip("pycocotools")
    images = _mixed_images(seed)
    result = evaluator_over(images, "coco", None).compute()
    expected = coco_reference(_as_reference_images(images), 17)
    assert result.coco_stats is not None
    np.testing.assert_allclose(result.coco_stats, expected["stats"], rtol=0, atol=1e-12)


def test_background_predictions_lower_the_scores() -> None:
    """The same labelled images with and without the background images: predictions on background images
    are false positives, so precision (and here AP) can only fall."""
    images = _mixed_images(0)
    labelled = [image for image in images if len(image[3])]
    with_background = evaluator_over(images, "yolo", None).compute()
    without = evaluator_over(labelled, "yolo", None).compute()
    assert with_background.num_predictions > without.num_predictions
    assert with_background.map50 < without.map50
