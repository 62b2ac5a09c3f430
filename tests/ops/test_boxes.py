"""Box conversions, YOLOv5-style IoU and rescaling, checked on hand-computed cases."""

from __future__ import annotations

import torch

from smartcash_core.ops.boxes import (
    box_area,
    box_iou,
    clip_boxes,
    scale_boxes_to_original,
    xywh2xyxy,
    xywhn2xyxy,
    xyxy2xywh,
)


def test_conversions_round_trip_and_hand_values() -> None:
    xywh = torch.tensor([[50.0, 40.0, 20.0, 10.0]])
    xyxy = xywh2xyxy(xywh)
    torch.testing.assert_close(xyxy, torch.tensor([[40.0, 35.0, 60.0, 45.0]]))
    torch.testing.assert_close(xyxy2xywh(xyxy), xywh)
    normalized = torch.tensor([[0.5, 0.5, 0.5, 0.25]])
    torch.testing.assert_close(xywhn2xyxy(normalized, 200, 100), torch.tensor([[50.0, 37.5, 150.0, 62.5]]))
    assert xywh2xyxy(torch.zeros(0, 4)).shape == (0, 4)


def test_box_iou_hand_computed_with_yolo_eps() -> None:
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 30.0], [0.0, 0.0, 10.0, 10.0]])
    iou = box_iou(a, b)
    assert iou.shape == (1, 3)
    torch.testing.assert_close(iou[0], torch.tensor([50 / (150 + 1e-7), 0.0, 100 / (100 + 1e-7)]))
    assert box_iou(torch.zeros(0, 4), b).shape == (0, 3)
    assert box_iou(a, torch.zeros(0, 4)).shape == (1, 0)


def test_area_clip_and_scale_back() -> None:
    assert box_area(torch.tensor([[0.0, 0.0, 4.0, 3.0], [5.0, 5.0, 4.0, 6.0]])).tolist() == [12.0, 0.0]
    clipped = clip_boxes(torch.tensor([[-5.0, -1.0, 120.0, 50.0]]), height=40, width=100)
    assert clipped.tolist() == [[0.0, 0.0, 100.0, 40.0]]
    # an image of 200x100 shrunk by 0.5 into a 128x64 input with 14 px left padding and 7 px top padding
    in_input = torch.tensor([[24.0, 12.0, 64.0, 32.0]])
    original = scale_boxes_to_original(in_input, gain=0.5, pad=(14.0, 7.0), original_hw=(100, 200))
    assert original.tolist() == [[20.0, 10.0, 100.0, 50.0]]
