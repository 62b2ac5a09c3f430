"""Comparisons of two finished validations: the state each succeeded job keeps, and the checks and bootstrap
behind ``POST /v1/comparisons``.

Every succeeded job stores its evaluator state and a key per image as the artifact ``comparison_state.npz``
(written with its result, in the same transaction): image keys are the dataset-relative file names of a
dataset job and ``sha256:<hex>`` of the image bytes of an upload, so two uploads of the same pictures pair
whatever their names. A comparison needs two such jobs over the same images (same dataset and split, or the
same uploaded images), validated with the same protocol; the bootstrap runs on a worker thread, at most
``comparison_max_concurrent`` at once, with at most ``comparison_max_resamples`` resamples.
"""

from __future__ import annotations

import logging
from pathlib import PurePosixPath
from typing import Any

from service.errors import Conflict, QueueFull, ServiceError, Unprocessable
from service.live import Job
from service.slots import BoundedSlots
from service.store import JobRecord, JobStore
from smartcash_core.errors import ComparisonError, SmartCashError
from smartcash_core.metrics.bootstrap import ComparableState, compare_states
from smartcash_core.validation.comparison_state import (
    comparison_state,
    content_key,
    state_bytes,
    state_from_bytes,
)
from smartcash_core.validation.params import ValidationResult

log = logging.getLogger("smartcash.service.comparisons")
COMPARISON_STATE = "comparison_state.npz"


class ComparisonRefused(ServiceError):
    """The two jobs cannot be compared; ``code`` says why (``comparison_images_differ``, ...)."""

    status_code = 400
    code = "comparison_refused"

    def __init__(self, code: str, message: str, fix: str = "") -> None:
        super().__init__(message, fix)
        self.code = code


class JobNotSucceeded(Conflict):
    code = "job_not_succeeded"


class StateMissing(Conflict):
    code = "comparison_state_missing"


def state_artifact(job: Job, result: ValidationResult) -> dict[str, bytes]:
    """The job's comparison state as an artifact (``{}``, logged, when it cannot be made: the job still
    succeeds, and a comparison with it says that its state is missing)."""
    keys = None if job.samples is None else {sample.name: content_key(sample.image) for sample in job.samples}
    try:
        return {COMPARISON_STATE: state_bytes(comparison_state(result, keys))}
    except (SmartCashError, ValueError, KeyError) as exc:
        log.warning("job %s: no comparison state saved: %s", job.id, exc, extra={"job_id": job.id})
        return {}


class ComparisonSlots(BoundedSlots):
    """Bounds the comparisons computed at once (each keeps ``comparison_threads`` cores busy)."""

    def refusal(self) -> QueueFull:
        return QueueFull(
            f"{self.limit} comparisons are already being computed",
            f"retry after {self.retry_after_s} s, or raise SMARTCASH_COMPARISON_MAX_CONCURRENT",
            headers=self.retry_headers,
        )


def check_resamples(resamples: int, limit: int) -> None:
    if resamples > limit:
        raise Unprocessable(
            f"resamples={resamples} is above this service's limit of {limit}",
            f"ask for at most {limit} resamples (SMARTCASH_COMPARISON_MAX_RESAMPLES)",
        )


def check_records(baseline: JobRecord, candidate: JobRecord) -> None:
    """Both succeeded, the same protocol, and the same images (dataset and split; uploads are checked by
    their image hashes once the states are loaded)."""
    for record in (baseline, candidate):
        if record.status != "succeeded":
            raise JobNotSucceeded(
                f"job {record.id} is {record.status}: only succeeded validations can be compared",
                "wait until both jobs have succeeded (GET /v1/validations/{id})",
            )
    protocols = [str(record.params.get("protocol", "yolo")) for record in (baseline, candidate)]
    if protocols[0] != protocols[1]:
        raise ComparisonRefused(
            "comparison_protocol_differs",
            f"the baseline used protocol {protocols[0]!r}, the candidate {protocols[1]!r}",
            "validate both with the same params.protocol",
        )
    kinds = {baseline.source_kind, candidate.source_kind}
    if len(kinds) > 1:
        raise ComparisonRefused(
            "comparison_images_differ",
            "one job validated a dataset, the other an upload: they do not cover the same images",
            "compare two jobs of the same dataset and split, or two uploads of the same images",
        )
    if kinds == {"dataset"} and _dataset_of(baseline) != _dataset_of(candidate):
        raise ComparisonRefused(
            "comparison_images_differ",
            f"the baseline validated {_dataset_of(baseline)}, the candidate {_dataset_of(candidate)}",
            "compare two jobs of the same dataset and split",
        )


def _dataset_of(record: JobRecord) -> tuple[str, str]:
    return str(PurePosixPath(record.source.replace("\\", "/"))), str(record.params.get("split", "val"))


def load_state(store: JobStore, record: JobRecord) -> ComparableState:
    content = store.get_artifact(record.id, COMPARISON_STATE)
    if content is None:
        raise StateMissing(
            f"job {record.id} has no saved comparison state (it ran before this release, or saving failed)",
            "validate that checkpoint again and compare the new job",
        )
    try:
        return state_from_bytes(content, f"job {record.id}")
    except ComparisonError as exc:
        raise ComparisonRefused(exc.code, str(exc), "validate that checkpoint again") from exc


def compare_jobs(
    store: JobStore,
    baseline: JobRecord,
    candidate: JobRecord,
    options: dict[str, Any],
    threads: int,
) -> dict[str, Any]:
    """The comparison's JSON (blocking: call it on a worker thread). ``options``: resamples, seed,
    confidence."""
    states = [load_state(store, record) for record in (baseline, candidate)]
    try:
        result = compare_states(*states, threads=threads, **options)
    except ComparisonError as exc:
        raise ComparisonRefused(exc.code, str(exc), _FIXES.get(exc.code, "")) from exc
    return {
        "baseline": baseline.id,
        "candidate": candidate.id,
        "models": {"baseline": baseline.model, "candidate": candidate.model},
        **result.to_dict(),
    }


_FIXES = {
    "comparison_images_differ": "compare jobs of the same dataset and split, or uploads of the same images",
    "comparison_labels_differ": "validate both jobs against the same label files",
    "comparison_classes_differ": "compare checkpoints trained with the same class table",
}
