"""YOLOv5 image geometry without OpenCV: resize, letterbox, rectangular val batches, and the way back.

Resampling follows OpenCV because YOLOv5 uses it, and cv2 is not a dependency here:

- :func:`resize_linear` reproduces ``cv2.resize(..., INTER_LINEAR)`` on uint8 images, including its 11-bit
  fixed-point weights and the rounding of its SIMD vertical pass (half-pixel centres, edges clamped). On
  the YOLOv5 reference fixture (640x480 -> 320x240) it matches cv2 bit for bit; against OpenCV 5.0 at
  other scales at most 0.2% of the values differ, each by one grey level (cv2 mixes SIMD and scalar code
  paths; enlarging differs mainly in the first and last rows).
- :func:`resize_area` is ``cv2.INTER_AREA`` for shrinking: exact pixel-area weights. Integer factors use
  cv2's rounding (bit-exact in the cases checked); other factors accumulate in float32 and round
  half to even like ``cvRound`` from float32 sums, so a few pixels may differ by one grey level.

YOLOv5's val path is ``load_image`` (long side to ``imgsz``, ``math.ceil`` of the scaled size, INTER_AREA
when shrinking, INTER_LINEAR when enlarging or augmenting) and then ``letterbox(shape, auto=False,
scaleup=False)`` into the batch's rectangular shape, which only pads. :func:`load_resized` and
:func:`letterbox` do the same, on RGB arrays (YOLOv5 keeps BGR until the end; pixel values are equal).
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image, ImageOps

PAD_VALUE = 114
CV_RESIZE_COEF_BITS = 11
CV_RESIZE_COEF_SCALE = 1 << CV_RESIZE_COEF_BITS

BoxArray = TypeVar("BoxArray")  # np.ndarray or torch.Tensor: the helpers below keep the caller's type


# ----------------------------------------------------------------------------------------------------------
# Resampling
# ----------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------
# Letterbox and load
# ----------------------------------------------------------------------------------------------------------


def letterbox(
    image: np.ndarray,
    new_shape: int | tuple[int, int] = 640,
    color: int | tuple[int, int, int] = PAD_VALUE,
    auto: bool = True,
    scale_fill: bool = False,
    scaleup: bool = True,
    stride: int = 32,
) -> tuple[np.ndarray, tuple[float, float], tuple[float, float]]:
    """Resize keeping the aspect ratio and pad, exactly as YOLOv5's ``letterbox``.

    ``image``: uint8 ``[H, W, C]``; ``new_shape``: ``(height, width)`` or one int for a square.
    ``auto``: pad only up to the next multiple of ``stride`` (minimum rectangle); else pad to ``new_shape``.
    ``scaleup=False`` never enlarges (val). Returns ``(image, (ratio_w, ratio_h), (dw, dh))`` where
    ``dw``/``dh``: padding per side as floats (left = ``round(dw - 0.1)``, right = ``round(dw + 0.1)``).
    """
    hwc = _as_hwc(image)
    height, width = hwc.shape[:2]
    target_h, target_w = (new_shape, new_shape) if isinstance(new_shape, int) else new_shape
    ratio = min(target_h / height, target_w / width)
    if not scaleup:
        ratio = min(ratio, 1.0)
    ratios = (ratio, ratio)
    new_unpad = (round(width * ratio), round(height * ratio))
    dw, dh = float(target_w - new_unpad[0]), float(target_h - new_unpad[1])
    if auto:
        dw, dh = float(np.mod(dw, stride)), float(np.mod(dh, stride))
    elif scale_fill:
        dw, dh = 0.0, 0.0
        new_unpad = (target_w, target_h)
        ratios = (target_w / width, target_h / height)
    dw, dh = dw / 2, dh / 2
    if (width, height) != new_unpad:
        hwc = resize_linear(hwc, new_unpad)
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    padded = pad_constant(hwc, top, bottom, left, right, color)
    return (padded if image.ndim == 3 else padded[:, :, 0]), ratios, (dw, dh)


def pad_constant(
    image: np.ndarray, top: int, bottom: int, left: int, right: int, color: int | tuple[int, ...]
) -> np.ndarray:
    """Pad a ``[H, W, C]`` image with a constant colour (``cv2.copyMakeBorder(BORDER_CONSTANT)``)."""
    height, width, channels = image.shape
    out = np.empty((height + top + bottom, width + left + right, channels), dtype=image.dtype)
    out[...] = np.asarray(color, dtype=image.dtype)
    out[top : top + height, left : left + width] = image
    return out


def decode_image(source: str | Path | bytes) -> np.ndarray:
    """Decode to uint8 RGB ``[H, W, 3]`` with the EXIF orientation applied (cv2.imread does the same)."""
    handle = io.BytesIO(source) if isinstance(source, bytes) else source
    with Image.open(handle) as opened:
        upright = ImageOps.exif_transpose(opened)
        return np.asarray(upright.convert("RGB"))


def load_resized(
    source: str | Path | bytes | np.ndarray, imgsz: int, augment: bool = False
) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
    """YOLOv5's ``load_image``: scale so the long side is ``imgsz`` (sizes rounded up with ``math.ceil``).

    Shrinking uses INTER_AREA (sharper, alias-free: what YOLOv5 val does), enlarging or ``augment=True``
    uses INTER_LINEAR. ``source``: a path, encoded bytes, or an already decoded uint8 RGB ``[H, W, 3]``.
    Returns ``(image [h, w, 3], (h0, w0), (h, w))``.
    """
    image = source if isinstance(source, np.ndarray) else decode_image(source)
    h0, w0 = image.shape[:2]
    ratio = imgsz / max(h0, w0)
    if ratio != 1:
        size = (math.ceil(w0 * ratio), math.ceil(h0 * ratio))
        image = resize_linear(image, size) if augment or ratio > 1 else resize_area(image, size)
    return image, (h0, w0), (int(image.shape[0]), int(image.shape[1]))


# ----------------------------------------------------------------------------------------------------------
# Rectangular val batches
# ----------------------------------------------------------------------------------------------------------


def rect_batch_shapes(
    shapes_wh: np.ndarray, batch_size: int, imgsz: int, stride: int, pad: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """YOLOv5's rectangular batches: image order and one ``(height, width)`` shape per batch.

    ``shapes_wh``: ``[N, 2]`` original ``(width, height)``. Images are ordered by aspect ratio ``h / w``
    with ``np.argsort`` (numpy's default, unstable sort, as YOLOv5), cut into batches of ``batch_size``,
    and each batch gets the smallest stride-multiple shape that holds its most extreme aspect ratio:
    ``ceil(shape * imgsz / stride + pad) * stride``. Returns ``(order [N] int64, shapes [nb, 2] int64)``.
    """
    sizes = np.asarray(shapes_wh, dtype=np.float64).reshape(-1, 2)
    if len(sizes) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 2), dtype=np.int64)
    if batch_size < 1 or stride < 1 or imgsz < 1:
        raise ValueError(
            f"batch_size, stride and imgsz must be positive, got {batch_size}, {stride}, {imgsz}"
        )
    aspect = sizes[:, 1] / sizes[:, 0]
    order = aspect.argsort()
    aspect = aspect[order]
    batch_of = np.floor(np.arange(len(sizes)) / batch_size).astype(int)
    relative = []
    for batch in range(int(batch_of[-1]) + 1):
        batch_aspect = aspect[batch_of == batch]
        low, high = batch_aspect.min(), batch_aspect.max()
        if high < 1:
            relative.append([high, 1.0])
        elif low > 1:
            relative.append([1.0, 1.0 / low])
        else:
            relative.append([1.0, 1.0])
    shapes = np.ceil(np.asarray(relative) * imgsz / stride + pad).astype(int) * stride
    return order.astype(np.int64), shapes.astype(np.int64)


# ----------------------------------------------------------------------------------------------------------
# Boxes between letterboxed and original pixels
# ----------------------------------------------------------------------------------------------------------


def _copy(boxes: Any) -> Any:
    return boxes.clone() if hasattr(boxes, "clone") else np.array(boxes, copy=True)


def xywhn2xyxy(
    boxes: BoxArray, width: float, height: float, padw: float = 0.0, padh: float = 0.0
) -> BoxArray:
    """Normalized ``[N, 4]`` ``(cx, cy, w, h)`` -> pixel ``[N, 4]`` ``(x0, y0, x1, y1)`` plus padding."""
    source: Any = boxes
    out = _copy(source)
    out[:, 0] = width * (source[:, 0] - source[:, 2] / 2) + padw
    out[:, 1] = height * (source[:, 1] - source[:, 3] / 2) + padh
    out[:, 2] = width * (source[:, 0] + source[:, 2] / 2) + padw
    out[:, 3] = height * (source[:, 1] + source[:, 3] / 2) + padh
    return out


def clip_boxes(boxes: BoxArray, shape: tuple[int, int]) -> BoxArray:
    """Clip pixel ``[N, 4]`` xyxy boxes in place to an image of ``shape = (height, width)``."""
    target: Any = boxes
    height, width = shape[0], shape[1]
    if hasattr(target, "clamp_"):
        target[:, 0].clamp_(0, width)
        target[:, 1].clamp_(0, height)
        target[:, 2].clamp_(0, width)
        target[:, 3].clamp_(0, height)
    else:
        target[:, [0, 2]] = target[:, [0, 2]].clip(0, width)
        target[:, [1, 3]] = target[:, [1, 3]].clip(0, height)
    return boxes


def labels_to_letterbox(
    labels: np.ndarray,
    original_wh: tuple[int, int],
    gain: float,
    pad: tuple[float, float],
    input_wh: tuple[int, int],
) -> np.ndarray:
    """YOLO labels ``[n, 5]`` (class, cx, cy, w, h) normalized by the original image -> normalized by the
    letterboxed input that holds it scaled by ``gain`` and shifted by ``pad`` (left, top), in input pixels.

    Computed in float64; the result keeps the dtype of ``labels``.
    """
    original_w, original_h = original_wh
    input_w, input_h = input_wh
    values = np.asarray(labels, dtype=np.float64).reshape(-1, 5)
    out = values.copy()
    out[:, 1] = (values[:, 1] * original_w * gain + pad[0]) / input_w
    out[:, 2] = (values[:, 2] * original_h * gain + pad[1]) / input_h
    out[:, 3] = values[:, 3] * original_w * gain / input_w
    out[:, 4] = values[:, 4] * original_h * gain / input_h
    return out.astype(np.asarray(labels).dtype, copy=False)


def scale_boxes(
    img1_shape: tuple[int, int],
    boxes: BoxArray,
    img0_shape: tuple[int, int],
    ratio_pad: tuple[tuple[float, float], tuple[float, float]] | None = None,
) -> BoxArray:
    """Map xyxy boxes ``[N, 4]`` from the letterboxed image ``img1_shape`` (h, w) back to the original
    ``img0_shape`` (h, w), clipped to it, like YOLOv5's ``scale_boxes``. Returns a new array/tensor.

    ``ratio_pad = ((gain_h, gain_w), (pad_w, pad_h))`` as YOLOv5's dataset records it; only ``gain_h`` is
    used as the gain, as in YOLOv5. Without it, gain and padding are derived from the two shapes.
    """
    if ratio_pad is None:
        gain = min(img1_shape[0] / img0_shape[0], img1_shape[1] / img0_shape[1])
        pad_w = (img1_shape[1] - img0_shape[1] * gain) / 2
        pad_h = (img1_shape[0] - img0_shape[0] * gain) / 2
    else:
        gain = ratio_pad[0][0]
        pad_w, pad_h = ratio_pad[1]
    out: Any = _copy(boxes)
    out[:, [0, 2]] -= pad_w
    out[:, [1, 3]] -= pad_h
    out[:, :4] /= gain
    return clip_boxes(out, img0_shape)
