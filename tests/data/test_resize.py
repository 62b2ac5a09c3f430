"""cv2-faithful resampling: hand-computed fixed-point values and cv2's rounding rules."""

from __future__ import annotations

import numpy as np
import pytest

from smartcash_core.data.resize import resize_area, resize_linear


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


def test_area_resize_enlarging_falls_back_to_linear_and_non_uint8_is_refused() -> None:
    image = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.testing.assert_array_equal(resize_area(image, (8, 6)), resize_linear(image, (8, 6)))
    with pytest.raises(ValueError, match="uint8"):
        resize_linear(np.zeros((10, 10, 3), np.float32), (5, 5))
