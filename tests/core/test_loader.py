"""Background batch loading: YOLOv5 resize/letterbox geometry, bad images, image cache, no stray threads."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from smartcash_core.cache import clear_data_caches, get_cache_info
from smartcash_core.data.images import EXACT_DRAFT, FAST_DRAFT, resized_size
from smartcash_core.data.loader import (
    PAD_VALUE,
    BatchLoader,
    ImageRef,
    load_resized,
    rect_batch_plans,
)


def write_jpeg(path: Path, width: int, height: int, seed: int) -> ImageRef:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)
    return ImageRef(index=seed, name=path.name, path=path, width=width, height=height)


@pytest.fixture
def image_refs(tmp_path: Path) -> list[ImageRef]:
    sizes = [(320, 240), (240, 320), (300, 300), (320, 180), (200, 150)]
    return [write_jpeg(tmp_path / f"img{i}.jpg", w, h, i) for i, (w, h) in enumerate(sizes)]


def decode_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("smartcash-decode")]


def test_resized_size_follows_yolov5_load_image() -> None:
    assert resized_size(640, 480, 320) == (320, 240)
    assert resized_size(1000, 333, 320) == (320, 107)  # ceil(333 * 0.32) = ceil(106.56)
    assert resized_size(100, 50, 200) == (200, 100)  # small images are enlarged
    assert resized_size(320, 100, 320) == (320, 100)


def test_rect_plans_sort_by_aspect_and_pick_stride_shapes(image_refs: list[ImageRef]) -> None:
    plans = rect_batch_plans(image_refs, imgsz=320, batch_size=2, stride=32)
    ratios = [ref.height / ref.width for plan in plans for ref in plan.refs]
    assert ratios == sorted(ratios)
    # first batch: 320x180 (0.5625) and 320x240 / 200x150 (0.75): shape [0.75, 1] -> ceil(7.5 + .5) = 8 rows
    assert plans[0].shape == (256, 352)
    assert all(h % 32 == 0 and w % 32 == 0 for plan in plans for h, w in [plan.shape])
    assert plans[-1].shape == (352, 256)  # portrait 240x320 alone: [1, 0.75] -> (ceil(10.5), ceil(8)) * 32
    square = rect_batch_plans(image_refs, imgsz=320, batch_size=4, stride=32, rect=False)
    assert [plan.shape for plan in square] == [(320, 320), (320, 320)]
    assert [ref.index for plan in square for ref in plan.refs] == [0, 1, 2, 3, 4]


def test_batches_are_letterboxed_with_yolov5_padding(image_refs: list[ImageRef]) -> None:
    clear_data_caches()
    plans = rect_batch_plans(image_refs[:1], imgsz=160, batch_size=1, stride=32)
    with BatchLoader(plans, imgsz=160, workers=1) as loader:
        (batch,) = list(loader)
    # 320x240 -> 160x120, batch shape [0.75, 1] * 160 / 32 + 0.5 -> ceil(4.25), ceil(5.5) -> 160x192
    assert batch.images.dtype == torch.uint8 and batch.images.shape == (1, 3, 160, 192)
    meta = batch.metas[0]
    assert meta.original_hw == (240, 320) and meta.gain == pytest.approx(0.5)
    assert meta.pad == (16.0, 20.0)  # 160x120 centred in 192x160
    image = batch.images[0]
    assert int(image[:, :20, :].float().mean()) == PAD_VALUE
    assert int(image[:, :, :16].float().mean()) == PAD_VALUE
    resized = load_resized(image_refs[0], 160)
    assert torch.equal(image[:, 20:140, 16:176], resized)


def test_bad_images_are_reported_and_skipped(tmp_path: Path, image_refs: list[ImageRef]) -> None:
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(image_refs[0].path.read_bytes()[:400])  # type: ignore[union-attr]
    refs = [
        image_refs[0],
        ImageRef(10, "truncated.jpg", path=truncated, width=320, height=240),
        ImageRef(11, "text.jpg", data=b"this is not an image", width=320, height=240),
        ImageRef(12, "gone.jpg", path=tmp_path / "gone.jpg", width=320, height=240),
    ]
    plans = rect_batch_plans(refs, imgsz=160, batch_size=4, stride=32, rect=False)
    with BatchLoader(plans, imgsz=160, workers=2) as loader:
        (batch,) = list(loader)
    assert [meta.ref.index for meta in batch.metas] == [0]
    assert batch.images.shape[0] == 1
    reasons = {ref.name: reason for ref, reason in batch.failures}
    assert set(reasons) == {"truncated.jpg", "text.jpg", "gone.jpg"}
    assert all(reasons.values())


def test_second_pass_hits_the_image_cache(image_refs: list[ImageRef]) -> None:
    clear_data_caches()
    plans = rect_batch_plans(image_refs, imgsz=96, batch_size=2, stride=32)
    before = get_cache_info()["image"]
    with BatchLoader(plans, imgsz=96, workers=2) as loader:
        first = [batch.images.clone() for batch in loader]
    middle = get_cache_info()["image"]
    with BatchLoader(plans, imgsz=96, workers=2) as loader:
        second = [batch.images for batch in loader]
    after = get_cache_info()["image"]
    assert middle["misses"] - before["misses"] == 5 and middle["entries"] >= 5
    assert after["hits"] - middle["hits"] == 5 and after["misses"] == middle["misses"]
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_uploaded_bytes_and_draft_mode_decode(tmp_path: Path) -> None:
    big = write_jpeg(tmp_path / "big.jpg", 1280, 960, seed=42)
    data = big.path.read_bytes()  # type: ignore[union-attr]
    upload = ImageRef(0, "big.jpg", data=data, width=1280, height=960)
    drafted = load_resized(upload, 160, draft=FAST_DRAFT, use_cache=False)  # 8x: 1/8 DCT scaling, no resize
    full = load_resized(upload, 160, draft=EXACT_DRAFT, use_cache=False)  # exact: full decode, INTER_AREA
    assert drafted.shape == full.shape == (3, 120, 160)
    # DCT scaling and area averaging are both local means: close, not identical
    assert (drafted.int() - full.int()).abs().float().mean() < 12
    assert not torch.equal(drafted, full)
    assert torch.equal(full, load_resized(ImageRef(0, "big.jpg", path=big.path), 160, use_cache=False))


def test_breaking_early_leaves_no_decode_threads(image_refs: list[ImageRef]) -> None:
    plans = rect_batch_plans(image_refs * 4, imgsz=64, batch_size=1, stride=32)
    with BatchLoader(plans, imgsz=64, workers=2, prefetch=3) as loader:
        for count, _ in enumerate(loader):
            if count == 1:
                break
    assert decode_threads() == []


def test_in_thread_mode_and_image_io_roundtrip(image_refs: list[ImageRef]) -> None:
    plans = rect_batch_plans(image_refs[:2], imgsz=64, batch_size=2, stride=32, rect=False)
    with BatchLoader(plans, imgsz=64, workers=0) as loader:
        batches = list(loader)
    assert len(batches) == 1 and batches[0].images.shape == (2, 3, 64, 64)
    buffer = io.BytesIO()
    Image.fromarray(batches[0].images[0].permute(1, 2, 0).numpy()).save(buffer, format="PNG")
    assert buffer.tell() > 0


def test_fast_draft_decodes_2x_jpegs_at_the_target_and_caches_apart_from_exact(tmp_path: Path) -> None:
    rows, cols = np.mgrid[0:480, 0:640]
    smooth = np.stack([cols * 255 // 639, rows * 255 // 479, (rows + cols) % 256], axis=-1).astype(np.uint8)
    Image.fromarray(smooth).save(tmp_path / "big.jpg", quality=90)
    ref = ImageRef(0, "big.jpg", path=tmp_path / "big.jpg", width=640, height=480)
    exact = load_resized(ref, 320, draft=EXACT_DRAFT)
    fast = load_resized(ref, 320, draft=FAST_DRAFT)
    assert exact.shape == fast.shape == (3, 240, 320)
    assert not torch.equal(exact, fast)  # DCT scaling is not cv2's INTER_AREA: kept apart in the cache
    assert torch.equal(load_resized(ref, 320, draft=EXACT_DRAFT), exact)
    assert torch.equal(load_resized(ref, 320, draft=FAST_DRAFT), fast)
    assert (exact.int() - fast.int()).abs().float().mean() < 3  # the same picture
