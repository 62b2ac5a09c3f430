"""Staged matching: per-image ``update()`` calls and small batches give exactly what one big batch gives,
every read matches what is staged first, and bad input still fails in the call that passed it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch

from smartcash_core.classes import default_class_table
from smartcash_core.metrics import DetectionEvaluator
from smartcash_core.metrics.inputs import FlatBatch, flatten_images, flatten_one_image
from smartcash_core.metrics.staging import MatchQueue, join_parts
from tests.metrics.helpers import random_images

Image = tuple[np.ndarray, ...]
NUM_CLASSES = 17


def tied_images(seed: int, count: int) -> list[Image]:
    """Boxes on an 8 px grid with scores from four values: exact IoU ties, duplicates and score ties."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        n_gt, n_pred = int(rng.integers(0, 5)), int(rng.integers(0, 7))
        gt, boxes = _grid_boxes(rng, n_gt), _grid_boxes(rng, n_pred)
        scores = np.sort(rng.choice([0.3, 0.5, 0.7, 0.9], n_pred))[::-1].astype(np.float32)
        images.append(
            (boxes, scores, rng.integers(0, 3, n_pred), gt, rng.integers(0, 3, n_gt).astype(np.int32))
        )
    return images


def _grid_boxes(rng: np.random.Generator, count: int) -> np.ndarray:
    corner = rng.integers(0, 6, (count, 2)) * 8.0
    return np.concatenate([corner, corner + rng.integers(1, 5, (count, 2)) * 8.0], axis=1).astype(np.float32)


def workload(seed: int) -> list[Image]:
    """Mixed images: float64 and float32 inputs, ties of every kind, images without predictions or ground
    truth (and one with neither)."""
    empty = (np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0, np.int64))
    return [*random_images(seed, 40), *tied_images(seed, 40), empty, *random_images(seed + 1, 30)]


def reference(images: list[Image], protocol: str, table: bool) -> DetectionEvaluator:
    """One big ``update_batch``, matched in one chunk in this thread: what staging must reproduce."""
    evaluator = DetectionEvaluator(
        NUM_CLASSES, protocol, default_class_table() if table else None, chunk_images=10_000, background=False
    )
    evaluator.update_batch(*zip(*images, strict=True))
    return evaluator


def feed(evaluator: DetectionEvaluator, images: list[Image], sizes: Iterator[int]) -> DetectionEvaluator:
    """Feed ``images`` in calls of the sizes drawn from ``sizes`` (1: ``update()``)."""
    position = 0
    while position < len(images):
        size = next(sizes)
        part = images[position : position + size]
        if size == 1:
            evaluator.update(*part[0])
        else:
            evaluator.update_batch(*zip(*part, strict=True))
        position += len(part)
    return evaluator


def assert_same_state(left: DetectionEvaluator, right: DetectionEvaluator) -> None:
    a, b = left.state_arrays(), right.state_arrays()
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert left.compute().to_dict() == right.compute().to_dict()
    assert left.num_images == right.num_images


def _random_sizes(seed: int) -> Iterator[int]:
    rng = np.random.default_rng(seed)
    while True:
        yield int(rng.choice([1, 1, 1, 2, 5, 16, 40]))


def _always(size: int) -> Callable[[int], Iterator[int]]:
    def sizes(_: int) -> Iterator[int]:
        while True:
            yield size

    return sizes


@pytest.mark.parametrize("protocol", ["yolo", "coco"])
@pytest.mark.parametrize("table", [False, True], ids=["fine", "mapped"])
@pytest.mark.parametrize(
    ("chunk_images", "background", "sizes"),
    [
        (256, True, _always(1)),
        (256, True, _always(16)),
        (7, True, _always(1)),
        (7, False, _random_sizes),
        (1, False, _always(1)),  # every image matched at once: the old immediate path
        (13, True, _random_sizes),
        (32, True, _always(100)),  # calls bigger than a chunk, after staged images
    ],
)
def test_staged_updates_equal_one_big_batch(
    protocol: str, table: bool, chunk_images: int, background: bool, sizes: Callable[[int], Iterator[int]]
) -> None:
    for seed in (0, 1):
        images = workload(seed)
        staged = DetectionEvaluator(
            NUM_CLASSES,
            protocol,
            default_class_table() if table else None,
            chunk_images=chunk_images,
            background=background,
        )
        assert_same_state(feed(staged, images, sizes(seed)), reference(images, protocol, table))


def test_torch_images_and_explicit_ids_stage_like_numpy() -> None:
    images = workload(2)
    staged = DetectionEvaluator(NUM_CLASSES, "yolo", chunk_images=9)
    for image_id, image in enumerate(images):
        tensors = [torch.from_numpy(np.ascontiguousarray(array)) for array in image]
        staged.update(*tensors, image_id=image_id)
    assert_same_state(staged, reference(images, "yolo", table=False))


@pytest.mark.parametrize("protocol", ["yolo", "coco"])
def test_every_read_matches_the_staged_images_first(protocol: str) -> None:
    images = workload(3)
    full = reference(images, protocol, table=True)

    def staged(count: int, first_id: int = 0) -> DetectionEvaluator:
        evaluator = DetectionEvaluator(NUM_CLASSES, protocol, default_class_table())
        for offset, image in enumerate(images[first_id : first_id + count]):
            evaluator.update(*image, image_id=first_id + offset)
        return evaluator

    count = len(images)
    assert staged(count).num_images == count  # staged images count before they are matched
    assert_same_state(staged(count), full)
    assert staged(count).compute().to_dict() == full.compute().to_dict()
    np.testing.assert_array_equal(
        staged(count).true_positives_at(3, "mapped"), full.true_positives_at(3, "mapped")
    )
    summary, expected = staged(count).per_image_summary(), full.per_image_summary()
    assert all(np.array_equal(summary[key], expected[key]) for key in expected)
    merged = staged(50).merge(staged(count - 50, first_id=50))  # both sides still staged
    assert_same_state(merged, full)
    rebuilt = DetectionEvaluator.from_state_arrays(
        staged(count).state_arrays(), NUM_CLASSES, protocol, default_class_table()
    )
    assert_same_state(rebuilt, full)


def test_bad_values_fail_in_the_call_that_passed_them_and_add_nothing() -> None:
    images = workload(4)
    evaluator = DetectionEvaluator(NUM_CLASSES, "coco", chunk_images=8)
    for image in images[:5]:
        evaluator.update(*image)
    boxes = np.array([[0.0, 0.0, 10.0, 10.0]], np.float32)
    bad_calls: list[tuple[Any, ...]] = [
        (np.array([[0, 0, np.nan, 10]], np.float32), np.ones(1, np.float32), np.zeros(1, np.int64)),
        (np.array([[10, 0, 0, 10]], np.float32), np.ones(1, np.float32), np.zeros(1, np.int64)),
        (boxes, np.array([np.inf], np.float32), np.zeros(1, np.int64)),
        (boxes, np.ones(1, np.float32), np.array([NUM_CLASSES])),
        (boxes, np.ones(1, np.float32), np.array([-1])),
        (boxes, np.ones(2, np.float32), np.zeros(1, np.int64)),
    ]
    for pred in bad_calls:
        with pytest.raises(ValueError, match=r"image 5\b"):
            evaluator.update(*pred, np.zeros((0, 4)), np.zeros(0, np.int64))
    backwards_gt = np.array([[5.0, 5, 1, 1]])
    with pytest.raises(ValueError, match="gt_boxes of image 5"):
        evaluator.update(boxes, np.ones(1), np.zeros(1, np.int64), backwards_gt, np.zeros(1, int))
    assert evaluator.num_images == 5
    # a bad value in a later chunk of a big call: none of the call's images are added
    inf_box = (np.array([[0, 0, np.inf, 1]]), np.ones(1), np.zeros(1, np.int64), *images[40][3:])
    poisoned = [*images[5:40], inf_box, *images[41:]]
    with pytest.raises(ValueError, match="pred_boxes of image 40"):
        evaluator.update_batch(*zip(*poisoned, strict=True))
    assert evaluator.num_images == 5
    for image in images[5:]:
        evaluator.update(*image)
    assert_same_state(evaluator, reference(images, "coco", table=False))


def test_updates_copy_the_callers_arrays() -> None:
    """The caller may reuse its buffers as soon as ``update`` returns, although matching comes later."""
    images = workload(5)
    evaluator = DetectionEvaluator(NUM_CLASSES, "yolo")
    for image in images:
        buffers = [array.copy() for array in image]
        evaluator.update(*buffers)
        for array in buffers:
            array[...] = 0
    assert_same_state(evaluator, reference(images, "yolo", table=False))


def test_reset_drops_staged_and_matching_images() -> None:
    images = workload(6)
    evaluator = DetectionEvaluator(NUM_CLASSES, "yolo", chunk_images=4)
    for image in images[:30]:
        evaluator.update(*image)
    evaluator.reset()
    assert evaluator.num_images == 0 and evaluator.state_arrays()["image_ids"].size == 0
    feed(evaluator, images, _always(3)(0))
    assert_same_state(evaluator, reference(images, "yolo", table=False))


def test_one_image_fast_path_builds_what_the_general_path_builds() -> None:
    for image_id, image in enumerate(workload(7)):
        one = flatten_one_image(*image, image_id, NUM_CLASSES)
        general = flatten_images(*([array] for array in image), np.array([image_id]), NUM_CLASSES)
        assert one is not None
        fast = join_parts([one])
        for name in FlatBatch.__dataclass_fields__:
            got, want = getattr(fast, name), getattr(general, name)
            assert got.dtype == want.dtype and got.shape == want.shape, name
            np.testing.assert_array_equal(got, want, err_msg=name)
    # what it leaves to the general path: lists, float class ids, one-dimensional empty boxes
    plain = workload(7)[0]
    assert flatten_one_image([[0, 0, 1, 1]], [0.5], [0], *plain[3:], 0, NUM_CLASSES) is None
    assert flatten_one_image(*plain[:2], plain[2].astype(float), *plain[3:], 0, NUM_CLASSES) is None
    assert flatten_one_image(np.zeros(0), np.zeros(0), np.zeros(0, int), *plain[3:], 0, NUM_CLASSES) is None


def test_joined_parts_equal_flattening_all_images_at_once() -> None:
    """Flattened calls and single images (``update()``), in any mix, join into what one flatten gives."""
    images = workload(8)
    count = len(images)
    bounds = ((0, 1), (1, 30), (31, 1), (32, count - 35))
    parts: list[Any] = [
        flatten_images(*zip(*images[start : start + size], strict=True), np.arange(start, start + size), 17)
        for start, size in bounds
    ]
    parts += [flatten_one_image(*images[i], i, NUM_CLASSES) for i in range(count - 3, count)]
    assert all(part is not None for part in parts)
    joined = join_parts(parts)
    whole = flatten_images(*zip(*images, strict=True), np.arange(count), NUM_CLASSES)
    for name in FlatBatch.__dataclass_fields__:
        got, want = getattr(joined, name), getattr(whole, name)
        assert got.dtype == want.dtype, name
        np.testing.assert_array_equal(got, want, err_msg=name)


def test_match_queue_keeps_order_and_reports_a_failed_chunk() -> None:
    def matcher(batch: FlatBatch) -> tuple[dict[str, np.ndarray], np.ndarray]:
        if batch.image_ids[0] == 3:
            raise RuntimeError("chunk 3 failed")
        return {"image_ids": batch.image_ids}, np.zeros((1, 1), np.int64)

    def chunk(image_id: int) -> list[FlatBatch]:
        return [flatten_images([[]], [[]], [[]], [[]], [[]], np.array([image_id]), 1)]

    for background in (True, False):
        queue = MatchQueue(matcher, background)
        for image_id in range(6):
            queue.submit(chunk(image_id))
        with pytest.raises(RuntimeError, match="chunk 3 failed"):
            queue.collect()
        assert len(queue) == 0
        for image_id in (5, 4, 0):
            queue.submit(chunk(image_id))
        assert [int(state["image_ids"][0]) for state, _ in queue.collect()] == [5, 4, 0]
