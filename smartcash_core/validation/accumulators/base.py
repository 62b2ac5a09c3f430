"""The one interface every accumulator of the pass implements, and the generic merge of their states.

An accumulator sees every batch (:meth:`Accumulator.update` with a :class:`ProcessedBatch`), keeps its
state as named numpy arrays (:meth:`~Accumulator.state`), says how each array merges across shards and
ranks (:meth:`~Accumulator.merge_rules`), and writes its part of the result (:meth:`~Accumulator.result`).
Because states are plain arrays with declared rules, the runner, ``ValidationState`` and the distributed
``ShardState`` merge any accumulator without knowing what it counts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from itertools import pairwise
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from smartcash_core.errors import SmartCashError

if TYPE_CHECKING:
    from smartcash_core.classes import ClassTable
    from smartcash_core.metrics import DetectionEvaluator
    from smartcash_core.validation.accumulators.counts import ClassCounts
    from smartcash_core.validation.detections import ProcessedBatch

StateArrays = dict[str, np.ndarray]


class MergeRule(str, Enum):
    """How one state array of many shards (given in processing order) becomes one."""

    CONCATENATE = "concatenate"  # rows (images, predictions, ground truth): shards one after the other
    SUM = "sum"  # counts and running sums: element-wise total
    IMAGE_ID = "image_id"  # global image ids (processing order): concatenated; shards must not share one


class StateMergeError(SmartCashError, ValueError):
    """Shard states that cannot be merged: different keys, a key without a rule, or shared image ids."""


@dataclass
class ResultDraft:
    """The result as accumulators build it, in the order the runner lists them.

    Each accumulator adds its part; later ones may read what earlier ones left in the typed slots
    (``class_counts`` for the metric tables, ``evaluator`` and ``image_columns`` for the per-image rows).
    ``image_columns`` holds extra per-image values keyed by processing order.
    """

    class_table: ClassTable
    protocol: str
    metrics: dict[str, Any] = field(default_factory=dict)
    per_image: list[dict[str, Any]] = field(default_factory=list)
    image_columns: dict[int, dict[str, Any]] = field(default_factory=dict)
    class_counts: ClassCounts | None = None
    evaluator: DetectionEvaluator | None = None


class Accumulator(Protocol):
    """One thing the pass accumulates; adding a metric means adding one of these and listing it in
    :func:`smartcash_core.validation.accumulators.standard.standard_accumulators`."""

    name: str  # key of its state among the others (unique in a pass)
    stage: str  # timing stage its updates count under (``speed_ms_per_image``)

    def update(self, batch: ProcessedBatch) -> None: ...

    def merge(self, other: Accumulator) -> None: ...

    def state(self) -> StateArrays: ...

    def load_state(self, state: Mapping[str, np.ndarray]) -> None: ...

    def merge_rules(self) -> Mapping[str, MergeRule]: ...

    def result(self, into: ResultDraft) -> None: ...


class ArrayAccumulator(ABC):
    """Base of the pass's accumulators: ``merge`` goes through the states and their rules, so a merge in
    one process and a merge of gathered states on rank 0 are the same operation."""

    name: ClassVar[str]
    stage: ClassVar[str] = "metrics"

    @abstractmethod
    def update(self, batch: ProcessedBatch) -> None: ...

    @abstractmethod
    def state(self) -> StateArrays: ...

    @abstractmethod
    def load_state(self, state: Mapping[str, np.ndarray]) -> None: ...

    @abstractmethod
    def merge_rules(self) -> Mapping[str, MergeRule]: ...

    @abstractmethod
    def result(self, into: ResultDraft) -> None: ...

    def merge(self, other: Accumulator) -> None:
        """Fold ``other`` (same kind, later shard) into this one."""
        if other.name != self.name:
            raise StateMergeError(f"cannot merge accumulator {other.name!r} into {self.name!r}")
        self.load_state(merge_state_arrays([self.state(), other.state()], self.merge_rules()))


def merge_state_arrays(
    states: Sequence[Mapping[str, np.ndarray]], rules: Mapping[str, MergeRule]
) -> StateArrays:
    """One state from the shards' states (in processing order), each key merged by its rule."""
    if not states:
        raise StateMergeError("no state to merge")
    keys = list(states[0])
    unruled = [key for key in keys if key not in rules]
    if unruled:
        raise StateMergeError(f"state keys {unruled} declare no merge rule")
    for state in states[1:]:
        if sorted(state) != sorted(keys):
            raise StateMergeError(f"shard states differ: {sorted(state)} vs {sorted(keys)}")
    merged: StateArrays = {}
    for key in keys:
        parts = [np.asarray(state[key]) for state in states]
        if rules[key] is MergeRule.SUM:
            merged[key] = np.sum(parts, axis=0)
            continue
        if rules[key] is MergeRule.IMAGE_ID:
            _check_disjoint(key, parts)
        merged[key] = np.concatenate(parts, axis=0)
    return merged


def _check_disjoint(key: str, parts: Sequence[np.ndarray]) -> None:
    """Raise when two parts share an id. Shards of a pass hold contiguous runs of the processing order, so
    their id ranges do not even overlap: that O(n) check settles it; others are compared id by id."""
    spans = sorted((int(part.min()), int(part.max())) for part in parts if part.size)
    if all(earlier[1] < later[0] for earlier, later in pairwise(spans)):
        return
    distinct = [np.unique(part) for part in parts]
    if np.unique(np.concatenate(distinct)).size != sum(ids.size for ids in distinct):
        raise StateMergeError(f"shards share image ids in {key!r}: each must hold its own images")
