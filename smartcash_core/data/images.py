"""The one image reader: a cheap header probe, and decode + EXIF orientation + resize, as YOLOv5 reads images.

- :func:`probe_image` checks an image without decoding its pixels (the dataset index runs it on every file).
- :func:`decode_image` decodes with OpenCV, as YOLOv5's ``cv2.imread`` does (``cv2.imdecode`` on the file's
  bytes: same decoder, EXIF orientation applied by OpenCV), to uint8 RGB ``[H, W, 3]`` upright and, given
  ``imgsz``, resizes the long side to it like YOLOv5's ``load_image``: ``math.ceil`` of the scaled size,
  ``cv2.INTER_AREA`` when shrinking, ``cv2.INTER_LINEAR`` when enlarging. YOLOv5's pixels, bit for bit.
  Only with a :class:`DraftPolicy` (``fast_decode``) are large JPEGs decoded DCT-scaled
  (``cv2.IMREAD_REDUCED_COLOR_2/4/8``) first: faster, not bit-exact.
- Both refuse an image whose header declares more than ``max_pixels`` pixels (:func:`check_pixel_count`;
  default ``limits.DEFAULT_MAX_IMAGE_PIXELS``, 40 MP) before any decoder runs: a 48 KB PNG can declare
  19999x19999 pixels and cost gigabytes and a minute of CPU to decode (a decompression bomb). PIL's own
  check (``Image.MAX_IMAGE_PIXELS``: a warning, an error at twice the limit, process-wide state) is switched
  off, so the caller's cap alone decides, the same way every time, and nothing is printed.

The validation pass (through the loader's cache), the trainer and, through the pass's batches, the
validation loss all read pixels through :func:`decode_image`. PIL reads headers only (format, size, EXIF).
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import BinaryIO, NamedTuple

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from smartcash_core.data.limits import DEFAULT_MAX_IMAGE_PIXELS

EXIF_ORIENTATION_TAG = 0x0112
EXIF_TRANSPOSED = frozenset({5, 6, 7, 8})  # orientations that swap width and height
PIL_FORMATS = frozenset({"JPEG", "PNG", "BMP", "WEBP", "TIFF", "MPO"})
MIN_IMAGE_SIDE = 10  # YOLOv5 rejects images with a side under 10 px

# Our header check (check_pixel_count) replaces PIL's: see the module docstring.
Image.MAX_IMAGE_PIXELS = None

ImageSource = Path | bytes  # a file, or the encoded bytes of an upload


class UnreadableImage(Exception):
    """An image cannot be opened or decoded; the loader reports it and skips it."""


class ImageTooLarge(UnreadableImage):
    """The header declares more pixels than the cap: skipped before any pixel is decoded."""


def check_pixel_count(width: int, height: int, max_pixels: int) -> None:
    """Raise :class:`ImageTooLarge` when ``width * height`` (from a header) exceeds ``max_pixels``."""
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"image is {width}x{height} = {width * height / 1e6:.1f} MP, over the cap of "
            f"{max_pixels / 1e6:g} MP (max_image_pixels); not decoded"
        )


class DraftPolicy(NamedTuple):
    """When JPEGs are decoded DCT-scaled (libjpeg scaling by 1/2, 1/4 or 1/8 while decoding): files at
    least ``min_factor`` times the target size, scaled down to no less than ``keep_factor`` times the
    target (the resize does the rest)."""

    min_factor: int
    keep_factor: int


# Exact (the default): never DCT-scaled, every image decoded in full and resized like YOLOv5's load_image.
EXACT_DRAFT: DraftPolicy | None = None
# Fast: from 2x straight to the target size (a 1280x960 JPEG decodes at 640x480, no resize); the scaled
# IDCT's pixels differ from a full decode + INTER_AREA, so metrics can move in the 4th decimal.
FAST_DRAFT = DraftPolicy(min_factor=2, keep_factor=1)
_REDUCED_FLAGS = {  # DCT scaling factor -> imdecode flags (colour, EXIF orientation applied)
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


# ----------------------------------------------------------------------------------------------------------
# Probe (header only)
# ----------------------------------------------------------------------------------------------------------


def probe_image(
    source: ImageSource, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
) -> tuple[tuple[int, int] | None, str]:
    """Cheaply check an image (no full decode): return ``((height, width), "")`` or ``(None, reason)``.

    Checks the header, the pixel count (at most ``max_pixels``), PIL ``verify()``, the JPEG end marker and
    the size. The size is EXIF-corrected like YOLOv5's ``exif_size``; YOLOv5 only swaps for orientations 6
    and 8, here 5 and 7 (transposes) swap too, so the size matches the decoded, EXIF-transposed image.
    """
    try:
        with _open_binary(source) as handle:
            with Image.open(handle) as image:
                fmt, (width, height) = image.format, image.size
                check_pixel_count(width, height, max_pixels)
                image.verify()  # must come first after open; the image is unusable afterwards
            truncated = fmt in {"JPEG", "MPO"} and not _ends_with_jpeg_eoi(handle)
            orientation = _header_orientation(handle) if fmt != "BMP" else None
    except FileNotFoundError:
        return None, "image file not found"
    except ImageTooLarge as exc:
        return None, str(exc)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return None, f"unreadable or corrupt image: {exc}"
    if fmt not in PIL_FORMATS:
        return None, f"unsupported image format {fmt}"
    if truncated:
        return None, "corrupt JPEG: no end-of-image marker (truncated file?)"
    if width < MIN_IMAGE_SIDE or height < MIN_IMAGE_SIDE:
        return None, f"image is {width}x{height}, smaller than {MIN_IMAGE_SIDE} px on a side"
    if orientation in EXIF_TRANSPOSED:
        width, height = height, width
    return (height, width), ""


def _open_binary(source: ImageSource) -> BinaryIO:
    return io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")


def _header_orientation(handle: BinaryIO) -> int | None:
    """Re-open the header (cheap, no pixel decode) to read the EXIF orientation tag; a malformed EXIF
    block raises (the probe then reports the image as corrupt)."""
    handle.seek(0)
    with Image.open(handle) as image:
        value = image.getexif().get(EXIF_ORIENTATION_TAG)
    return value if isinstance(value, int) else None


def _ends_with_jpeg_eoi(handle: BinaryIO) -> bool:
    handle.seek(-2, os.SEEK_END)
    return handle.read(2) == b"\xff\xd9"


# ----------------------------------------------------------------------------------------------------------
# Decode
# ----------------------------------------------------------------------------------------------------------


def open_image(source: ImageSource) -> Image.Image:
    """``Image.open`` with every failure as :class:`UnreadableImage`."""
    try:
        return Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UnreadableImage(f"not a readable image ({exc.__class__.__name__}: {exc})") from exc


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation of an open image, 1 (upright) when absent or malformed: decoding tolerates
    what the probe already let through."""
    try:
        return int(image.getexif().get(EXIF_ORIENTATION_TAG, 1))
    except Exception:  # malformed EXIF must not make the image unusable
        return 1


def resized_size(width: int, height: int, imgsz: int) -> tuple[int, int]:
    """``(width, height)`` after YOLOv5's ``load_image``: long side to ``imgsz``, sizes rounded up."""
    ratio = imgsz / max(width, height)
    if ratio == 1:
        return width, height
    return math.ceil(width * ratio), math.ceil(height * ratio)


def decode_image(
    source: ImageSource,
    imgsz: int | None = None,
    draft: DraftPolicy | None = None,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> np.ndarray:
    """Decode ``source`` to uint8 RGB ``[H, W, 3]``, upright; with ``imgsz``, the long side resized to it.

    Raises :class:`UnreadableImage` when the file cannot be opened or decoded, :class:`ImageTooLarge`
    (before decoding) when its header declares more than ``max_pixels`` pixels.
    """
    data = _read_bytes(source)
    with open_image(data) as image:  # the header only: format, size and EXIF orientation
        fmt, (raw_w, raw_h) = image.format, image.size
        swapped = exif_orientation(image) in EXIF_TRANSPOSED
    # the header of the very bytes decoded below: a file may change between the probe and the decode
    check_pixel_count(raw_w, raw_h, max_pixels)
    if fmt in {"JPEG", "MPO"} and not data.endswith(b"\xff\xd9"):
        raise UnreadableImage("cannot decode image: corrupt JPEG, no end-of-image marker (truncated file?)")
    shown_w, shown_h = (raw_h, raw_w) if swapped else (raw_w, raw_h)
    factor = 1
    if imgsz is not None and draft is not None and fmt == "JPEG":
        factor = _dct_factor((shown_w, shown_h), resized_size(shown_w, shown_h, imgsz), draft)
    try:  # cv2.imread's decoder and EXIF handling, from the bytes already in memory
        pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), _REDUCED_FLAGS[factor])
    except cv2.error as exc:
        raise UnreadableImage(f"cannot decode image (OpenCV: {exc.err})") from exc
    if pixels is None or pixels.ndim != 3:
        raise UnreadableImage(f"cannot decode image: OpenCV could not decode this {fmt} file")
    if imgsz is not None:
        # YOLOv5 sizes the target from the decoded image; a DCT-scaled one from its full (header) size
        full_w, full_h = (shown_w, shown_h) if factor > 1 else (pixels.shape[1], pixels.shape[0])
        pixels = _resize_like_load_image(pixels, resized_size(full_w, full_h, imgsz))
    return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)


def _read_bytes(source: ImageSource) -> bytes:
    if isinstance(source, bytes):
        return source
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise UnreadableImage(f"not a readable image ({exc.__class__.__name__}: {exc})") from exc


def _dct_factor(shown: tuple[int, int], target: tuple[int, int], draft: DraftPolicy) -> int:
    """The largest DCT scaling (1, 2, 4 or 8) that keeps the image at least ``keep_factor`` times the
    target on both sides, for images at least ``min_factor`` times the target wide; 1 otherwise."""
    if shown[0] < draft.min_factor * target[0]:
        return 1
    factor = 1
    for candidate in (2, 4, 8):
        scaled = (math.ceil(shown[0] / candidate), math.ceil(shown[1] / candidate))
        if scaled[0] >= draft.keep_factor * target[0] and scaled[1] >= draft.keep_factor * target[1]:
            factor = candidate
    return factor


def _resize_like_load_image(pixels: np.ndarray, target: tuple[int, int]) -> np.ndarray:
    """YOLOv5's ``load_image`` resize: INTER_AREA when shrinking, INTER_LINEAR when enlarging."""
    height, width = pixels.shape[:2]
    if (width, height) == target:
        return pixels
    interpolation = cv2.INTER_AREA if target[0] < width else cv2.INTER_LINEAR
    return cv2.resize(pixels, target, interpolation=interpolation)
