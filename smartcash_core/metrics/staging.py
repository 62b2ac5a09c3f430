"""Staged matching: small updates are gathered and matched in chunks, on a background thread.

Matching one image costs mostly numpy call overhead; matching a few hundred at once is vectorized. So
``DetectionEvaluator`` checks and flattens each update at once (a bad value still raises in the call that
passed it), keeps the flattened images in an :class:`ImageStage`, and matches a whole chunk when the stage
holds ``chunk_images`` images, or before anything reads the state. The state of an image does not depend on
which other images share its chunk, so the result is bit-identical to one big ``update_batch``.

Chunks are matched on one background thread (:func:`match_in_background`): numpy releases the GIL in its
loops and sorts, so the matching of one chunk runs on a second core while the caller stages the next.
:class:`MatchQueue` keeps the chunks in submission order, which is the order their state is kept in.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from smartcash_core.metrics.inputs import FlatBatch, OneImage
from smartcash_core.metrics.state import StateArrays

ChunkResult = tuple[StateArrays, np.ndarray]  # a chunk's state arrays and its confusion matrix
Matcher = Callable[[FlatBatch], ChunkResult]
_MAX_IN_FLIGHT = 2  # chunks submitted but not collected: bounds the flattened copies alive at once
_FLAT_FIELDS = ("pred_boxes", "pred_scores", "pred_classes", "gt_boxes", "gt_classes")

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _background_executor() -> ThreadPoolExecutor:
    """One worker thread for every evaluator of the process (chunks of one evaluator stay in order)."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smartcash-metrics")
        return _executor


def _forget_executor_after_fork() -> None:
    """A forked child has no worker thread: the next submission there starts a fresh executor."""
    global _executor, _executor_lock
    _executor, _executor_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_executor_after_fork)


def match_parts(matcher: Matcher, parts: list[StagedPart]) -> ChunkResult:
    """Join staged parts into one chunk and match it."""
    return matcher(join_parts(parts))


def match_in_background(matcher: Matcher, parts: list[StagedPart]) -> Future[ChunkResult]:
    return _background_executor().submit(match_parts, matcher, parts)


def match_now(matcher: Matcher, parts: list[StagedPart]) -> Future[ChunkResult]:
    """The same contract as :func:`match_in_background`, computed in the calling thread."""
    done: Future[ChunkResult] = Future()
    try:
        done.set_result(match_parts(matcher, parts))
    except BaseException as exc:  # delivered where the result is collected, like a background failure
        done.set_exception(exc)
    return done


StagedPart = FlatBatch | OneImage  # checked images: a flattened call, or one ``update()``


class ImageStage:
    """Checked images waiting to be matched, in the order they were added."""

    def __init__(self) -> None:
        self._parts: list[StagedPart] = []
        self.num_images = 0

    def add(self, part: StagedPart) -> None:
        self._parts.append(part)
        self.num_images += part.num_images

    def take(self) -> list[StagedPart]:
        """Every staged part, in order (joined by the matcher, off the caller's thread); the stage is
        empty afterwards."""
        parts, self._parts, self.num_images = self._parts, [], 0
        return parts


def join_parts(parts: list[StagedPart]) -> FlatBatch:
    """Staged parts one after the other: the batch ``flatten_images`` makes of all their images at once.

    Zero-row arrays do not take part in the dtype (an image without predictions must not turn float32
    boxes into float64); image positions continue from the parts before.
    """
    if len(parts) == 1 and isinstance(parts[0], FlatBatch):
        return parts[0]
    fields = {name: _concat_rows([getattr(part, name) for part in parts]) for name in _FLAT_FIELDS}
    pred_counts, gt_counts, ids = _rows_and_ids(parts)
    positions = np.arange(len(ids), dtype=np.int64)
    return FlatBatch(
        **fields,
        pred_image=np.repeat(positions, pred_counts),
        gt_image=np.repeat(positions, gt_counts),
        image_ids=np.asarray(ids, dtype=np.int64),
    )


def _rows_and_ids(parts: list[StagedPart]) -> tuple[list[int], list[int], list[int]]:
    """Predictions and ground truths per image, and the image ids, over all parts."""
    pred_counts: list[int] = []
    gt_counts: list[int] = []
    ids: list[int] = []
    for part in parts:
        if isinstance(part, OneImage):  # the common case (one ``update()``): no numpy call
            pred_counts.append(part.pred_boxes.shape[0])
            gt_counts.append(part.gt_boxes.shape[0])
            ids.append(part.image_id)
        else:
            pred_counts.extend(np.bincount(part.pred_image, minlength=part.num_images).tolist())
            gt_counts.extend(np.bincount(part.gt_image, minlength=part.num_images).tolist())
            ids.extend(part.image_ids.tolist())
    return pred_counts, gt_counts, ids


def _concat_rows(arrays: list[np.ndarray]) -> np.ndarray:
    filled = [array for array in arrays if array.shape[0]]
    if not filled:
        return arrays[0]
    return filled[0] if len(filled) == 1 else np.concatenate(filled)


class MatchQueue:
    """Chunks being matched, collected in submission order.

    ``submit`` starts a chunk (in the background or at once) and, when more than ``_MAX_IN_FLIGHT`` are
    still running, waits for the oldest, so memory stays bounded when the caller is faster than the
    matching. ``collect`` waits for every chunk and hands back their results in order; a chunk that failed
    raises there, never in ``submit``.
    """

    def __init__(self, matcher: Matcher, background: bool) -> None:
        self._matcher = matcher
        self._background = background
        self._futures: list[Future[ChunkResult]] = []
        self._waited = 0  # futures before this index are finished

    def __len__(self) -> int:
        return len(self._futures)

    def submit(self, parts: list[StagedPart]) -> None:
        """Match ``parts`` (flat batches of consecutive images) as one chunk."""
        if not parts:
            return
        start = match_in_background if self._background else match_now
        self._futures.append(start(self._matcher, parts))
        while len(self._futures) - self._waited > _MAX_IN_FLIGHT:
            self._futures[self._waited].exception()  # waits; a failure is raised by ``collect``
            self._waited += 1

    def collect(self) -> list[ChunkResult]:
        """Every submitted chunk's result, in submission order; the queue is empty afterwards. The first
        failure is raised once every chunk has finished."""
        futures, self._futures, self._waited = self._futures, [], 0
        failures = [exc for exc in (future.exception() for future in futures) if exc is not None]
        if failures:
            raise failures[0]
        return [future.result() for future in futures]
