"""The one letterbox: YOLOv5's val geometry bit for bit, the trainer's squares unchanged, the way back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from smartcash_core.data.images import decode_image, resized_size
from smartcash_core.data.letterbox import (
    PAD_VALUE,
    Placement,
    labels_to_letterbox,
    letterbox_into,
    rect_batch_shapes,
)
from smartcash_core.data.loader import BatchPlan, ImageRef, load_batch
from smartcash_core.ops.boxes import scale_boxes_to_original
from tests.geometry_reference import trainer_letterbox_square, yolov5_letterbox

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"


def _reference_letterbox() -> np.ndarray:
    return np.asarray(Image.open(FIXTURES / "n5_00000_yolov5_letterbox320.png").convert("RGB"))


def _chw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image.transpose(2, 0, 1).copy())


def _letterboxed(
    image: np.ndarray, slot_hw: tuple[int, int], scaleup: bool = False
) -> tuple[np.ndarray, Placement]:
    slot = torch.full((3, *slot_hw), PAD_VALUE, dtype=torch.uint8)
    placed = letterbox_into(slot, _chw(image), scaleup=scaleup)
    return slot.permute(1, 2, 0).numpy(), placed


# ---------------------------------------------------------------------------------------------- YOLOv5 parity


def test_the_reference_port_reproduces_yolov5_on_the_fixture_bit_for_bit() -> None:
    image = decode_image(FIXTURES / "n5_00000.jpg")
    out, ratio, pad = yolov5_letterbox(image, 320, auto=True)
    assert ratio == (0.5, 0.5) and pad == (0.0, 8.0)
    np.testing.assert_array_equal(out, _reference_letterbox())


def test_the_pass_reproduces_yolov5_val_on_the_fixture_bit_for_bit() -> None:
    """What the pass really runs: the loader decodes and resizes (cv2 INTER_AREA), the letterbox pads."""
    data = (FIXTURES / "n5_00000.jpg").read_bytes()
    ref = ImageRef(0, "n5_00000.jpg", data=data, width=640, height=480)
    batch = load_batch(BatchPlan((ref,), (256, 320)), imgsz=320)
    assert batch.metas[0].gain == 0.5 and batch.metas[0].pad == (0.0, 8.0)
    np.testing.assert_array_equal(batch.images[0].permute(1, 2, 0).numpy(), _reference_letterbox())


@pytest.mark.parametrize(
    ("image_hw", "slot_hw"), [((103, 200), (128, 224)), ((240, 320), (256, 352)), ((77, 51), (96, 64))]
)
def test_padding_only_matches_yolov5_letterbox_also_for_odd_padding(
    image_hw: tuple[int, int], slot_hw: tuple[int, int]
) -> None:
    image = np.random.default_rng(sum(image_hw)).integers(0, 256, (*image_hw, 3), dtype=np.uint8)
    ours, placed = _letterboxed(image, slot_hw)
    theirs, _, (dw, dh) = yolov5_letterbox(image, slot_hw, auto=False, scaleup=False)
    np.testing.assert_array_equal(ours, theirs)
    assert placed == (1.0, (dw, dh), (round(dw - 0.1), round(dh - 0.1)))


# ---------------------------------------------------------------------------------------------- the trainer


@pytest.mark.parametrize("size_wh", [(200, 100), (640, 480), (31, 57), (50, 50), (333, 77), (1000, 999)])
def test_scaleup_reproduces_the_trainers_squares_the_demo_model_learned_on(size_wh: tuple[int, int]) -> None:
    rng = np.random.default_rng(size_wh[0])
    image = rng.integers(0, 256, (size_wh[1], size_wh[0], 3), dtype=np.uint8)
    ours, placed = _letterboxed(image, (64, 64), scaleup=True)
    before, scale, offset = trainer_letterbox_square(Image.fromarray(image), 64)
    np.testing.assert_array_equal(ours, before)
    assert placed.scale == scale and placed.offset == offset


def test_scaleup_keeps_aspect_and_centres() -> None:
    image = np.full((100, 200, 3), (10, 20, 30), dtype=np.uint8)
    square, placed = _letterboxed(image, (64, 64), scaleup=True)
    assert placed == (0.32, (0.0, 16.0), (0, 16))
    assert (square[16:48] == (10, 20, 30)).all()
    assert (square[:16] == PAD_VALUE).all() and (square[48:] == PAD_VALUE).all()


def test_without_scaleup_a_too_big_image_is_shrunk_and_a_small_one_only_padded() -> None:
    big = np.zeros((100, 200, 3), np.uint8)
    _, placed = _letterboxed(big, (64, 64))
    assert placed.scale == 0.32
    small = np.zeros((10, 20, 3), np.uint8)
    out, placed = _letterboxed(small, (64, 64))
    assert placed == (1.0, (22.0, 27.0), (22, 27)) and (out[27:37, 22:42] == 0).all()


# ---------------------------------------------------------------------------------------------- rect batches


def test_rect_batch_shapes_hand_computed() -> None:
    shapes_wh = np.array([[640, 480], [480, 640], [640, 640], [640, 320]])
    order, batch_shapes = rect_batch_shapes(shapes_wh, batch_size=2, imgsz=320, stride=32, pad=0.5)
    # aspect h/w = 0.75, 1.333, 1.0, 0.5 -> sorted [3, 0, 2, 1].
    assert order.tolist() == [3, 0, 2, 1]
    # batch 0: max aspect 0.75 < 1 -> ceil([7.5, 10] + 0.5) * 32; batch 1 spans 1.0 -> square.
    assert batch_shapes.tolist() == [[256, 352], [352, 352]]
    _, unpadded = rect_batch_shapes(shapes_wh, batch_size=2, imgsz=320, stride=32, pad=0.0)
    assert unpadded.tolist() == [[256, 320], [320, 320]]  # ceil(7.5) = 8 strides even without pad


def test_rect_batch_shapes_tall_batch_and_ragged_last_batch() -> None:
    shapes_wh = np.array([[480, 640], [300, 600], [640, 480]])
    order, batch_shapes = rect_batch_shapes(shapes_wh, batch_size=2, imgsz=320, stride=32)
    assert order.tolist() == [2, 0, 1]
    # batch 0 = aspects {0.75, 1.333}: square; batch 1 = {2.0}: min > 1 -> [1, 0.5] -> [352, 192].
    assert batch_shapes.tolist() == [[352, 352], [352, 192]]


def test_rect_batch_shapes_empty_and_invalid() -> None:
    order, batch_shapes = rect_batch_shapes(np.zeros((0, 2)), 4, 320, 32)
    assert order.shape == (0,) and batch_shapes.shape == (0, 2)
    with pytest.raises(ValueError, match="positive"):
        rect_batch_shapes(np.ones((2, 2)), 0, 320, 32)


def test_every_image_fits_its_rect_batch_shape_after_the_resize() -> None:
    rng = np.random.default_rng(1)
    shapes_wh = rng.integers(50, 900, size=(40, 2))
    order, batch_shapes = rect_batch_shapes(shapes_wh, batch_size=8, imgsz=320, stride=32)
    for position, image_index in enumerate(order):
        width, height = (int(side) for side in shapes_wh[image_index])
        resized_w, resized_h = resized_size(width, height, 320)
        batch_hw = batch_shapes[position // 8]
        assert resized_h <= batch_hw[0] and resized_w <= batch_hw[1]
        assert batch_hw[0] % 32 == 0 and batch_hw[1] % 32 == 0


# ---------------------------------------------------------------------------------------- boxes and labels


@pytest.mark.parametrize("original_hw", [(480, 640), (103, 200), (333, 500), (100, 50)])
def test_boxes_map_back_through_the_recorded_gain_and_padding(original_hw: tuple[int, int]) -> None:
    """The pass's way: resize the long side to 320, pad into the rect shape, record gain and ``pad``."""
    height, width = original_hw
    resized_w, resized_h = resized_size(width, height, 320)
    _, (slot_hw,) = rect_batch_shapes(np.array([[width, height]]), 1, 320, 32)
    resized = np.zeros((resized_h, resized_w, 3), np.uint8)
    _, placed = _letterboxed(resized, (int(slot_hw[0]), int(slot_hw[1])))
    gain = placed.scale * resized_h / height
    pad_w, pad_h = placed.pad
    boxes = torch.tensor([[0, 0, width, height], [width * 0.1, height * 0.2, width * 0.6, height * 0.9]])
    forward = boxes * gain + torch.tensor([pad_w, pad_h, pad_w, pad_h])
    back = scale_boxes_to_original(forward, gain, (pad_w, pad_h), original_hw)
    torch.testing.assert_close(back, boxes.float(), atol=1e-3, rtol=0)
    widened = forward + torch.tensor([-50.0, -50.0, 50.0, 50.0])
    beyond = scale_boxes_to_original(widened, gain, placed.pad, original_hw)
    assert beyond[0].tolist() == [0.0, 0.0, float(width), float(height)]  # clipped to the image


def test_labels_follow_gain_and_padding_into_the_letterboxed_input() -> None:
    labels = np.array([[3, 0.5, 0.5, 0.25, 0.5]], dtype=np.float32)  # 640x480 image, gain 0.5, 8 px top pad
    placed = labels_to_letterbox(labels, (640, 480), 0.5, (0.0, 8.0), (320, 256))
    assert placed.dtype == np.float32
    np.testing.assert_allclose(placed, [[3, 0.5, (120 + 8) / 256, 0.25, 120 / 256]], rtol=1e-7)
    assert labels_to_letterbox(np.zeros((0, 5)), (640, 480), 0.5, (0.0, 8.0), (320, 256)).shape == (0, 5)
