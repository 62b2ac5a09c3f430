"""The one image reader: decode + EXIF orientation + YOLOv5's long-side resize (OpenCV, as YOLOv5's
``load_image``: ``cv2.imread`` then ``cv2.resize``), the opt-in DCT-scaled fast path, and typed failures."""

from __future__ import annotations

import io
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from smartcash_core.data.images import (
    EXACT_DRAFT,
    FAST_DRAFT,
    DraftPolicy,
    UnreadableImage,
    decode_image,
    exif_orientation,
    probe_image,
    resized_size,
)


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


def _yolov5_load_image(path: Path, imgsz: int) -> np.ndarray:
    """YOLOv5 7.0 ``LoadImagesAndLabels.load_image`` (val: no augmentation), as RGB."""
    image = cv2.imread(str(path))
    h0, w0 = image.shape[:2]
    ratio = imgsz / max(h0, w0)
    if ratio != 1:
        interpolation = cv2.INTER_LINEAR if ratio > 1 else cv2.INTER_AREA
        image = cv2.resize(image, (math.ceil(w0 * ratio), math.ceil(h0 * ratio)), interpolation=interpolation)
    return image[:, :, ::-1]


def _scene(height: int, width: int, seed: int) -> np.ndarray:
    """A photo-like image (smooth gradients plus noise), so JPEG and the resize have real work to do."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], axis=2)
    return np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    ("hw", "imgsz"), [((960, 1280), 640), ((750, 1000), 320), ((481, 643), 320), ((80, 100), 320)]
)
def test_decode_is_yolov5_load_image_bit_for_bit(tmp_path: Path, hw: tuple[int, int], imgsz: int) -> None:
    """Shrinking by integer and fractional factors (INTER_AREA) and enlarging (INTER_LINEAR)."""
    path = tmp_path / "scene.jpg"
    Image.fromarray(_scene(*hw, seed=sum(hw))).save(path, quality=90)
    expected = _yolov5_load_image(path, imgsz)
    np.testing.assert_array_equal(decode_image(path, imgsz), expected)
    np.testing.assert_array_equal(decode_image(path.read_bytes(), imgsz), expected)  # uploads: from bytes
    np.testing.assert_array_equal(decode_image(path, imgsz, EXACT_DRAFT), expected)


def test_decode_without_imgsz_keeps_the_size_and_every_png_mode_becomes_rgb() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    np.testing.assert_array_equal(decode_image(_encoded(pixels)), pixels)
    grey = pixels[:, :, 0]
    np.testing.assert_array_equal(decode_image(_encoded(grey)), np.repeat(grey[:, :, None], 3, axis=2))
    rgba = np.dstack([pixels, np.full((48, 64), 7, np.uint8)])
    np.testing.assert_array_equal(decode_image(_encoded(rgba)), pixels)  # alpha dropped, as cv2.imread
    deep = (np.arange(48 * 64, dtype=np.uint16).reshape(48, 64) * 21).astype(np.uint16)
    decoded = decode_image(_encoded(deep))  # 16-bit grey: scaled to 8 bits like cv2.imread (not clipped)
    np.testing.assert_array_equal(decoded[:, :, 1], (deep >> 8).astype(np.uint8))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_decode_applies_every_exif_orientation_and_the_probe_agrees(
    tmp_path: Path, fmt: str, orientation: int
) -> None:
    """Upright like ``cv2.imread`` (YOLOv5) and like PIL's ``exif_transpose`` (this reader before OpenCV)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    pixels = np.kron(np.random.default_rng(3).integers(0, 256, (6, 8, 3), dtype=np.uint8), np.ones((8, 8, 1)))
    data = _encoded(pixels.astype(np.uint8), fmt, exif)
    with Image.open(io.BytesIO(data)) as image:
        assert exif_orientation(image) == orientation
        upright = np.asarray(ImageOps.exif_transpose(image.convert("RGB")))
    decoded = decode_image(data)
    np.testing.assert_array_equal(decoded, upright)
    assert probe_image(data) == (decoded.shape[:2], "")
    path = tmp_path / f"rotated.{fmt.lower()}"
    path.write_bytes(data)
    np.testing.assert_array_equal(decoded, cv2.imread(str(path))[:, :, ::-1])
    assert decode_image(data, 32).shape[:2] == tuple(reversed(resized_size(*decoded.shape[1::-1], 32)))


def test_fast_decode_scales_big_jpegs_while_decoding_and_exact_never_does() -> None:
    jpeg = _encoded(_scene(480, 640, seed=1), "JPEG")
    full = decode_image(jpeg)
    exact = decode_image(jpeg, 160)  # 4x: a full decode and INTER_AREA, whatever the size
    np.testing.assert_array_equal(exact, cv2.resize(full, (160, 120), interpolation=cv2.INTER_AREA))
    fast = decode_image(jpeg, 160, FAST_DRAFT)  # 1/4 DCT scaling straight to 160x120: close, not equal
    assert fast.shape == exact.shape and not np.array_equal(fast, exact)
    assert np.abs(fast.astype(int) - exact.astype(int)).mean() < 6
    halved = decode_image(jpeg, 160, DraftPolicy(min_factor=4, keep_factor=2))  # 1/2, then INTER_AREA
    assert halved.shape == exact.shape and np.abs(halved.astype(int) - exact.astype(int)).mean() < 6
    # below the policy's threshold (under 2x the target): the full decode, bit for bit
    np.testing.assert_array_equal(decode_image(jpeg, 400, FAST_DRAFT), decode_image(jpeg, 400))
    png = _encoded(_scene(480, 640, seed=1))  # only JPEGs scale while decoding
    np.testing.assert_array_equal(decode_image(png, 160, FAST_DRAFT), decode_image(png, 160))


def test_unreadable_sources_raise_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(UnreadableImage, match="not a readable image"):
        decode_image(b"this is not an image")
    with pytest.raises(UnreadableImage, match="not a readable image"):
        decode_image(b"")
    with pytest.raises(UnreadableImage, match="not a readable image"):
        decode_image(tmp_path / "missing.jpg")
    with pytest.raises(UnreadableImage, match="not a readable image"):
        decode_image(tmp_path)  # a directory
    noisy = np.random.default_rng(2).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    jpeg = _encoded(noisy, "JPEG")
    with pytest.raises(UnreadableImage, match="cannot decode"):  # header fine, scan data cut short
        decode_image(jpeg[: len(jpeg) // 2])
    png = _encoded(noisy)
    with pytest.raises(UnreadableImage, match="cannot decode"):  # PNG header fine, pixel data cut short
        decode_image(png[: len(png) // 2])
