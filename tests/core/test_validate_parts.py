"""Per-image counts and image-level denomination metrics of the validation pass, on hand-made cases."""

from __future__ import annotations

import torch

from smartcash_core.classes import default_class_table
from smartcash_core.validate import denomination_metrics, image_counts, whole_class_ids


def test_image_counts_hand_case() -> None:
    gt_boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0], [50.0, 50.0, 60.0, 60.0]])
    gt_classes = torch.tensor([0, 1, 0])
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
    counts = image_counts(boxes, scores, classes, gt_boxes, gt_classes)
    assert counts == {"instances": 3, "predictions": 3, "tp": 1, "fp": 2, "fn": 2}
    no_classes = torch.zeros(0, dtype=torch.long)
    empty = image_counts(torch.zeros(0, 4), torch.zeros(0), no_classes, gt_boxes, gt_classes)
    assert empty == {"instances": 3, "predictions": 0, "tp": 0, "fp": 0, "fn": 3}


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
