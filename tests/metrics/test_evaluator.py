"""Evaluator behaviour: merging shards, state arrays, mapped view, torch input, summaries, bad input."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch

from smartcash_core.classes import default_class_table
from smartcash_core.metrics import DetectionEvaluator, MetricsResult
from tests.metrics.helpers import evaluate_images, fixture_cases, split_image

PROTOCOLS = ["yolo", "coco"]


def seventeen_class_images() -> list[dict[str, Any]]:
    case = next(c for c in fixture_cases() if c["n_classes"] == 17 and len(c["images"]) >= 20)
    return case["images"]


def assert_same_result(left: MetricsResult, right: MetricsResult) -> None:
    assert json.dumps(left.to_dict()) == json.dumps(right.to_dict())


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_merged_shards_equal_single_process_exactly(protocol: str) -> None:
    """Interleaved shards (like a DistributedSampler), merged in any order and through state arrays."""
    images = fixture_cases()[6]["images"]  # a "ties" case: equal scores across images
    table = None
    single = evaluate_images(images, 3, protocol, table)
    shards = [DetectionEvaluator(3, protocol) for _ in range(3)]
    for index, image in enumerate(images):
        shards[index % 3].update(*split_image(image), image_id=index)
    merged = DetectionEvaluator(3, protocol).merge(shards[2]).merge(shards[0]).merge(shards[1])
    assert_same_result(single, merged.compute())
    gathered = [shard.state_arrays() for shard in (shards[1], shards[2], shards[0])]
    concatenated = {
        key: np.concatenate([g[key] for g in gathered]) for key in gathered[0] if key != "confusion"
    }
    concatenated["confusion"] = sum(g["confusion"] for g in gathered)
    rebuilt = DetectionEvaluator.from_state_arrays(concatenated, 3, protocol)
    assert_same_result(single, rebuilt.compute())


def test_merge_refuses_overlapping_image_ids() -> None:
    first, second = DetectionEvaluator(3), DetectionEvaluator(3)
    image = split_image(fixture_cases()[1]["images"][0])
    first.update(*image)
    second.update(*image)
    with pytest.raises(ValueError, match="image ids"):
        first.merge(second)
    with pytest.raises(ValueError, match="different"):
        first.merge(DetectionEvaluator(3, "coco"))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_mapped_view_equals_evaluating_premapped_inputs(protocol: str) -> None:
    table = default_class_table()
    images = seventeen_class_images()
    result = evaluate_images(images, 17, protocol, table)
    mapping = table.map_array()
    premapped = [
        {
            **image,
            "gt": [[*g[:4], int(mapping[int(g[4])])] for g in image["gt"]],
            "pred": [[*p[:5], int(mapping[int(p[5])])] for p in image["pred"]],
        }
        for image in images
    ]
    expected = evaluate_images(premapped, table.num_mapped, protocol)
    assert result.mapped is not None and result.headline is result.mapped
    for key in ("classes", "ap", "precision", "recall", "f1", "coco_stats", "confusion"):
        left, right = getattr(result.mapped, key), getattr(expected, key)
        assert (left is None and right is None) or np.array_equal(left, right), key
    assert result.mapped.map50 == expected.map50 and result.mapped.map50_95 == expected.map50_95
    assert result.mapped.class_names == table.mapped_names and result.class_names == table.fine_names
    fine_only = evaluate_images(images, 17, protocol)
    assert np.array_equal(fine_only.ap, result.ap)


def test_torch_input_equals_numpy_input() -> None:
    images = fixture_cases()[3]["images"]
    numpy_result = evaluate_images(images, 3, "yolo")
    evaluator = DetectionEvaluator(3, "yolo")
    for image in images:
        boxes, scores, classes, gt_boxes, gt_classes = split_image(image)
        evaluator.update(
            torch.tensor(boxes, dtype=torch.float32),
            torch.tensor(scores, dtype=torch.float32),
            torch.tensor(classes, dtype=torch.float32),
            torch.tensor(gt_boxes),
            torch.tensor(gt_classes),
        )
    assert_same_result(numpy_result, evaluator.compute())  # float32 is what YOLOv5 itself computes in


def test_to_dict_is_plain_json() -> None:
    result = evaluate_images(seventeen_class_images(), 17, "coco", default_class_table())
    data = json.loads(json.dumps(result.to_dict()))
    assert data["mapped"]["view"] == "mapped" and len(data["mapped"]["confusion"]) == 9
    assert data["map50_95"] == pytest.approx(result.map50_95)
    assert len(data["coco_stats"]) == 12 and data["precision"] is None


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_per_image_summary_counts(protocol: str) -> None:
    evaluator = DetectionEvaluator(1, protocol)
    box_a, box_b = [0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]
    evaluator.update(
        np.array([box_a, box_a, box_b]),
        np.array([0.9, 0.8, 0.1]),
        np.array([0, 0, 0]),
        np.array([box_a, box_b]),
        np.array([0, 0]),
        image_id=7,
    )
    evaluator.update(np.zeros((0, 4)), np.zeros(0), np.zeros(0), np.array([box_a]), np.array([0]), image_id=3)
    summary = evaluator.per_image_summary(iou=0.5, conf=0.25)
    assert summary["image_id"].tolist() == [3, 7]
    assert summary["tp"].tolist() == [0, 1]
    assert summary["fp"].tolist() == [0, 1]  # the duplicate; the 0.1 prediction is under conf
    assert summary["fn"].tolist() == [1, 1]
    with pytest.raises(ValueError, match="iou"):
        evaluator.per_image_summary(iou=0.52)


def test_reset_forgets_everything() -> None:
    evaluator = DetectionEvaluator(3)
    evaluator.update(*split_image(fixture_cases()[0]["images"][0]))
    evaluator.reset()
    assert evaluator.num_images == 0 and evaluator.compute().num_predictions == 0


GOOD = {
    "pred_boxes": [[0.0, 0.0, 5.0, 5.0]],
    "pred_scores": [0.5],
    "pred_classes": [0],
    "gt_boxes": [[0.0, 0.0, 5.0, 5.0]],
    "gt_classes": [1],
}


@pytest.mark.parametrize(
    ("argument", "value", "message"),
    [
        ("pred_boxes", [[0.0, 0.0, float("nan"), 5.0]], "pred_boxes of image 4 .*not finite"),
        ("gt_boxes", [[0.0, float("inf"), 5.0, 5.0]], "gt_boxes of image 4 .*not finite"),
        ("pred_boxes", [[6.0, 0.0, 5.0, 5.0]], "pred_boxes of image 4 .*x2 < x1"),
        ("gt_boxes", [[0.0, 9.0, 5.0, 5.0]], "gt_boxes of image 4 .*negative size"),
        ("pred_classes", [3], "pred_classes of image 4 .*outside 0..2"),
        ("gt_classes", [-1], "gt_classes of image 4 .*outside"),
        ("pred_classes", [0.5], "pred_classes of image 4 .*not an integer"),
        ("pred_scores", [float("nan")], "pred_scores of image 4 .*not finite"),
        ("pred_scores", [0.5, 0.4], "pred_scores of image 4 has 2 entries"),
        ("gt_classes", [], "gt_classes of image 4 has 0 entries"),
        ("pred_boxes", [[0.0, 0.0, 5.0]], r"pred_boxes of image 4 has shape \(1, 3\)"),
    ],
)
def test_bad_input_names_argument_and_image(argument: str, value: list[Any], message: str) -> None:
    evaluator = DetectionEvaluator(3)
    evaluator.update(**{k: np.asarray(v) for k, v in GOOD.items()}, image_id=3)
    arguments = {k: np.asarray(v) for k, v in {**GOOD, argument: value}.items()}
    with pytest.raises(ValueError, match=message):
        evaluator.update(**arguments, image_id=4)
    assert evaluator.num_images == 1  # nothing of the bad image was kept


def test_bad_configuration_and_ids() -> None:
    with pytest.raises(ValueError, match="protocol"):
        DetectionEvaluator(3, "voc")
    with pytest.raises(ValueError, match="num_classes"):
        DetectionEvaluator(0)
    with pytest.raises(ValueError, match="fine classes"):
        DetectionEvaluator(3, class_table=default_class_table())
    evaluator = DetectionEvaluator(3)
    evaluator.update(**{k: np.asarray(v) for k, v in GOOD.items()}, image_id=1)
    with pytest.raises(ValueError, match="repeat"):
        evaluator.update(**{k: np.asarray(v) for k, v in GOOD.items()}, image_id=1)
    with pytest.raises(ValueError, match="images but the batch has"):
        evaluator.update_batch([np.zeros((0, 4))], [], [], [], [])
