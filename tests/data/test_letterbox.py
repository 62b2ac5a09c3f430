"""YOLOv5 image geometry: resize, letterbox, rect batches and the inverse box mapping."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from smartcash_core.data.letterbox import (
    clip_boxes,
    decode_image,
    letterbox,
    load_resized,
    rect_batch_shapes,
    resize_area,
    resize_linear,
    scale_boxes,
    xywhn2xyxy,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"


def _reference_letterbox() -> np.ndarray:
    return np.asarray(Image.open(FIXTURES / "n5_00000_yolov5_letterbox320.png").convert("RGB"))


# ---------------------------------------------------------------------------------------------- resampling


def test_linear_resize_matches_hand_computed_cv2_fixed_point_values() -> None:
    # 1x2 -> 1x4: source positions -0.25, 0.25, 0.75, 1.25 (edges clamp) -> 0, 63.75, 191.25, 255.
    image = np.array([[[0], [255]]], dtype=np.uint8)
    assert resize_linear(image, (4, 1))[0, :, 0].tolist() == [0, 64, 191, 255]


def test_area_resize_rounding_follows_cv2() -> None:
    two_by_two = np.array([[1, 2, 0, 0], [2, 2, 1, 1]], dtype=np.uint8)
    # 2x2 blocks round half up: 7/4 = 1.75 -> 2, 2/4 = 0.5 -> 1.
    assert resize_area(two_by_two, (2, 1)).tolist() == [[2, 1]]
    four = np.zeros((4, 8), dtype=np.uint8)
    four[0, :2], four[0, 4:7] = 4, 8  # block sums 8 and 24: 0.5 -> 0 and 1.5 -> 2 (half to even)
    assert resize_area(four, (2, 1)).tolist() == [[0, 2]]
    # 3 -> 2 (factor 1.5): out0 = (0 + 0.5*30) / 1.5 = 10, out1 = (0.5*30 + 60) / 1.5 = 50.
    assert resize_area(np.array([[0, 30, 60]], dtype=np.uint8), (2, 1)).tolist() == [[10, 50]]


@pytest.mark.parametrize("size", [(17, 11), (64, 48), (100, 75), (33, 90)])
def test_constant_images_stay_constant(size: tuple[int, int]) -> None:
    image = np.full((48, 64, 3), 77, dtype=np.uint8)
    assert np.all(resize_linear(image, size) == 77)
    assert np.all(resize_area(image, (min(size[0], 64), min(size[1], 48))) == 77)


def test_letterbox_reproduces_yolov5_on_the_reference_image_bit_for_bit() -> None:
    image = decode_image(FIXTURES / "n5_00000.jpg")
    out, ratio, pad = letterbox(image, 320, auto=True)
    assert ratio == (0.5, 0.5) and pad == (0.0, 8.0)
    np.testing.assert_array_equal(out, _reference_letterbox())


def test_val_path_load_resized_then_pad_matches_yolov5() -> None:
    data = (FIXTURES / "n5_00000.jpg").read_bytes()
    resized, original, new = load_resized(data, 320)
    assert (original, new) == ((480, 640), (240, 320))
    out, ratio, pad = letterbox(resized, (256, 320), auto=False, scaleup=False)
    assert ratio == (1.0, 1.0) and pad == (0.0, 8.0)
    np.testing.assert_array_equal(out, _reference_letterbox())


# ---------------------------------------------------------------------------------------------- letterbox


def test_letterbox_fixed_shape_with_odd_padding() -> None:
    image = np.full((103, 200, 3), 7, dtype=np.uint8)
    out, ratio, (dw, dh) = letterbox(image, 320, auto=False)
    # r = 1.6 -> 320 x round(164.8) = 165 rows; dh = 155 / 2 = 77.5 -> 77 rows on top, 78 below.
    assert out.shape == (320, 320, 3) and ratio == (1.6, 1.6) and (dw, dh) == (0.0, 77.5)
    assert np.all(out[:77] == 114) and np.all(out[77 + 165 :] == 114)
    assert np.all(out[77 : 77 + 165] == 7)


def test_letterbox_auto_pads_to_the_stride_multiple_only() -> None:
    image = np.zeros((103, 200, 3), dtype=np.uint8)
    out, _, (dw, dh) = letterbox(image, 320, auto=True, stride=32)
    assert out.shape == (192, 320, 3)  # 165 + (155 mod 32 = 27)
    assert (dw, dh) == (0.0, 13.5)
    assert np.all(out[:13] == 114) and np.all(out[13 + 165 :] == 114) and np.all(out[13:178] == 0)


def test_letterbox_without_scaleup_only_pads() -> None:
    image = np.arange(100 * 50 * 3, dtype=np.uint64).reshape(100, 50, 3).astype(np.uint8)
    out, ratio, (dw, dh) = letterbox(image, 320, auto=False, scaleup=False)
    assert ratio == (1.0, 1.0) and (dw, dh) == (135.0, 110.0)
    np.testing.assert_array_equal(out[110:210, 135:185], image)


def test_letterbox_scale_fill_stretches() -> None:
    out, ratio, pad = letterbox(np.zeros((100, 200, 3), np.uint8), 320, auto=False, scale_fill=True)
    assert out.shape == (320, 320, 3) and ratio == (1.6, 3.2) and pad == (0.0, 0.0)


def test_letterbox_pads_with_a_colour_tuple_and_keeps_2d_inputs() -> None:
    out, _, _ = letterbox(
        np.zeros((10, 20, 3), np.uint8), (40, 40), color=(1, 2, 3), auto=False, scaleup=False
    )
    assert out[0, 0].tolist() == [1, 2, 3]
    gray, _, _ = letterbox(np.zeros((10, 20), np.uint8), (40, 40), auto=False, scaleup=False)
    assert gray.shape == (40, 40)


def test_letterbox_rejects_non_uint8() -> None:
    with pytest.raises(ValueError, match="uint8"):
        letterbox(np.zeros((10, 10, 3), np.float32))


# ---------------------------------------------------------------------------------------------- load_resized


@pytest.mark.parametrize(
    ("hw", "expected"),
    [((333, 500), (214, 320)), ((300, 1000), (96, 320)), ((480, 641), (240, 320)), ((100, 80), (320, 256))],
)
def test_load_resized_rounds_sizes_up_like_yolov5(hw: tuple[int, int], expected: tuple[int, int]) -> None:
    image = np.zeros((*hw, 3), dtype=np.uint8)
    resized, original, new = load_resized(image, 320)
    assert original == hw and new == expected and resized.shape == (*expected, 3)


def test_decode_applies_exif_orientation() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(buffer, format="JPEG", exif=exif)
    assert decode_image(buffer.getvalue()).shape == (40, 30, 3)


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


def test_every_image_fits_its_rect_batch_shape_after_load_resized() -> None:
    rng = np.random.default_rng(1)
    shapes_wh = rng.integers(50, 900, size=(40, 2))
    order, batch_shapes = rect_batch_shapes(shapes_wh, batch_size=8, imgsz=320, stride=32)
    for position, image_index in enumerate(order):
        w0, h0 = shapes_wh[image_index]
        ratio = 320 / max(w0, h0)
        resized_hw = (int(np.ceil(h0 * ratio)), int(np.ceil(w0 * ratio)))
        batch_hw = batch_shapes[position // 8]
        assert resized_hw[0] <= batch_hw[0] and resized_hw[1] <= batch_hw[1]
        assert batch_hw[0] % 32 == 0 and batch_hw[1] % 32 == 0


# ---------------------------------------------------------------------------------------------- boxes


def test_xywhn2xyxy_hand_computed() -> None:
    boxes = np.array([[0.5, 0.5, 0.2, 0.4]])
    np.testing.assert_allclose(xywhn2xyxy(boxes, 100, 50, padw=3, padh=4), [[43, 19, 63, 39]])
    tensor = xywhn2xyxy(torch.tensor([[0.5, 0.5, 1.0, 1.0]]), 10, 20)
    assert isinstance(tensor, torch.Tensor) and tensor.tolist() == [[0.0, 0.0, 10.0, 20.0]]


@pytest.mark.parametrize("original_hw", [(480, 640), (103, 200), (333, 500), (100, 50)])
def test_scale_boxes_inverts_letterbox(original_hw: tuple[int, int]) -> None:
    image = np.zeros((*original_hw, 3), dtype=np.uint8)
    out, (ratio, _), (dw, dh) = letterbox(image, 320, auto=True)
    height, width = original_hw
    boxes = np.array([[0, 0, width, height], [width * 0.1, height * 0.2, width * 0.6, height * 0.9]])
    forward = boxes * ratio + np.array([dw, dh, dw, dh])
    back = scale_boxes(out.shape[:2], forward, original_hw)
    np.testing.assert_allclose(back, boxes, atol=0.5 / ratio + 1e-6)
    exact = scale_boxes(out.shape[:2], forward, original_hw, ratio_pad=((ratio, ratio), (dw, dh)))
    np.testing.assert_allclose(exact, boxes, atol=1e-9)
    np.testing.assert_allclose(forward, boxes * ratio + np.array([dw, dh, dw, dh]))  # input untouched


def test_scale_boxes_clips_and_accepts_tensors() -> None:
    boxes = torch.tensor([[-20.0, -5.0, 400.0, 300.0]])
    back = scale_boxes((256, 320), boxes, (480, 640), ratio_pad=((0.5, 0.5), (0.0, 8.0)))
    assert isinstance(back, torch.Tensor) and back.tolist() == [[0.0, 0.0, 640.0, 480.0]]
    assert boxes.tolist() == [[-20.0, -5.0, 400.0, 300.0]]


def test_clip_boxes_numpy_in_place() -> None:
    boxes = np.array([[-1.0, 5.0, 12.0, 30.0]])
    clip_boxes(boxes, (20, 10))
    assert boxes.tolist() == [[0.0, 5.0, 10.0, 20.0]]


def test_labels_follow_gain_and_padding_into_the_letterboxed_input() -> None:
    from smartcash_core.data.letterbox import labels_to_letterbox

    labels = np.array([[3, 0.5, 0.5, 0.25, 0.5]], dtype=np.float32)  # 640x480 image, gain 0.5, 8 px top pad
    placed = labels_to_letterbox(labels, (640, 480), 0.5, (0.0, 8.0), (320, 256))
    assert placed.dtype == np.float32
    np.testing.assert_allclose(placed, [[3, 0.5, (120 + 8) / 256, 0.25, 120 / 256]], rtol=1e-7)
    assert labels_to_letterbox(np.zeros((0, 5)), (640, 480), 0.5, (0.0, 8.0), (320, 256)).shape == (0, 5)
