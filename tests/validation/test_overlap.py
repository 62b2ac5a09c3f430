"""The pass finishes batch k (NMS, accumulators) on a second thread while batch k+1 runs its forward
(issue 14, item 5): same results in the same order as one thread, progress after each finished batch, and
errors or a cancellation leave no thread behind."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from smartcash_core.checkpoint import LoadedModel, load_model
from smartcash_core.errors import Cancelled
from smartcash_core.validation.accumulators.standard import standard_accumulators
from smartcash_core.validation.detections import ProcessedBatch
from smartcash_core.validation.params import ValidationParams
from smartcash_core.validation.runner import build_result, collect_validation_state

PARAMS = ValidationParams(imgsz=128, batch_size=2, device="cpu", workers=1, compute_loss=True)


@pytest.fixture(scope="module")
def trained(trained_weights: Path) -> LoadedModel:
    return load_model(trained_weights, "cpu")


def finish_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("smartcash-finish")]


def test_overlapped_pass_equals_the_single_thread_pass(
    trained: LoadedModel, mixed_aspect_dataset: Path
) -> None:
    results, progress = [], []
    for overlap in (False, True):
        seen: list[int] = []
        state = collect_validation_state(
            trained, mixed_aspect_dataset, PARAMS, lambda done, _total, _stage, seen=seen: seen.append(done),
            overlap=overlap,
        )
        results.append(build_result(state, trained, PARAMS, wall_s=0.0).to_dict())
        progress.append(seen)
        state_arrays = [accumulator.state() for accumulator in state.accumulators]
        results[-1]["state"] = {k: v.tolist() for arrays in state_arrays for k, v in arrays.items()}
    single, overlapped = results
    assert overlapped["metrics"] == single["metrics"] and overlapped["per_image"] == single["per_image"]
    assert overlapped["state"] == single["state"]  # same arrays, same order (image ids, scores, hits)
    assert progress[0] == progress[1] == [2, 4, 6, 8, 9]  # after each finished batch of the 9 images
    assert not finish_threads()


class Exploding:
    """An accumulator that fails on its ``fail_at``-th batch (counting from 1)."""

    name, stage = "exploding", "metrics"

    def __init__(self, fail_at: int) -> None:
        self.fail_at, self.batches = fail_at, 0

    def update(self, batch: ProcessedBatch) -> None:
        self.batches += 1
        if self.batches == self.fail_at:
            raise RuntimeError(f"accumulator failed on batch {self.batches}")

    def state(self) -> dict[str, np.ndarray]:
        return {}

    def merge(self, other: object) -> None: ...

    def load_state(self, state: Mapping[str, np.ndarray]) -> None: ...

    def merge_rules(self) -> dict[str, object]:
        return {}

    def result(self, into: object) -> None: ...


@pytest.mark.parametrize("fail_at", [1, 3, 5])  # the first batch, a middle one, the last one
def test_an_error_while_finishing_reaches_the_caller(
    trained: LoadedModel, mixed_aspect_dataset: Path, fail_at: int
) -> None:
    accumulators = [*standard_accumulators(trained, PARAMS), Exploding(fail_at)]
    with pytest.raises(RuntimeError, match=f"failed on batch {fail_at}"):
        collect_validation_state(trained, mixed_aspect_dataset, PARAMS, accumulators=accumulators)
    assert not finish_threads()


def test_cancel_stops_between_batches_and_joins_the_finisher(
    trained: LoadedModel, mixed_aspect_dataset: Path
) -> None:
    cancel = threading.Event()
    seen: list[int] = []

    def on_progress(done: int, total: int, stage: str) -> None:
        seen.append(done)
        cancel.set()

    with pytest.raises(Cancelled):
        collect_validation_state(trained, mixed_aspect_dataset, PARAMS, on_progress, cancel)
    assert seen and seen[-1] < 9
    assert not finish_threads()
