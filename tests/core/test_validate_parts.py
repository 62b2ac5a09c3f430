"""Per-image counts and image-level denomination metrics of the validation pass, on hand-made cases."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from smartcash_core.classes import default_class_table
from smartcash_core.errors import SmartCashError
from smartcash_core.metrics import DetectionEvaluator
from smartcash_core.validation.denomination import denomination_metrics, whole_class_ids
from smartcash_core.validation.summary import with_match_counts


def _rows(protocol: str, images: list[tuple[torch.Tensor, ...]]) -> list[dict[str, object]]:
    """Feed (boxes, scores, classes, gt_boxes, gt_classes) per image to an evaluator, as the pass does."""
    evaluator = DetectionEvaluator(17, protocol, default_class_table())
    columns = [list(column) for column in zip(*images, strict=True)]
    ids = [10 + i for i in range(len(images))]
    evaluator.update_batch(*columns, image_ids=ids)
    rows = [{"index": i - 10, "order": i, "file": f"{i}.jpg", "true_denomination": None} for i in ids]
    return with_match_counts(rows, evaluator)


GT_BOXES = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0], [50.0, 50.0, 60.0, 60.0]])
GT_CLASSES = torch.tensor([0, 1, 0])


@pytest.mark.parametrize("protocol", ["yolo", "coco"])
def test_match_counts_hand_case(protocol: str) -> None:
    boxes = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],  # TP for gt 0
            [0.0, 0.0, 10.0, 9.0],  # duplicate of gt 0: FP
            [20.0, 20.0, 30.0, 30.0],  # right place, wrong class: FP
            [50.0, 50.0, 60.0, 60.0],  # below the decision conf: ignored
        ]
    )
    scores = torch.tensor([0.9, 0.8, 0.7, 0.1])
    classes = torch.tensor([0, 0, 2, 0])
    no_classes = torch.zeros(0, dtype=torch.long)
    empty = (torch.zeros(0, 4), torch.zeros(0), no_classes, GT_BOXES, GT_CLASSES)
    rows = _rows(protocol, [(boxes, scores, classes, GT_BOXES, GT_CLASSES), empty])
    counts = [{k: row[k] for k in ("instances", "predictions", "tp", "fp", "fn")} for row in rows]
    assert counts == [
        {"instances": 3, "predictions": 3, "tp": 1, "fp": 2, "fn": 2},
        {"instances": 3, "predictions": 0, "tp": 0, "fp": 0, "fn": 3},
    ]
    assert [row["order"] for row in rows] == [10, 11] and [row["index"] for row in rows] == [0, 1]
    assert rows[0]["true_denomination"] is None


def test_yolo_counts_follow_process_batch_where_it_differs_from_score_greedy() -> None:
    """Two overlapping ground truths of one class; both predictions overlap gt 0 best.

    ``yolo`` is YOLOv5's ``process_batch``: each prediction claims only its best-IoU ground truth and the
    earlier (more confident) row wins it, so the 0.8 box is a false positive even though gt 1 (IoU 0.84)
    is free. ``coco`` matches greedily by score and falls back to gt 1: two true positives. The old
    score-greedy counts of the pass agreed with ``coco`` here; the pass now reports the protocol's decision.
    """
    gt_boxes, gt_classes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 8.0]]), torch.tensor([3, 3])
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 9.5]])
    image = (boxes, torch.tensor([0.9, 0.8]), torch.tensor([3, 3]), gt_boxes, gt_classes)
    yolo, coco = _rows("yolo", [image])[0], _rows("coco", [image])[0]
    assert (yolo["tp"], yolo["fp"], yolo["fn"]) == (1, 1, 1)
    assert (coco["tp"], coco["fp"], coco["fn"]) == (2, 0, 0)


def test_rows_missing_from_the_state_are_an_error() -> None:
    evaluator = DetectionEvaluator(17, "yolo", default_class_table())
    with pytest.raises(SmartCashError, match=r"a\.jpg \(index 4\)"):
        with_match_counts([{"index": 4, "order": 4, "file": "a.jpg"}], evaluator)


def test_whole_classes_are_the_seven_banknotes() -> None:
    assert whole_class_ids(default_class_table()).tolist() == list(range(7))


def test_denomination_metrics_hand_case() -> None:
    table = default_class_table()
    rows = [
        {"true_denomination": 0, "predicted_denomination": 0},
        {"true_denomination": 0, "predicted_denomination": 1},
        {"true_denomination": 1, "predicted_denomination": 1},
        {"true_denomination": None, "predicted_denomination": None},
        {"true_denomination": 2, "predicted_denomination": None},
    ]
    result = denomination_metrics(rows, table)
    assert result["labels"] == ["1000", "2000", "5000", "10000", "20000", "50000", "100000", "none"]
    assert result["images"] == 5 and result["accuracy"] == 3 / 5
    matrix = result["confusion_matrix"]
    assert matrix[0][0] == 1 and matrix[0][1] == 1 and matrix[1][1] == 1 and matrix[7][7] == 1
    assert matrix[2][7] == 1 and sum(map(sum, matrix)) == 5
    # labels present: 1000 (P 1, R .5), 2000 (P .5, R 1), 5000 (P 0, R 0), none (P .5, R 1)
    assert abs(result["macro_precision"] - (1 + 0.5 + 0 + 0.5) / 4) < 1e-12
    assert abs(result["macro_recall"] - (0.5 + 1 + 0 + 1) / 4) < 1e-12
    f1 = [2 / 3, 2 / 3, 0.0, 2 / 3]
    assert abs(result["macro_f1"] - sum(f1) / 4) < 1e-12


def test_metric_image_ids_follow_the_rectangular_processing_order(
    mixed_aspect_dataset: Path, trained_weights: Path
) -> None:
    """YOLOv5 concatenates predictions in loader order (images sorted by aspect ratio), and its non-stable
    argsort breaks score ties by that order: the metric state must use the same order as image ids."""
    from smartcash_core.checkpoint import load_model
    from smartcash_core.data.dataset import load_yolo_dataset
    from smartcash_core.validation.params import ValidationParams
    from smartcash_core.validation.runner import run_validation
    from smartcash_core.validation.source import plan_batches, processing_order

    model = load_model(trained_weights, "cpu")
    params = ValidationParams(imgsz=160, batch_size=2, device="cpu", workers=1)
    order = processing_order(plan_batches(load_yolo_dataset(mixed_aspect_dataset), params, model.stride))
    assert sorted(order.values()) == list(range(9)) and list(order) != sorted(order)  # rect order differs

    result = run_validation(model, mixed_aspect_dataset, params)
    assert [row["order"] for row in result.per_image] == list(range(9))
    assert all(order[row["index"]] == row["order"] for row in result.per_image)
    assert sorted(result.evaluator.state_arrays()["image_ids"].tolist()) == list(range(9))
