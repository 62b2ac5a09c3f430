"""Frozen copy of the image decoding before OpenCV (commit 4d87e18), for ``bench_decode.py`` only.

PIL decodes (draft mode for the DCT-scaled paths), ``ImageOps.exif_transpose`` uprights, and a numpy port of
cv2's INTER_AREA / INTER_LINEAR resizes. Not imported by the library or the tests; do not edit: it is the
baseline the new reader is measured against.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps

CV_RESIZE_COEF_BITS = 11
CV_RESIZE_COEF_SCALE = 1 << CV_RESIZE_COEF_BITS


def _as_hwc(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"expected a uint8 [H, W] or [H, W, C] image, got {image.dtype} {image.shape}")
    return image[:, :, None] if image.ndim == 2 else image


def _linear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """cv2 INTER_LINEAR source indices ``[out, 2]`` and 11-bit integer weights ``[out, 2]`` for one axis."""
    scale = 1.0 / (out_size / in_size)  # cv2 computes scale as 1 / inv_scale
    source = (np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5
    left = np.floor(source)
    fraction = source - left
    left = left.astype(np.int64)
    before, after = left < 0, left >= in_size - 1
    fraction[before | after] = 0.0
    left[before] = 0
    left[after] = in_size - 1
    right = np.minimum(left + 1, in_size - 1)
    weight_left = np.rint((1.0 - fraction) * CV_RESIZE_COEF_SCALE).astype(np.int32)
    weights = np.stack([weight_left, CV_RESIZE_COEF_SCALE - weight_left], axis=1)
    return np.stack([left, right], axis=1), weights


def _channel_columns(index: np.ndarray, channels: int) -> np.ndarray:
    """Pixel column indices ``[out]`` -> element columns of a ``[H, W * C]`` view ``[out * C]``."""
    return (index[:, None] * channels + np.arange(channels)[None, :]).reshape(-1)


def resize_linear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a uint8 ``[H, W, C]`` (or ``[H, W]``) image to ``size = (width, height)``.

    Horizontal pass: ``S = p0*cx0 + p1*cx1`` with 11-bit weights; vertical pass as cv2's SIMD code:
    ``((cy0*(S0>>4))>>16 + (cy1*(S1>>4))>>16 + 2) >> 2``.
    """
    hwc = _as_hwc(image)
    in_height, in_width, channels = hwc.shape
    width, height = size
    x_index, x_weight = _linear_taps(in_width, width)
    y_index, y_weight = _linear_taps(in_height, height)
    # Only the source rows that some output row reads go through the horizontal pass.
    needed_rows, y_slot = np.unique(y_index, return_inverse=True)
    flat = hwc.reshape(in_height, in_width * channels)[needed_rows]
    rows = np.zeros((len(needed_rows), width * channels), dtype=np.int32)
    for tap in range(2):
        weight = np.repeat(x_weight[:, tap], channels)
        rows += flat[:, _channel_columns(x_index[:, tap], channels)] * weight
    rows >>= 4
    y_slot = y_slot.reshape(y_index.shape)
    out = np.full((height, width * channels), 2, dtype=np.int32)
    for tap in range(2):
        term = rows[y_slot[:, tap]] * y_weight[:, tap, None]
        term >>= 16
        out += term
    out >>= 2
    result = np.clip(out, 0, 255).astype(np.uint8).reshape(height, width, channels)
    return result if image.ndim == 3 else result[:, :, 0]


def _area_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Source indices ``[out, k]`` and pixel-coverage weights ``[out, k]`` (rows sum to 1) for shrinking."""
    scale = in_size / out_size
    taps = math.ceil(scale) + 1
    starts = np.arange(out_size, dtype=np.float64) * scale
    ends = np.minimum(starts + scale, in_size)
    index = np.floor(starts).astype(np.int64)[:, None] + np.arange(taps)[None, :]
    covered = np.minimum(index + 1, ends[:, None]) - np.maximum(index, starts[:, None])
    weights = np.clip(covered, 0.0, None)
    weights /= weights.sum(axis=1, keepdims=True)
    return np.minimum(index, in_size - 1), weights


def resize_area(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Area-average shrink of a uint8 ``[H, W, C]`` (or ``[H, W]``) image to ``size = (width, height)``.

    Enlarging falls back to :func:`resize_linear` (cv2's INTER_AREA enlargement is a bilinear variant).
    """
    hwc = _as_hwc(image)
    width, height = size
    in_height, in_width = hwc.shape[:2]
    if width > in_width or height > in_height:
        return resize_linear(image, size)
    if in_width % width == 0 and in_height % height == 0:
        out = _block_mean(hwc, in_width // width, in_height // height)
    else:
        out = _area_resample(hwc, width, height)
    return out if image.ndim == 3 else out[:, :, 0]


def _block_mean(image: np.ndarray, factor_x: int, factor_y: int) -> np.ndarray:
    """Integer-factor area shrink with cv2's rounding: its 2x2 kernel rounds half up
    (``(sum + 2) >> 2``), every other factor rounds ``sum / n`` half to even (``cvRound``)."""
    height, width, channels = image.shape
    column_sums = np.zeros((height // factor_y, width, channels), dtype=np.uint32)
    for dy in range(factor_y):
        column_sums += image[dy::factor_y]
    sums = np.zeros((height // factor_y, width // factor_x, channels), dtype=np.uint32)
    for dx in range(factor_x):
        sums += column_sums[:, dx::factor_x]
    if factor_x == factor_y == 2:
        return ((sums + 2) >> 2).astype(np.uint8)
    return np.rint(sums / (factor_x * factor_y)).astype(np.uint8)


def _area_resample(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Fractional-factor area shrink: one weighted pass per tap and axis, float32 like cv2's buffers."""
    in_height, in_width, channels = image.shape
    x_index, x_weight = _area_taps(in_width, width)
    y_index, y_weight = _area_taps(in_height, height)
    flat = image.reshape(in_height, in_width * channels)
    rows = np.zeros((in_height, width * channels), dtype=np.float32)
    for tap in range(x_index.shape[1]):
        weight = np.repeat(x_weight[:, tap], channels).astype(np.float32)
        rows += flat[:, _channel_columns(x_index[:, tap], channels)] * weight
    out = np.zeros((height, width * channels), dtype=np.float32)
    for tap in range(y_index.shape[1]):
        out += rows[y_index[:, tap]] * y_weight[:, tap, None].astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(height, width, channels)


class DraftPolicy(NamedTuple):
    min_factor: int
    keep_factor: int


OLD_EXACT_DRAFT = DraftPolicy(min_factor=4, keep_factor=2)  # drafted from 4x: not bit-exact there
OLD_FAST_DRAFT = DraftPolicy(min_factor=2, keep_factor=1)
_TRANSPOSED = frozenset({5, 6, 7, 8})


def old_decode_image(
    source: Path | bytes, imgsz: int | None = None, draft: DraftPolicy | None = None
) -> np.ndarray:
    """The old ``decode_image``: PIL decode (+ draft), EXIF transpose, numpy cv2-style resize."""
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
        orientation = int(image.getexif().get(0x0112, 1))
        swapped = orientation in _TRANSPOSED
        raw_w, raw_h = image.size
        shown_w, shown_h = (raw_h, raw_w) if swapped else (raw_w, raw_h)
        target = _resized_size(shown_w, shown_h, imgsz) if imgsz is not None else (shown_w, shown_h)
        if draft is not None and image.format == "JPEG" and shown_w >= draft.min_factor * target[0]:
            keep_w, keep_h = draft.keep_factor * target[0], draft.keep_factor * target[1]
            image.draft("RGB", (keep_h, keep_w) if swapped else (keep_w, keep_h))
        rgb = image.convert("RGB")
    if orientation != 1:
        rgb = ImageOps.exif_transpose(rgb)
    pixels = np.asarray(rgb)
    if rgb.size != target:
        shrinking = target[0] < rgb.size[0]
        pixels = (resize_area if shrinking else resize_linear)(pixels, target)
    return pixels


def _resized_size(width: int, height: int, imgsz: int) -> tuple[int, int]:
    ratio = imgsz / max(width, height)
    if ratio == 1:
        return width, height
    return math.ceil(width * ratio), math.ceil(height * ratio)
