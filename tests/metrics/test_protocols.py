"""The protocol objects: each declares its state keys truthfully (names, order, dtypes, rows), the evaluator
delegates to them without branching on the protocol name, and ``true_positives_at`` reads a protocol's
match outcomes exactly as the plots did from the raw state."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from smartcash_core.classes import ClassTable, default_class_table
from smartcash_core.metrics import (
    PROTOCOL_TYPES,
    PROTOCOLS,
    CocoProtocol,
    DetectionEvaluator,
    YoloProtocol,
    confusion_matrix,
    evaluator,
)
from smartcash_core.metrics.inputs import flatten_images
from smartcash_core.metrics.state import Rows
from tests.metrics.helpers import evaluator_over, random_images
from tests.metrics.reference import true_positives_at_iou50_reference

TABLES = {"table": default_class_table(), "no-table": None}


def float32_images(seed: int) -> list[tuple[np.ndarray, ...]]:
    """Images as a detector hands them over: float32 boxes and scores."""
    return [
        (boxes.astype(np.float32), scores.astype(np.float32), classes, gt.astype(np.float32), gt_classes)
        for boxes, scores, classes, gt, gt_classes in random_images(seed, count=30)
    ]


def test_each_protocol_name_has_its_object() -> None:
    assert tuple(PROTOCOL_TYPES) == PROTOCOLS == ("yolo", "coco")
    assert PROTOCOL_TYPES["yolo"] is YoloProtocol and PROTOCOL_TYPES["coco"] is CocoProtocol
    for name, protocol_type in PROTOCOL_TYPES.items():
        instance = DetectionEvaluator(17, name).detection_protocol
        assert type(instance) is protocol_type and instance.name == name


def test_the_evaluator_does_not_branch_on_the_protocol_name() -> None:
    source = inspect.getsource(evaluator)
    assert '== "yolo"' not in source and '== "coco"' not in source and "protocol ==" not in source


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("table_name", sorted(TABLES))
def test_declared_keys_are_the_state(protocol: str, table_name: str) -> None:
    """Names and order, dtype and trailing shape (empty and filled alike: shards concatenate without
    promotion), and what the first axis counts."""
    table: ClassTable | None = TABLES[table_name]
    empty = DetectionEvaluator(17, protocol, table)
    filled = evaluator_over(float32_images(seed=2), protocol, table)
    keys = filled.detection_protocol.state_keys
    rows = {
        Rows.IMAGES: filled.num_images,
        Rows.PREDICTIONS: filled.compute().num_predictions,
        Rows.GROUND_TRUTH: filled.compute().num_ground_truth,
    }
    for evaluator_state in (empty.state_arrays(), filled.state_arrays()):
        assert list(evaluator_state) == [key.name for key in keys] + ["confusion"]
        for key in keys:
            value = evaluator_state[key.name]
            assert value.dtype == key.dtype and value.shape[1:] == key.width, key.name
    state = filled.state_arrays()
    for key in keys:
        view = key.name.split("_")[0]
        expected = int(state[f"{view}_has_outcome"].sum()) if key.rows is Rows.MATCHED else rows[key.rows]
        assert state[key.name].shape[0] == expected, key.name
    assert rows[Rows.PREDICTIONS] > 0 and rows[Rows.GROUND_TRUTH] > 0


def test_mapped_view_batch_maps_classes_and_shares_the_rest() -> None:
    protocol = YoloProtocol(17, default_class_table())
    images = random_images(seed=4)
    batch = flatten_images(*zip(*images, strict=True), np.arange(len(images)), 17)
    mapped = protocol.view_batch(batch, "mapped")
    table = default_class_table().map_array()
    np.testing.assert_array_equal(mapped.pred_classes, table[batch.pred_classes])
    np.testing.assert_array_equal(mapped.gt_classes, table[batch.gt_classes])
    assert mapped.pred_boxes is batch.pred_boxes and mapped.gt_image is batch.gt_image
    assert protocol.view_batch(batch, "fine") is batch


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("view", ["fine", "mapped"])
def test_true_positives_at_iou50_equal_the_plots_reading(protocol: str, view: str) -> None:
    ev = evaluator_over(random_images(seed=9, count=30), protocol, default_class_table())
    state = ev.state_arrays()
    hits = ev.true_positives_at(iou_index=0, view=view)
    assert hits.dtype == bool and hits.shape == state["pred_score"].shape and hits.any() and not hits.all()
    np.testing.assert_array_equal(hits, true_positives_at_iou50_reference(state, view, protocol))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_true_positives_at_every_threshold_agree_with_the_per_image_summary(protocol: str) -> None:
    ev = evaluator_over(random_images(seed=11, count=30), protocol, None)
    scores = ev.state_arrays()["pred_score"]
    previous = None
    for index, iou in enumerate(np.linspace(0.5, 0.95, 10)):
        hits = ev.true_positives_at(index)
        summary = ev.per_image_summary(iou=float(iou), conf=0.0)
        assert int(hits[scores >= 0.0].sum()) == int(summary["tp"].sum())
        if previous is not None:
            assert not (hits & ~previous).any()  # a stricter threshold never adds a true positive
        previous = hits


@pytest.mark.parametrize("bad", [-1, 10, 0.5, True, "0"])
def test_true_positives_at_refuses_bad_thresholds(bad: object) -> None:
    ev = evaluator_over(random_images(seed=1), "yolo", None)
    with pytest.raises(ValueError, match="iou_index"):
        ev.true_positives_at(bad)  # type: ignore[arg-type]


def test_true_positives_at_refuses_a_view_the_evaluator_lacks() -> None:
    ev = evaluator_over(random_images(seed=1), "coco", None)
    with pytest.raises(ValueError, match="view"):
        ev.true_positives_at(0, view="mapped")
    with pytest.raises(ValueError, match="view"):
        ev.true_positives_at(0, view="Fine")


def test_true_positives_at_of_an_empty_evaluator() -> None:
    for protocol in PROTOCOLS:
        assert DetectionEvaluator(17, protocol).true_positives_at(3).shape == (0,)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_confusion_matrix_of_a_flat_batch_equals_the_evaluators(protocol: str) -> None:
    images = random_images(seed=6, count=30)
    batch = flatten_images(*zip(*images, strict=True), np.arange(len(images)), 17)
    ev = evaluator_over(images, protocol, None)
    matrix = confusion_matrix(batch, 17)
    assert matrix.sum() > 0 and np.trace(matrix) > 0
    np.testing.assert_array_equal(matrix, ev.state_arrays()["confusion"])
