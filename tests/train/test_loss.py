"""YOLOv5 loss: CIoU, target assignment on hand-computed cases, perfect predictions, gradients, errors."""

from __future__ import annotations

import math

import pytest
import torch

from smartcash_core.training.loss import LossHyp, LossInputError, YoloLoss, assign_targets, ciou

NUM_CLASSES = 17
# One level, 10x10 grid, three anchors in grid units: small, medium, and one too large for a 2x2 target.
ONE_LEVEL_ANCHORS = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [10.0, 10.0]]])


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_ciou_identical_boxes_is_one() -> None:
    boxes = torch.tensor([[5.0, 5.0, 2.0, 3.0], [1.0, 2.0, 0.5, 4.0]])
    assert torch.allclose(ciou(boxes, boxes), torch.ones(2), atol=1e-6)


def test_ciou_concentric_same_aspect_equals_plain_iou() -> None:
    # Same centre and aspect: the distance and aspect penalties vanish, CIoU = IoU = 1 / 4.
    inner = torch.tensor([[4.0, 4.0, 1.0, 1.0]])
    outer = torch.tensor([[4.0, 4.0, 2.0, 2.0]])
    assert ciou(inner, outer).item() == pytest.approx(0.25, abs=1e-6)


def test_ciou_disjoint_boxes_penalised_by_distance() -> None:
    # No overlap: IoU 0, centre distance 2 over an enclosing diagonal of sqrt(3^2 + 1^2) -> -4/10.
    left = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    right = torch.tensor([[2.0, 0.0, 1.0, 1.0]])
    assert ciou(left, right).item() == pytest.approx(-0.4, abs=1e-6)


def test_assignment_hand_computed_neighbours_and_anchor_ratio() -> None:
    # Centre (3.3, 4.7) in grid units, size 2x2: anchors 1x1 and 3x3 fit (ratios 2, 1.5 < 4), 10x10 does not.
    # x fraction 0.3 < 0.5 -> also the cell to the left; distance to the bottom edge 5.3 has fraction
    # 0.3 -> also the cell below. So 3 cells x 2 anchors = 6 assignments.
    targets = torch.tensor([[0.0, 2.0, 0.33, 0.47, 0.2, 0.2]])
    (level,) = assign_targets(targets, ONE_LEVEL_ANCHORS, [(10, 10)])
    assert len(level) == 6
    cells = sorted(zip(level.anchor.tolist(), level.grid_x.tolist(), level.grid_y.tolist(), strict=True))
    assert cells == sorted((a, x, y) for a in (0, 1) for x, y in ((3, 4), (2, 4), (3, 5)))
    offsets = {(x, y): tuple(round(v, 4) for v in box[:2].tolist())
               for x, y, box in zip(level.grid_x.tolist(), level.grid_y.tolist(), level.box, strict=True)}
    assert offsets == {(3, 4): (0.3, 0.7), (2, 4): (1.3, 0.7), (3, 5): (0.3, -0.3)}
    assert torch.allclose(level.box[:, 2:], torch.full((6, 2), 2.0))
    assert level.cls.tolist() == [2] * 6
    assert level.image.tolist() == [0] * 6


def test_assignment_skips_neighbours_at_the_border_and_counts_per_level() -> None:
    # Centre x at 0.5 cells: the left neighbour would leave the grid (YOLOv5 needs x > 1), so only the
    # cell below (fraction of 10 - 4.7 is 0.3) is added: 2 cells x 2 fitting anchors.
    targets = torch.tensor([[1.0, 0.0, 0.05, 0.47, 0.2, 0.2]])
    (level,) = assign_targets(targets, ONE_LEVEL_ANCHORS, [(10, 10)])
    assert len(level) == 4
    assert set(level.grid_x.tolist()) == {0}
    assert set(level.grid_y.tolist()) == {4, 5}
    assert level.image.tolist() == [1] * 4


def test_assignment_rejects_all_anchors_for_extreme_shapes_and_handles_no_targets() -> None:
    thin = torch.tensor([[0.0, 14.0, 0.5, 0.5, 0.01, 0.9]])  # 0.1 x 9 cells: ratio >= 4 for every anchor
    (level,) = assign_targets(thin, ONE_LEVEL_ANCHORS, [(10, 10)])
    assert len(level) == 0
    (empty,) = assign_targets(torch.zeros((0, 6)), ONE_LEVEL_ANCHORS, [(10, 10)])
    assert len(empty) == 0


def test_hyp_scaled_like_yolov5_train() -> None:
    hyp = LossHyp().scaled(num_levels=3, num_classes=17, imgsz=320)
    assert hyp.box == pytest.approx(0.05)
    assert hyp.cls == pytest.approx(0.5 * 17 / 80)
    assert hyp.obj == pytest.approx(0.25)


def _perfect_predictions(targets: torch.Tensor, anchors: torch.Tensor, grids: list[tuple[int, int]],
                         batch: int) -> list[torch.Tensor]:
    """Raw outputs that decode exactly to every assigned target, confident object and right class."""
    outputs = [torch.full((batch, anchors.shape[1], ny, nx, 5 + NUM_CLASSES), -12.0) for ny, nx in grids]
    for raw, level in zip(outputs, assign_targets(targets, anchors, grids), strict=True):
        for k in range(len(level)):
            box, anchor_wh = level.box[k], level.anchor_wh[k]
            cell = raw[level.image[k], level.anchor[k], level.grid_y[k], level.grid_x[k]]
            cell[0:2] = torch.tensor([_logit((v.item() + 0.5) / 2) for v in box[:2]])
            cell[2:4] = torch.tensor(
                [_logit(math.sqrt(box[2 + i].item() / anchor_wh[i].item()) / 2) for i in range(2)]
            )
            cell[4] = 12.0
            cell[5 + level.cls[k]] = 12.0
    return outputs


def test_perfect_prediction_gives_near_zero_loss() -> None:
    anchors = torch.tensor([[[1.0, 1.5], [2.0, 1.0], [3.0, 2.0]], [[1.0, 1.0], [2.0, 2.0], [1.5, 3.0]]])
    grids = [(8, 8), (4, 4)]
    targets = torch.tensor([[0.0, 3.0, 0.3, 0.4, 0.25, 0.3], [1.0, 15.0, 0.7, 0.6, 0.4, 0.3]])
    loss = YoloLoss(anchors, NUM_CLASSES, LossHyp(balance=(4.0, 1.0)).scaled(2, NUM_CLASSES, 640))
    total, parts = loss(_perfect_predictions(targets, anchors, grids, batch=2), targets)
    assert parts[0].item() < 1e-5  # box: 1 - CIoU over exact boxes
    assert total.item() < 1e-3
    # A wrong class at the same boxes costs a clearly positive class loss.
    wrong = targets.clone()
    wrong[:, 1] = torch.tensor([4.0, 16.0])
    _, wrong_parts = loss(_perfect_predictions(targets, anchors, grids, batch=2), wrong)
    assert wrong_parts[2].item() > 100 * parts[2].item()


def test_total_is_batch_times_parts_and_gradients_flow() -> None:
    anchors = torch.tensor([[[1.25, 1.625], [2.0, 3.75], [4.125, 2.875]]] * 3)
    grids = [(8, 8), (4, 4), (2, 2)]
    torch.manual_seed(0)
    preds = [torch.randn(3, 3, ny, nx, 5 + NUM_CLASSES, requires_grad=True) for ny, nx in grids]
    targets = torch.tensor([[0.0, 1.0, 0.5, 0.5, 0.3, 0.4], [2.0, 16.0, 0.2, 0.8, 0.1, 0.1]])
    loss = YoloLoss(anchors, NUM_CLASSES, LossHyp().scaled(3, NUM_CLASSES, 64))
    total, parts = loss(preds, targets)
    assert parts.shape == (3,)
    assert total.item() == pytest.approx(3 * parts.sum().item(), rel=1e-5)
    total.backward()
    for raw in preds:
        assert raw.grad is not None and torch.isfinite(raw.grad).all()
        assert raw.grad[..., 4].abs().sum() > 0  # objectness learns everywhere
    assert preds[0].grad[..., :4].abs().sum() > 0  # box channels learn where targets were assigned
    assert preds[0].grad[1].abs().sum() > 0  # image 1 has no target: only objectness pushes down
    assert preds[0].grad[1, ..., :4].abs().sum() == 0


def test_bad_shapes_raise_typed_errors() -> None:
    loss = YoloLoss(ONE_LEVEL_ANCHORS, NUM_CLASSES, LossHyp(balance=(1.0,)))
    good = [torch.zeros(1, 3, 4, 4, 5 + NUM_CLASSES)]
    with pytest.raises(LossInputError, match="targets must be"):
        loss(good, torch.zeros(2, 5))
    with pytest.raises(LossInputError, match="prediction must be"):
        loss([torch.zeros(1, 3, 4, 4, 5)], torch.zeros(0, 6))
    with pytest.raises(LossInputError, match="levels"):
        loss(good * 2, torch.zeros(0, 6))
    with pytest.raises(LossInputError, match="balance"):
        YoloLoss(ONE_LEVEL_ANCHORS, NUM_CLASSES, LossHyp())
