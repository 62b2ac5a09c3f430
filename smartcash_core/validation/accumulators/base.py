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
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from smartcash_core.errors import MetricStateError
from smartcash_core.metrics.state import MergeRule, StateArrays, merge_state_arrays
from smartcash_core.validation.params import ValidationWarning

if TYPE_CHECKING:
    from smartcash_core.classes import ClassTable
    from smartcash_core.metrics import DetectionEvaluator
    from smartcash_core.validation.accumulators.counts import ClassCounts
    from smartcash_core.validation.detections import ProcessedBatch

__all__ = ["Accumulator", "ArrayAccumulator", "MergeRule", "ResultDraft", "StateArrays"]


@dataclass
class ResultDraft:
    """The result as accumulators build it, in the order the runner lists them.

    Each accumulator adds its part; later ones may read what earlier ones left in the typed slots
    (``class_counts`` for the metric tables, ``evaluator`` and ``image_columns`` for the per-image rows).
    ``image_columns`` holds extra per-image values keyed by processing order. ``warnings`` reach the
    result's ``warnings`` after the pass's own.
    """

    class_table: ClassTable
    protocol: str
    metrics: dict[str, Any] = field(default_factory=dict)
    per_image: list[dict[str, Any]] = field(default_factory=list)
    image_columns: dict[int, dict[str, Any]] = field(default_factory=dict)
    class_counts: ClassCounts | None = None
    evaluator: DetectionEvaluator | None = None
    warnings: list[ValidationWarning] = field(default_factory=list)


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
            raise MetricStateError(f"cannot merge accumulator {other.name!r} into {self.name!r}")
        self.load_state(merge_shard_states([self.state(), other.state()], self.merge_rules()))


def merge_shard_states(
    states: Sequence[Mapping[str, np.ndarray]], rules: Mapping[str, MergeRule]
) -> StateArrays:
    """One state from the shards' states (in processing order), each key merged by its rule; the pass
    numbers images globally (processing order), so shards that share an image id are refused."""
    return merge_state_arrays(states, rules, shared_ids="refuse")
