"""Metric state as named arrays, each key declaring how it merges across ranks, and that merge.

A protocol's state is a dict of numpy arrays (``DetectionEvaluator.state_arrays()``). Every key is declared
once, by the protocol that owns it, as a :class:`StateKey`: what its first axis counts (images, predictions,
ground truth, or the matched predictions of a sparse key), the dtype of its empty array, and its
:class:`MergeRule`. :func:`merge_state_arrays` folds the states of many ranks into one by those rules alone.

Why rank order and rebasing: ranks validate contiguous runs of the processing order, so concatenating their
states in rank order gives the single-process order (which decides score ties). A rank that numbered its
images from 0 gets the ids a single-process pass would have given by adding the number of images of the
ranks before it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from itertools import pairwise
from typing import Literal

import numpy as np

from smartcash_core.errors import MetricStateError

StateArrays = dict[str, np.ndarray]
IMAGE_KEY = "image_ids"  # the key holding one id per image: it counts the images of a state
_INT32 = np.iinfo(np.int32)


class MergeRule(Enum):
    """How one state key of many ranks becomes the key of the merged state."""

    CONCAT = "concatenate"  # rows of images / predictions / ground truth, in rank order
    SUM = "sum"  # counts that add up (same shape on every rank)
    IMAGE_ID = "image_id"  # image ids: concatenated; ranks with local ids (0, 1, ...) are rebased first


class Rows(Enum):
    """What the first axis of a state key counts (decides how ``compute`` puts it in image order)."""

    IMAGES = "images"
    PREDICTIONS = "predictions"
    GROUND_TRUTH = "ground_truth"
    MATCHED = "matched"  # one row per prediction flagged in a ``has_outcome`` key (sparse outcomes)
    NONE = "none"  # not per row (e.g. a count matrix)


@dataclass(frozen=True)
class StateKey:
    """One declared state array: its name, merge rule, rows, and the dtype / trailing shape it has once
    filled (an empty state is made of zero-row arrays of exactly that type, so it concatenates cleanly)."""

    name: str
    rule: MergeRule
    rows: Rows
    dtype: type[np.generic]
    width: tuple[int, ...] = ()

    def empty(self) -> np.ndarray:
        return np.zeros((0, *self.width), dtype=self.dtype)


def concat_parts(key: StateKey, parts: list[np.ndarray]) -> np.ndarray:
    """The parts of one key accumulated by successive updates, as one array (no copy for one part)."""
    if len(parts) == 1:
        return parts[0]
    if parts:
        return np.concatenate(parts)
    return key.empty()


def compact_ids(ids: np.ndarray) -> np.ndarray:
    """Image ids as int32 when they fit (half the state), else int64."""
    if ids.size == 0 or (int(ids.min()) >= _INT32.min and int(ids.max()) <= _INT32.max):
        return ids.astype(np.int32)
    return ids.astype(np.int64, copy=False)


def compact_scores(scores: np.ndarray) -> np.ndarray:
    """Scores as float32 when that loses nothing (always for float32 input), else float64: ``yolo`` reads
    them as float32 like YOLOv5, ``coco`` as float64 like pycocotools, and both see the same values."""
    if scores.dtype == np.float32:
        return scores
    narrow = scores.astype(np.float32)
    return narrow if np.array_equal(narrow, scores) else scores.astype(np.float64, copy=False)


def image_ids_overlap(states: Sequence[Mapping[str, np.ndarray]], image_key: str = IMAGE_KEY) -> bool:
    """Whether two states (or one) hold the same image id: then the ranks numbered their images locally."""
    ids = np.concatenate([np.asarray(state[image_key], dtype=np.int64) for state in states])
    return np.unique(ids).size != ids.size


def rebase_local_image_ids(
    states: Sequence[Mapping[str, np.ndarray]], rules: Mapping[str, MergeRule], image_key: str = IMAGE_KEY
) -> list[StateArrays]:
    """Shift each state's image-id keys by the number of images of the states before it (as int64).

    A pass that numbers images as it evaluates them (0, 1, ... per evaluator) gives every rank ids from 0.
    Because shards are contiguous runs of the processing order, rank r's image j is image
    ``sum(images of ranks < r) + j`` of a single-process pass: the rebased ids are the single-process ids.
    """
    id_keys = [key for key, rule in rules.items() if rule is MergeRule.IMAGE_ID]
    rebased: list[StateArrays] = []
    offset = 0
    for state in states:
        shifted = dict(state)
        for key in id_keys:
            shifted[key] = np.asarray(state[key], dtype=np.int64) + offset
        offset += len(state[image_key])
        rebased.append(shifted)
    return rebased


def merge_state_arrays(
    states: Sequence[Mapping[str, np.ndarray]],
    rules: Mapping[str, MergeRule],
    image_key: str = IMAGE_KEY,
    shared_ids: Literal["rebase", "refuse"] = "rebase",
) -> StateArrays:
    """One state from the states of many ranks, given in rank order, by each key's rule.

    States whose image ids are disjoint (global ids) are concatenated as they are. When ids repeat, each
    rank numbered its images from 0: with ``shared_ids="rebase"`` every state is rebased first
    (:func:`rebase_local_image_ids`); with ``"refuse"`` (states that must carry global ids, like the
    validation pass's accumulators) that is an error. Every key of ``rules`` must be in every state and every
    key of a state must have a rule: a key nobody declared would otherwise be merged by guesswork.
    Raises :class:`MetricStateError`.
    """
    if not states:
        raise MetricStateError("no state to merge: pass the state of at least one rank")
    _check_keys(states, rules)
    if shared_ids == "refuse":
        for key in (key for key, rule in rules.items() if rule is MergeRule.IMAGE_ID):
            _check_disjoint(key, [np.asarray(state[key]) for state in states])
    elif image_key in rules and image_ids_overlap(states, image_key):
        states = rebase_local_image_ids(states, rules, image_key)
    merged: StateArrays = {}
    for key in states[0]:
        parts = [np.asarray(state[key]) for state in states]
        merged[key] = np.sum(parts, axis=0) if rules[key] is MergeRule.SUM else np.concatenate(parts, axis=0)
    return merged


def _check_keys(states: Sequence[Mapping[str, np.ndarray]], rules: Mapping[str, MergeRule]) -> None:
    for rank, state in enumerate(states):
        missing = [key for key in rules if key not in state]
        undeclared = [key for key in state if key not in rules]
        if missing or undeclared:
            raise MetricStateError(
                f"state {rank} does not match its declared keys: missing {missing}, undeclared {undeclared}; "
                "were all states made by evaluators of the same protocol and class table?"
            )


def _check_disjoint(key: str, parts: Sequence[np.ndarray]) -> None:
    """Raise when two parts share an id. Shards of a pass hold contiguous runs of the processing order, so
    their id ranges do not even overlap: that O(n) check settles it; others are compared id by id."""
    spans = sorted((int(part.min()), int(part.max())) for part in parts if part.size)
    if all(earlier[1] < later[0] for earlier, later in pairwise(spans)):
        return
    distinct = [np.unique(part) for part in parts]
    if np.unique(np.concatenate(distinct)).size != sum(ids.size for ids in distinct):
        raise MetricStateError(f"shards share image ids in {key!r}: each must hold its own images")
