"""The accumulators of a validation pass, in the order their results are built (see ``ResultDraft``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from smartcash_core.validation.accumulators.base import Accumulator
from smartcash_core.validation.accumulators.counts import ClassCountsAccumulator
from smartcash_core.validation.accumulators.denominations import DenominationAccumulator
from smartcash_core.validation.accumulators.evaluator import EvaluatorAccumulator
from smartcash_core.validation.accumulators.loss import LossAccumulator
from smartcash_core.validation.accumulators.per_image import PerImageAccumulator
from smartcash_core.validation.params import ValidationParams

if TYPE_CHECKING:
    from smartcash_core.checkpoint import LoadedModel


def standard_accumulators(model: LoadedModel, params: ValidationParams) -> list[Accumulator]:
    """Fresh accumulators for one pass (or for merging shard states on rank 0).

    Order matters for the result: the class counts feed the metric tables, the evaluator and the
    denominations feed the per-image rows, and ``metrics`` keys appear in this order.
    """
    table = model.class_table
    accumulators: list[Accumulator] = [
        ClassCountsAccumulator(table),
        EvaluatorAccumulator(table, params.protocol),
        DenominationAccumulator(table),
    ]
    if params.compute_loss:  # reads the anchors from the Detect head
        accumulators.append(LossAccumulator(model))
    accumulators.append(PerImageAccumulator())
    return accumulators
