"""The one image reader: decode + EXIF orientation + YOLOv5's long-side resize, and typed failures."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from smartcash_core.data.images import (
    EXACT_DRAFT,
    UnreadableImage,
    decode_image,
    exif_orientation,
    probe_image,
    resized_size,
)
from smartcash_core.data.resize import resize_area


def _encoded(pixels: np.ndarray, fmt: str = "PNG", exif: Image.Exif | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **({"exif": exif} if exif is not None else {}))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("hw", "expected"),
    [((333, 500), (214, 320)), ((300, 1000), (96, 320)), ((480, 641), (240, 320)), ((100, 80), (320, 256))],
)
def test_decode_rounds_resized_sizes_up_like_yolov5(hw: tuple[int, int], expected: tuple[int, int]) -> None:
    pixels = decode_image(_encoded(np.zeros((*hw, 3), dtype=np.uint8)), 320)
    assert pixels.shape == (*expected, 3) and pixels.dtype == np.uint8
    assert resized_size(hw[1], hw[0], 320) == (expected[1], expected[0])


def test_decode_without_imgsz_keeps_the_size_and_shrinking_uses_area_averaging() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    data = _encoded(pixels)
    np.testing.assert_array_equal(decode_image(data), pixels)
    np.testing.assert_array_equal(decode_image(data, 32), resize_area(pixels, (32, 24)))


def test_decode_applies_exif_orientation_and_the_probe_agrees() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees: a 40x30 file shows as 30x40
    data = _encoded(np.full((30, 40, 3), 200, np.uint8), "JPEG", exif)
    assert decode_image(data).shape == (40, 30, 3)
    assert probe_image(data) == ((40, 30), "")
    with Image.open(io.BytesIO(data)) as image:
        assert exif_orientation(image) == 6


def test_draft_decoding_only_for_big_jpegs() -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    jpeg = _encoded(pixels, "JPEG")
    # 640 px for a 160 px target is 4x: drafted (DCT-scaled to 320 first), close to but not the full decode
    drafted, full = decode_image(jpeg, 160, EXACT_DRAFT), decode_image(jpeg, 160)
    assert drafted.shape == full.shape == (120, 160, 3)
    assert np.abs(drafted.astype(int) - full.astype(int)).mean() < 12
    # 2x is below the exact policy's threshold: bit-identical to the full decode
    np.testing.assert_array_equal(decode_image(jpeg, 320, EXACT_DRAFT), decode_image(jpeg, 320))


def test_unreadable_sources_raise_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(UnreadableImage, match="not a readable image"):
        decode_image(b"this is not an image")
    with pytest.raises(UnreadableImage, match="not a readable image"):
        decode_image(tmp_path / "missing.jpg")
    noisy = np.random.default_rng(2).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    jpeg = _encoded(noisy, "JPEG")
    with pytest.raises(UnreadableImage, match="cannot decode"):  # header fine, scan data cut short
        decode_image(jpeg[: len(jpeg) // 2])
