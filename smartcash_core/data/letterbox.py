"""YOLOv5's letterbox geometry: where an image sits in its network input, and how its labels follow it.

One letterbox serves the validation pass and the trainer: :func:`letterbox_into` places an image centred in
a grey slot of the batch tensor (left/top offsets ``round(d - 0.1)`` as YOLOv5's ``letterbox``, which for
the half-pixel paddings that occur is the floor of the centring), resizing it with PIL bilinear only when
its size differs from what fits. The pass resizes images beforehand (:func:`smartcash_core.data.images.
decode_image`, YOLOv5's ``load_image``) into rectangular batch shapes (:func:`rect_batch_shapes`), so the
letterbox only pads (``scaleup=False``); the demo trainer hands over decoded images of any size and lets
the letterbox scale them to its square input (``scaleup=True``), which is how its demo model was trained.
:func:`labels_to_letterbox` moves YOLO labels into the letterboxed input; ``ops.boxes`` maps boxes back.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

PAD_VALUE = 114


class Placement(NamedTuple):
    """Where :func:`letterbox_into` put an image.

    ``scale``: slot pixels per pixel of the image given (1.0 when it only padded); ``pad``: YOLOv5's
    ``(dw, dh)``, the padding per side as floats (half-pixels when the free space is odd), which the pass
    records to map boxes back; ``offset``: the ``(left, top)`` pixel where the image starts.
    """

    scale: float
    pad: tuple[float, float]
    offset: tuple[int, int]


def letterbox_into(slot: torch.Tensor, image: torch.Tensor, scaleup: bool = False) -> Placement:
    """Copy ``image`` uint8 ``[3, h, w]`` centred into ``slot`` ``[3, H, W]`` (pre-filled with grey).

    The image keeps its aspect ratio and is scaled to fit the slot: only down unless ``scaleup``
    (bilinear, sizes rounded). Returns its :class:`Placement`.
    """
    _, slot_h, slot_w = slot.shape
    _, height, width = image.shape
    scale = min(slot_h / height, slot_w / width)
    if not scaleup:
        scale = min(scale, 1.0)
    if scale != 1.0:
        width, height = round(width * scale), round(height * scale)
        image = _resize_bilinear(image, (width, height))
    pad_w, pad_h = (slot_w - width) / 2, (slot_h - height) / 2
    top, left = round(pad_h - 0.1), round(pad_w - 0.1)
    slot[:, top : top + height, left : left + width] = image
    return Placement(scale, (pad_w, pad_h), (left, top))


def _resize_bilinear(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """PIL bilinear resize of a uint8 ``[3, h, w]`` tensor to ``size = (width, height)``.

    Not cv2's INTER_LINEAR (``cv2.resize`` in images.py): the demo model was trained
    on PIL-resized squares, and the pass never gets here for images that fit their batch shape.
    """
    pil_image = Image.fromarray(image.permute(1, 2, 0).numpy())
    resized = pil_image.resize(size, Image.Resampling.BILINEAR)
    return torch.from_numpy(np.array(resized).transpose(2, 0, 1).copy())


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
