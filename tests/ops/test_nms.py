"""Exact greedy NMS against a plain reference loop, and YOLOv5 candidate semantics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from smartcash_core.ops import nms as nms_module
from smartcash_core.ops.boxes import xywh2xyxy
from smartcash_core.ops.nms import greedy_nms, non_max_suppression


def reference_greedy(boxes: torch.Tensor, scores: torch.Tensor, iou_thres: float) -> list[int]:
    """Textbook greedy NMS over the whole list (no blocks), in torchvision's float32 arithmetic.

    Walks candidates by decreasing score (``sorted`` is stable, so ties keep index order); each kept box
    suppresses every later candidate whose IoU with it exceeds the threshold.
    """
    order = sorted(range(len(scores)), key=lambda index: -float(scores[index]))
    b = boxes.float().numpy()[order]
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    suppressed = np.zeros(len(order), dtype=bool)
    kept: list[int] = []
    for position in range(len(order)):
        if suppressed[position]:
            continue
        kept.append(order[position])
        rest = b[position + 1 :]
        w = np.maximum(
            np.float32(0), np.minimum(b[position, 2], rest[:, 2]) - np.maximum(b[position, 0], rest[:, 0])
        )
        h = np.maximum(
            np.float32(0), np.minimum(b[position, 3], rest[:, 3]) - np.maximum(b[position, 1], rest[:, 1])
        )
        inter = w * h
        with np.errstate(divide="ignore", invalid="ignore"):
            suppressed[position + 1 :] |= inter / (area[position] + area[position + 1 :] - inter) > iou_thres
    return kept


def random_boxes(generator: torch.Generator, count: int, spread: float) -> torch.Tensor:
    centers = torch.rand(count, 2, generator=generator) * spread
    sizes = torch.rand(count, 2, generator=generator) * 40 + 2
    return xywh2xyxy(torch.cat((centers, sizes), 1))


@pytest.mark.parametrize("seed", range(12))
def test_greedy_matches_reference_on_random_boxes(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nms_module, "BLOCK", [512, 64, 7][seed % 3])  # one block, several, many tiny ones
    generator = torch.Generator().manual_seed(seed)
    count = [5, 60, 700, 1200][seed % 4]  # 700 and 1200 span several blocks
    boxes = random_boxes(generator, count, spread=60 + count / 4)
    scores = torch.rand(count, generator=generator)
    iou = [0.3, 0.5, 0.6, 0.7][seed % 4]
    kept = greedy_nms(boxes, scores, iou).tolist()
    assert kept == reference_greedy(boxes, scores, iou)


@pytest.mark.parametrize("seed", range(4))
def test_ties_keep_the_earlier_box_like_a_stable_sort(seed: int) -> None:
    generator = torch.Generator().manual_seed(100 + seed)
    boxes = random_boxes(generator, 600, spread=120)
    scores = torch.randint(0, 5, (600,), generator=generator).float() / 4  # heavy ties
    boxes[10] = boxes[11]  # identical boxes with equal score: the lower index must win
    scores[10] = scores[11] = 2.0
    kept = greedy_nms(boxes, scores, 0.5).tolist()
    assert kept == reference_greedy(boxes, scores, 0.5)
    assert 10 in kept and 11 not in kept


def test_early_stop_keeps_the_greedy_prefix() -> None:
    generator = torch.Generator().manual_seed(7)
    boxes = random_boxes(generator, 2000, spread=400)
    scores = torch.rand(2000, generator=generator)
    full = greedy_nms(boxes, scores, 0.45).tolist()
    assert len(full) > 50
    assert greedy_nms(boxes, scores, 0.45, max_keep=50).tolist() == full[:50]


def test_empty_and_degenerate_inputs() -> None:
    assert greedy_nms(torch.zeros(0, 4), torch.zeros(0), 0.5).shape == (0,)
    # zero area: IoU is 0/0 = NaN, never > thres, so nothing is suppressed
    points = torch.tensor([[5.0, 5.0, 5.0, 5.0], [5.0, 5.0, 5.0, 5.0]])
    assert greedy_nms(points, torch.tensor([0.9, 0.8]), 0.5).tolist() == [0, 1]


def reference_yolov5_nms(
    prediction: torch.Tensor, conf: float, iou: float, max_det: int
) -> list[torch.Tensor]:
    """YOLOv5 7.0's candidate rule written out row by row, then per-class reference greedy."""
    results = []
    for image_pred in prediction:
        rows = []
        for row in image_pred:
            if row[4] <= conf:
                continue
            box = xywh2xyxy(row[None, :4])[0]
            for cls in range(prediction.shape[2] - 5):
                score = row[5 + cls] * row[4]
                if score > conf:
                    rows.append(torch.cat((box, score[None], torch.tensor([float(cls)]))))
        if not rows:
            results.append(torch.zeros(0, 6))
            continue
        table = torch.stack(rows)
        table = table[torch.sort(table[:, 4], descending=True, stable=True).indices]
        kept = reference_greedy(table[:, :4] + table[:, 5:6] * 7680, table[:, 4], iou)[:max_det]
        results.append(table[kept])
    return results


def make_prediction(seed: int, images: int = 2, anchors: int = 150, classes: int = 4) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    xy = torch.rand(images, anchors, 2, generator=generator) * 200
    wh = torch.rand(images, anchors, 2, generator=generator) * 60 + 4
    obj = torch.rand(images, anchors, 1, generator=generator)
    cls = torch.rand(images, anchors, classes, generator=generator)
    return torch.cat((xy, wh, obj, cls), 2)


@pytest.mark.parametrize("seed", range(3))
def test_non_max_suppression_matches_reference(seed: int) -> None:
    prediction = make_prediction(seed)
    ours = non_max_suppression(prediction, conf_thres=0.25, iou_thres=0.45, max_det=40)
    reference = reference_yolov5_nms(prediction, 0.25, 0.45, 40)
    assert len(ours) == 2
    for got, want in zip(ours, reference, strict=True):
        assert got.shape == want.shape and got.shape[1] == 6
        torch.testing.assert_close(got, want, rtol=0, atol=0)
        assert bool((got[:-1, 4] >= got[1:, 4]).all())


def test_multi_label_emits_several_classes_per_box_and_single_label_one() -> None:
    prediction = torch.tensor([[[50.0, 50.0, 20.0, 20.0, 0.9, 0.8, 0.7, 0.0001]]])
    multi = non_max_suppression(prediction, conf_thres=0.01, iou_thres=0.5)[0]
    assert sorted(multi[:, 5].tolist()) == [0.0, 1.0]
    torch.testing.assert_close(multi[:, 4], torch.tensor([0.72, 0.63]))
    single = non_max_suppression(prediction, conf_thres=0.01, iou_thres=0.5, multi_label=False)[0]
    assert single[:, 5].tolist() == [0.0]
    torch.testing.assert_close(single[0, :4], torch.tensor([40.0, 40.0, 60.0, 60.0]))


def test_classes_filter_max_nms_and_empty_images() -> None:
    prediction = make_prediction(5)
    only_two = non_max_suppression(prediction, conf_thres=0.1, classes=[2])
    assert all(bool((out[:, 5] == 2).all()) for out in only_two)
    assert all(out.shape[0] <= 3 for out in non_max_suppression(prediction, conf_thres=0.1, max_nms=3))
    empty = non_max_suppression(torch.zeros(1, 10, 9), conf_thres=0.5)
    assert empty[0].shape == (0, 6)
    with pytest.raises(ValueError, match="conf_thres"):
        non_max_suppression(prediction, conf_thres=1.5)


def test_backend_reports_the_fallback_without_torchvision() -> None:
    expected = "torchvision" if nms_module._TORCHVISION_NMS is not None else "torch"
    assert nms_module.nms_backend() == expected


def test_many_candidates_stay_cheap() -> None:
    """30000 heavily overlapping candidates: the block scheme must finish fast (no N x N matrix)."""
    generator = torch.Generator().manual_seed(3)
    boxes = random_boxes(generator, 30000, spread=600)
    scores = torch.rand(30000, generator=generator)
    kept = greedy_nms(boxes, scores, 0.6, max_keep=300)
    assert kept.shape == (300,)
    assert kept.tolist() == reference_greedy_prefix(boxes, scores, 0.6, 300)


def reference_greedy_prefix(boxes: torch.Tensor, scores: torch.Tensor, iou: float, keep: int) -> list[int]:
    """Reference greedy on the shortest score-ordered prefix that yields ``keep`` boxes (fast enough)."""
    order = torch.sort(scores, descending=True, stable=True).indices
    prefix = 1000
    while True:
        head = order[:prefix]
        kept = [int(head[i]) for i in reference_greedy(boxes[head], scores[head], iou)]
        if len(kept) >= keep or prefix >= len(order):
            return kept[:keep]
        prefix *= 2


@pytest.mark.parametrize("multi_label", [True, False])
def test_torch_path_equals_numpy_path(monkeypatch: pytest.MonkeyPatch, multi_label: bool) -> None:
    """The torch path (CUDA, or torchvision present) keeps the same rows as the CPU numpy path."""
    prediction = make_prediction(9, anchors=400, classes=6)
    numpy_out = non_max_suppression(prediction, conf_thres=0.05, iou_thres=0.5, multi_label=multi_label)
    monkeypatch.setattr(nms_module, "_TORCHVISION_NMS", lambda b, s, t: greedy_nms(b, s, t))
    torch_out = non_max_suppression(prediction, conf_thres=0.05, iou_thres=0.5, multi_label=multi_label)
    for got, want in zip(torch_out, numpy_out, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert sum(len(out) for out in numpy_out) > 10
