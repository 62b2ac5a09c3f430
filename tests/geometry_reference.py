"""Reference geometry the library's one letterbox is checked against (test code only, never shipped).

- :func:`yolov5_letterbox`: YOLOv5 7.0's ``utils/augmentations.letterbox`` ported to numpy, resizing with
  ``cv2.resize(..., INTER_LINEAR)`` as YOLOv5 does. On the YOLOv5 fixture it reproduces YOLOv5's own
  output PNG bit for bit.
- :func:`trainer_letterbox_square`: the demo trainer's letterbox before issue 10 (PIL bilinear, floor
  centring), which trained the shipped demo model: the shared letterbox must keep producing its pixels.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from smartcash_core.data.letterbox import PAD_VALUE


def yolov5_letterbox(
    image: np.ndarray,
    new_shape: int | tuple[int, int] = 640,
    auto: bool = True,
    scaleup: bool = True,
    stride: int = 32,
) -> tuple[np.ndarray, tuple[float, float], tuple[float, float]]:
    """uint8 ``[H, W, 3]`` -> ``(padded, (ratio_w, ratio_h), (dw, dh))`` exactly as YOLOv5's letterbox.

    ``new_shape``: ``(height, width)`` or one int for a square. ``auto``: pad only up to the next multiple
    of ``stride``. ``scaleup=False`` never enlarges (val). ``dw``/``dh``: padding per side as floats (left
    ``round(dw - 0.1)``, right ``round(dw + 0.1)``).
    """
    if image.dtype != np.uint8 or image.ndim != 3:
        raise ValueError(f"expected a uint8 [H, W, C] image, got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    target_h, target_w = (new_shape, new_shape) if isinstance(new_shape, int) else new_shape
    ratio = min(target_h / height, target_w / width)
    if not scaleup:
        ratio = min(ratio, 1.0)
    new_unpad = (round(width * ratio), round(height * ratio))
    dw, dh = float(target_w - new_unpad[0]), float(target_h - new_unpad[1])
    if auto:
        dw, dh = float(np.mod(dw, stride)), float(np.mod(dh, stride))
    dw, dh = dw / 2, dh / 2
    if (width, height) != new_unpad:
        image = cv2.resize(image, new_unpad, interpolation=cv2.INTER_LINEAR)
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    resized_h, resized_w, channels = image.shape
    out = np.full((resized_h + top + bottom, resized_w + left + right, channels), PAD_VALUE, np.uint8)
    out[top : top + resized_h, left : left + resized_w] = image
    return out, (ratio, ratio), (dw, dh)


def trainer_letterbox_square(image: Image.Image, size: int) -> tuple[np.ndarray, float, tuple[int, int]]:
    """``[size, size, 3]`` uint8, the scale and the ``(left, top)`` offset, as the trainer did before."""
    scale = size / max(image.width, image.height)
    new_w, new_h = round(image.width * scale), round(image.height * scale)
    resized = image.convert("RGB").resize((new_w, new_h), Image.Resampling.BILINEAR)
    canvas = np.full((size, size, 3), PAD_VALUE, dtype=np.uint8)
    left, top = (size - new_w) // 2, (size - new_h) // 2
    canvas[top : top + new_h, left : left + new_w] = np.asarray(resized)
    return canvas, scale, (left, top)
