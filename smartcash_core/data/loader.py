"""Background image loading for the validation pass: decode, resize, letterbox into batches, prefetch.

Preprocessing follows YOLOv5 7.0 ``val.py``: the long side is resized to ``imgsz`` (``ceil`` of the scaled
size; area averaging when shrinking, bilinear when enlarging), then each image is padded with grey 114 into
its batch's shape (rectangular batches: shapes chosen per batch of images sorted by aspect ratio), never
scaled up. Boxes map back with the recorded gain and padding.

Decoding runs on worker threads (OpenCV releases the GIL while decoding and resizing) with a bounded
number of batches in flight, so the forward pass does not wait when decoding is faster. Only with
``fast_decode`` are large JPEGs decoded DCT-scaled (from twice the target size). Resized images are kept in
the ``image`` cache keyed by (file, size, mtime_ns, imgsz) (uploads: by content digest), so validating the
same set again skips decoding. A bad image never stops the pass: it is reported in its batch's
``failures`` and left out.
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from smartcash_core.cache import bind_cache_usage, image_cache
from smartcash_core.data.images import EXACT_DRAFT, DraftPolicy, ImageSource, UnreadableImage, decode_image
from smartcash_core.data.letterbox import PAD_VALUE, letterbox_into, rect_batch_shapes
from smartcash_core.data.limits import DEFAULT_MAX_IMAGE_PIXELS

RECT_PAD = 0.5  # val.py pads rectangular batch shapes by half a stride


@dataclass(frozen=True)
class ImageRef:
    """One image of the pass: where its bytes come from and its original size (after EXIF rotation, as
    probed by the dataset index).

    ``index`` is the image's global position in the dataset; it stays the same when a shard of the
    dataset is validated, so per-image results and metric states line up across workers.
    """

    index: int
    name: str
    path: Path | None = None
    data: bytes | None = field(default=None, repr=False)
    width: int = 0
    height: int = 0


@dataclass(frozen=True)
class BatchPlan:
    """Images of one batch and the network input shape ``(height, width)`` they are padded into."""

    refs: tuple[ImageRef, ...]
    shape: tuple[int, int]


@dataclass(frozen=True)
class ImageMeta:
    """How one image sits in its batch: ``gain`` input px per original px, ``pad`` (left, top) in input px."""

    ref: ImageRef
    original_hw: tuple[int, int]
    gain: float
    pad: tuple[float, float]


@dataclass
class LoadedBatch:
    """A decoded batch: ``images`` uint8 ``[B, 3, H, W]`` (pinned on CUDA), one meta per image, failures."""

    images: torch.Tensor
    metas: list[ImageMeta]
    failures: list[tuple[ImageRef, str]]
    decode_s: float
    letterbox_s: float
    decode_cpu_s: float = 0.0  # CPU time of the decoding threads for this batch (thread_time, not wall)


def _source(ref: ImageRef) -> ImageSource:
    if ref.data is not None:
        return ref.data
    if ref.path is None:
        raise UnreadableImage("no path and no bytes")
    return ref.path


def _decode_resized(
    ref: ImageRef, imgsz: int, draft: DraftPolicy | None, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
) -> torch.Tensor:
    """Decode ``ref`` and resize its long side to ``imgsz``: uint8 ``[3, h, w]`` RGB, contiguous."""
    pixels = decode_image(_source(ref), imgsz, draft, max_pixels)
    # CHW once here, so filling batches later is a plain block copy
    return torch.from_numpy(pixels.transpose(2, 0, 1).copy())


def image_cache_key(
    ref: ImageRef, imgsz: int, draft: DraftPolicy | None = EXACT_DRAFT
) -> tuple[object, ...]:
    """File identity (path, size, mtime_ns) or content digest for uploads, plus the target size and the
    draft policy (a fast-decoded image must never answer an exact request)."""
    if ref.data is not None:
        return ("bytes", hashlib.blake2b(ref.data, digest_size=16).hexdigest(), imgsz, draft)
    if ref.path is None:
        raise UnreadableImage("no path and no bytes")
    stat = ref.path.stat()
    return (str(ref.path), stat.st_size, stat.st_mtime_ns, imgsz, draft)


def load_resized(
    ref: ImageRef,
    imgsz: int,
    draft: DraftPolicy | None = EXACT_DRAFT,
    use_cache: bool = True,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> torch.Tensor:
    """The image resized for ``imgsz`` (``[3, h, w]`` uint8), from the image cache when present; images
    over ``max_pixels`` are refused from their header (``ImageTooLarge``) before any decode."""
    if not use_cache:
        return _decode_resized(ref, imgsz, draft, max_pixels)
    try:
        key = image_cache_key(ref, imgsz, draft)
    except OSError as exc:
        raise UnreadableImage(f"cannot stat file ({exc.strerror or exc})") from exc
    cache = image_cache()
    cached = cache.get(key)
    if cached is None:
        cached = _decode_resized(ref, imgsz, draft, max_pixels)  # shared between passes: read only
        cache.put(key, cached)
    return cached


def rect_batch_plans(
    refs: Sequence[ImageRef], imgsz: int, batch_size: int, stride: int, rect: bool = True
) -> list[BatchPlan]:
    """Group ``refs`` into batches and pick each batch's input shape ``(height, width)``.

    ``rect``: as YOLOv5 val, images are ordered by aspect ratio (h / w, numpy's default sort like YOLOv5)
    and each batch gets the smallest stride-multiple shape (plus half a stride) that holds its images;
    otherwise every batch is square ``imgsz`` and the images keep their order.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not rect:
        return [
            BatchPlan(tuple(refs[start : start + batch_size]), (imgsz, imgsz))
            for start in range(0, len(refs), batch_size)
        ]
    sizes_wh = np.asarray([(ref.width, ref.height) for ref in refs], dtype=np.float64).reshape(-1, 2)
    order, shapes = rect_batch_shapes(sizes_wh, batch_size, imgsz, stride, pad=RECT_PAD)
    ordered = [refs[int(position)] for position in order]
    return [
        BatchPlan(tuple(ordered[number * batch_size : (number + 1) * batch_size]), (int(h), int(w)))
        for number, (h, w) in enumerate(shapes)
    ]


# (ref, pixels or None, failure, wall seconds, CPU seconds of the decoding thread)
DecodeOutcome = tuple[ImageRef, torch.Tensor | None, str, float, float]


def _decode_one(ref: ImageRef, imgsz: int, draft: DraftPolicy | None, max_pixels: int) -> DecodeOutcome:
    started, cpu_started = time.perf_counter(), time.thread_time()
    try:
        pixels, failure = load_resized(ref, imgsz, draft, max_pixels=max_pixels), ""
    except UnreadableImage as exc:
        pixels, failure = None, str(exc)
    return ref, pixels, failure, time.perf_counter() - started, time.thread_time() - cpu_started


def assemble_batch(
    plan: BatchPlan, outcomes: Sequence[DecodeOutcome], pin_memory: bool = False
) -> LoadedBatch:
    """Letterbox the decoded images of ``plan`` into one uint8 ``[B, 3, H, W]`` tensor; collect failures."""
    started = time.perf_counter()
    decoded = [(ref, pixels) for ref, pixels, *_ in outcomes if pixels is not None]
    failures = [(ref, reason) for ref, pixels, reason, *_ in outcomes if pixels is None]
    height, width = plan.shape
    images = torch.empty((len(decoded), 3, height, width), dtype=torch.uint8, pin_memory=pin_memory)
    images.fill_(PAD_VALUE)
    metas = []
    for slot, (ref, pixels) in zip(images, decoded, strict=True):
        placed = letterbox_into(slot, pixels)
        original_hw = (ref.height, ref.width)
        metas.append(ImageMeta(ref, original_hw, placed.scale * pixels.shape[1] / ref.height, placed.pad))
    decode_s, decode_cpu_s = sum(outcome[3] for outcome in outcomes), sum(outcome[4] for outcome in outcomes)
    return LoadedBatch(images, metas, failures, decode_s, time.perf_counter() - started, decode_cpu_s)


def load_batch(
    plan: BatchPlan,
    imgsz: int,
    pin_memory: bool = False,
    draft: DraftPolicy | None = EXACT_DRAFT,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> LoadedBatch:
    """Decode (or fetch from cache) every image of ``plan`` in this thread and letterbox them."""
    outcomes = [_decode_one(ref, imgsz, draft, max_pixels) for ref in plan.refs]
    return assemble_batch(plan, outcomes, pin_memory)


class BatchLoader:
    """Iterates :class:`LoadedBatch` in plan order while worker threads decode the next batches.

    At most ``prefetch`` batches are in flight (bounded memory). Use it as a context manager: leaving the
    block (normally, by an error, or on cancellation) cancels pending work and joins every worker thread.
    ``workers == 0`` decodes in the calling thread. No worker decodes an image whose header declares more
    than ``max_pixels`` pixels: it becomes a failure of its batch.
    """

    def __init__(
        self,
        plans: Sequence[BatchPlan],
        imgsz: int,
        workers: int = 2,
        prefetch: int | None = None,
        pin_memory: bool = False,
        draft: DraftPolicy | None = EXACT_DRAFT,
        max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    ) -> None:
        self._plans = list(plans)
        self._max_pixels = max_pixels
        self._imgsz = imgsz
        self._workers = max(0, workers)
        self._prefetch = max(1, prefetch if prefetch is not None else self._workers + 1)
        self._pin_memory = pin_memory
        self._draft = draft
        self._executor: ThreadPoolExecutor | None = None
        self._decode = _decode_one
        self._pending: deque[tuple[BatchPlan, list[Future[DecodeOutcome]]]] = deque()

    def __enter__(self) -> BatchLoader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self._plans)

    def __iter__(self) -> Iterator[LoadedBatch]:
        if self._workers == 0:
            for plan in self._plans:
                yield load_batch(plan, self._imgsz, self._pin_memory, self._draft, self._max_pixels)
            return
        self._executor = ThreadPoolExecutor(self._workers, thread_name_prefix="smartcash-decode")
        self._decode = bind_cache_usage(_decode_one)  # the workers count into the caller's cache usage
        upcoming = iter(self._plans)
        self._submit_up_to_prefetch(upcoming)
        while self._pending:
            plan, jobs = self._pending.popleft()
            outcomes = [job.result() for job in jobs]
            self._submit_up_to_prefetch(upcoming)
            yield assemble_batch(plan, outcomes, self._pin_memory)  # a block copy per image: cheap

    def _submit_up_to_prefetch(self, upcoming: Iterator[BatchPlan]) -> None:
        """One decode job per image, so the workers share even the first batch."""
        executor = self._executor
        while executor is not None and len(self._pending) < self._prefetch:
            plan = next(upcoming, None)
            if plan is None:
                return
            jobs = [
                executor.submit(self._decode, ref, self._imgsz, self._draft, self._max_pixels)
                for ref in plan.refs
            ]
            self._pending.append((plan, jobs))

    def close(self) -> None:
        """Cancel batches not started yet and wait for the worker threads to exit."""
        for _, jobs in self._pending:
            for job in jobs:
                job.cancel()
        self._pending.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
