"""Small cases whose expected values are worked out by hand (see each docstring)."""

from __future__ import annotations

import numpy as np
import pytest

from smartcash_core.metrics import DetectionEvaluator, MetricsResult

BOX_A = [0.0, 0.0, 10.0, 10.0]
BOX_B = [20.0, 20.0, 40.0, 40.0]
EMPTY_BOXES = np.zeros((0, 4))
EMPTY_IDS = np.zeros(0, dtype=np.int64)


def one_image(
    protocol: str,
    preds: list[tuple[list[float], float, int]],
    gts: list[tuple[list[float], int]],
    num_classes: int = 2,
) -> MetricsResult:
    evaluator = DetectionEvaluator(num_classes, protocol)
    evaluator.update(
        np.array([p[0] for p in preds]).reshape(-1, 4),
        np.array([p[1] for p in preds]),
        np.array([p[2] for p in preds], dtype=np.int64),
        np.array([g[0] for g in gts]).reshape(-1, 4),
        np.array([g[1] for g in gts], dtype=np.int64),
    )
    return evaluator.compute()


def test_perfect_predictions() -> None:
    """YOLOv5's 101-point trapezoid ends at (1, 0), so a perfect class scores 0.99 + 0.01 / 2 = 0.995."""
    preds = [(BOX_A, 0.9, 0), (BOX_B, 0.8, 1)]
    gts = [(BOX_A, 0), (BOX_B, 1)]
    yolo = one_image("yolo", preds, gts)
    assert yolo.classes.tolist() == [0, 1]
    np.testing.assert_allclose(yolo.ap, np.full((2, 10), 0.995), atol=1e-12)
    np.testing.assert_allclose(yolo.precision, [1.0, 1.0])
    np.testing.assert_allclose(yolo.recall, [1.0, 1.0])
    coco = one_image("coco", preds, gts)
    assert coco.map50_95 == pytest.approx(1.0) and coco.map50 == pytest.approx(1.0)
    assert coco.coco_stats is not None
    assert coco.coco_stats[3] == pytest.approx(1.0)  # both boxes are small (area 100 and 400 < 32^2)
    assert coco.coco_stats[4] == -1.0 and coco.coco_stats[5] == -1.0  # no medium / large ground truth


def test_one_duplicate_is_a_false_positive_after_full_recall() -> None:
    """The duplicate comes after recall 1, so AP is unchanged (0.995 / 1.0) but the hit matrix shows it."""
    preds = [(BOX_A, 0.9, 0), (BOX_A, 0.8, 0)]
    evaluator = DetectionEvaluator(2, "yolo")
    evaluator.update(
        np.array([p[0] for p in preds]),
        np.array([0.9, 0.8]),
        np.array([0, 0]),
        np.array([BOX_A]),
        np.array([0]),
    )
    hits = evaluator.state_arrays()["fine_hit_bits"]  # bit t: hit at IoU threshold t
    assert hits.tolist() == [0b1111111111, 0]
    assert evaluator.compute().map50 == pytest.approx(0.995)
    assert one_image("coco", preds, [(BOX_A, 0)]).map50_95 == pytest.approx(1.0)


def test_one_miss_halves_recall() -> None:
    """Recall 0.5 at precision 1. YOLO: envelope 1 up to 0.5 then the line to (1, 0): 0.5 + 0.25 = 0.75.
    COCO: recall thresholds 0.00..0.50 (51 of 101) have precision 1: 51 / 101."""
    preds = [(BOX_A, 0.9, 0)]
    gts = [(BOX_A, 0), (BOX_B, 0)]
    yolo = one_image("yolo", preds, gts, num_classes=1)
    np.testing.assert_allclose(yolo.ap, np.full((1, 10), 0.75), atol=1e-12)
    coco = one_image("coco", preds, gts, num_classes=1)
    assert coco.map50_95 == pytest.approx(51 / 101)


@pytest.mark.parametrize(("fp_first", "expected"), [(True, 0.5), (False, 1.0)])
def test_coco_score_ties_follow_image_order(fp_first: bool, expected: float) -> None:
    """Equal scores keep image order (stable mergesort): FP image first gives precision 1/2 at recall 1."""
    evaluator = DetectionEvaluator(1, "coco")
    fp_image = (np.array([BOX_B]), np.array([0.5]), np.array([0]), EMPTY_BOXES, EMPTY_IDS)
    tp_image = (np.array([BOX_A]), np.array([0.5]), np.array([0]), np.array([BOX_A]), np.array([0]))
    for image in (fp_image, tp_image) if fp_first else (tp_image, fp_image):
        evaluator.update(*image)
    assert evaluator.compute().map50_95 == pytest.approx(expected)


def test_iou_exactly_at_threshold_matches_only_that_threshold() -> None:
    """IoU of [0,0,10,5] with [0,0,10,10] is exactly 0.5 in float32 and float64: a hit at 0.50 only."""
    preds = [([0.0, 0.0, 10.0, 5.0], 0.9, 0)]
    gts = [(BOX_A, 0)]
    evaluator = DetectionEvaluator(1, "yolo")
    evaluator.update(
        np.array([preds[0][0]]), np.array([0.9]), np.array([0]), np.array([BOX_A]), np.array([0])
    )
    assert evaluator.state_arrays()["fine_hit_bits"].tolist() == [0b1]  # threshold 0.50 only
    yolo = evaluator.compute()
    assert yolo.map50 == pytest.approx(0.995) and yolo.map50_95 == pytest.approx(0.0995)
    coco = one_image("coco", preds, gts, num_classes=1)
    assert coco.coco_stats is not None
    assert coco.coco_stats[1] == pytest.approx(1.0) and coco.coco_stats[0] == pytest.approx(0.1)


def test_empty_image_changes_nothing_and_gt_only_image_is_a_miss() -> None:
    """An image with neither boxes adds nothing; an image with only ground truth is one more miss."""
    evaluator = DetectionEvaluator(1, "yolo")
    evaluator.update(np.array([BOX_A]), np.array([0.9]), np.array([0]), np.array([BOX_A]), np.array([0]))
    evaluator.update(EMPTY_BOXES, np.zeros(0), EMPTY_IDS, EMPTY_BOXES, EMPTY_IDS)
    assert evaluator.compute().map50 == pytest.approx(0.995)
    evaluator.update(EMPTY_BOXES, np.zeros(0), EMPTY_IDS, np.array([BOX_B]), np.array([0]))
    assert evaluator.compute().map50 == pytest.approx(0.75)
    assert evaluator.num_images == 3


def test_no_predictions_and_no_ground_truth() -> None:
    """No predictions: YOLO reports zeros, COCO precision 0 (stats 0). No ground truth: nothing defined."""
    no_preds = one_image("yolo", [], [(BOX_A, 0)])
    assert no_preds.classes.tolist() == [0] and no_preds.map50 == 0.0 and not no_preds.ap.any()
    coco = one_image("coco", [], [(BOX_A, 0)])
    assert coco.coco_stats is not None and coco.coco_stats[0] == 0.0
    no_gt = one_image("yolo", [(BOX_A, 0.9, 1)], [])
    assert no_gt.classes.size == 0 and no_gt.map50_95 == 0.0
    coco_no_gt = one_image("coco", [(BOX_A, 0.9, 1)], [])
    assert coco_no_gt.coco_stats is not None and (coco_no_gt.coco_stats == -1).all()


def test_class_with_predictions_but_no_ground_truth_is_left_out() -> None:
    result = one_image("yolo", [(BOX_A, 0.9, 0), (BOX_B, 0.8, 1)], [(BOX_A, 0)])
    assert result.classes.tolist() == [0]
    assert result.map50 == pytest.approx(0.995)


def test_confusion_matrix_counts() -> None:
    """Rows predicted, columns true, background last: one correct, one confused, one FP, one FN, and a
    prediction under conf 0.25 ignored."""
    evaluator = DetectionEvaluator(2, "yolo")
    preds = np.array([BOX_A, BOX_B, [50.0, 50.0, 60.0, 60.0], [70.0, 70.0, 80.0, 80.0]])
    gts = np.array([BOX_A, BOX_B, [90.0, 90.0, 99.0, 99.0]])
    evaluator.update(preds, np.array([0.9, 0.8, 0.7, 0.1]), np.array([0, 0, 1, 1]), gts, np.array([0, 1, 1]))
    expected = np.array(
        [
            [1, 1, 0],  # predicted 0: true 0, true 1 (confused)
            [0, 0, 1],  # predicted 1: one false positive on background
            [0, 1, 0],
        ]
    )  # background: ground truth 1 never found
    np.testing.assert_array_equal(evaluator.compute().confusion, expected)


def test_background_image_prediction_is_a_false_positive_of_its_class() -> None:
    """Image 0: one ground truth, found at 0.8. Image 1 (background, no label file): a class-0 box at 0.9.

    YOLOv5: in confidence order FP then TP, so recall [0, 1] and precision [0, 0.5]; the envelope is 0.5 up
    to recall 1, and the trapezoid over 101 points gives 0.99 * 0.5 + 0.01 * 0.25 = 0.4975 at every IoU
    threshold (the boxes are exact). COCO: precision 0.5 at every recall threshold, AP 0.5. Without the
    background image both are perfect (0.995 / 1.0)."""
    background = (np.array([BOX_B]), np.array([0.9]), np.array([0]), EMPTY_BOXES, EMPTY_IDS)
    labelled = (np.array([BOX_A]), np.array([0.8]), np.array([0]), np.array([BOX_A]), np.array([0]))
    expected = {"yolo": 0.4975, "coco": 0.5}
    for protocol, value in expected.items():
        evaluator = DetectionEvaluator(1, protocol)
        evaluator.update(*labelled)
        evaluator.update(*background)
        result = evaluator.compute()
        assert result.map50 == pytest.approx(value) and result.map50_95 == pytest.approx(value)
        assert result.classes.tolist() == [0] and result.num_ground_truth == 1
        summary = evaluator.per_image_summary()
        assert summary["fp"].tolist() == [0, 1] and summary["fn"].tolist() == [0, 0]
