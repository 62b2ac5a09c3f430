"""The memory budget of one job: a request whose estimated peak exceeds it is refused before it is queued.

``imgsz 4096`` with ``batch_size 512`` passes the request schema but would need hundreds of GB; the
library's estimate (:func:`smartcash_core.validation.memory.check_pass_memory`, conservative: 1.7-2.7x the
measured peak) decides at submission, against ``SMARTCASH_MEMORY_BUDGET_BYTES`` or, unset, a share of the
model's device memory (half the RAM, or the container's limit, on CPU; 80% of a GPU's memory on CUDA).
The 400 names the budget and the largest ``batch_size`` that fits (``suggested_batch_size``; when none
does, ``suggested_imgsz`` fits one image). No batch is larger than the job's images (an upload's count, or
what the dataset's containment walk found), so a large ``batch_size`` on a small set is not refused.
"""

from __future__ import annotations

from typing import Any

from service.errors import ServiceError
from service.registry import ModelEntry
from service.settings import Settings
from smartcash_core.errors import MemoryBudgetError
from smartcash_core.validation.memory import check_pass_memory, default_memory_budget
from smartcash_core.validation.params import ValidationParams


class MemoryBudgetExceeded(ServiceError):
    """The job's estimated peak memory exceeds the budget; ``details`` carries the numbers."""

    status_code = 400
    code = "memory_budget_exceeded"

    def __init__(self, exc: MemoryBudgetError) -> None:
        fix = (
            f"send batch_size {exc.suggested_batch_size} (or smaller)"
            if exc.suggested_batch_size
            else f"send imgsz {exc.suggested_imgsz} with batch_size 1 (or smaller)"
        )
        super().__init__(str(exc), fix)
        self.details: dict[str, Any] = {
            "estimate_bytes": exc.estimate_bytes,
            "budget_bytes": exc.budget_bytes,
            "suggested_batch_size": exc.suggested_batch_size,
            "suggested_imgsz": exc.suggested_imgsz,
        }


def job_memory_budget(settings: Settings, entry: ModelEntry) -> int | None:
    """The configured budget, else the default for the model's device (None: unknown, nothing checked)."""
    if settings.memory_budget_bytes is not None:
        return settings.memory_budget_bytes
    return default_memory_budget(entry.loaded.device)


def check_job_memory(
    settings: Settings, entry: ModelEntry, params: ValidationParams, images: int | None = None
) -> None:
    """Refuse (``MemoryBudgetExceeded``, 400) a job whose estimated peak exceeds the budget. ``images``: how
    many images the upload holds or the dataset walk found (no batch is larger); None when unknown."""
    budget = job_memory_budget(settings, entry)
    if budget is None:
        return
    try:
        check_pass_memory(entry.loaded, params, budget, images)
    except MemoryBudgetError as exc:
        raise MemoryBudgetExceeded(exc) from exc
