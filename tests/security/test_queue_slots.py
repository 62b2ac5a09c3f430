"""Issue 11 item 11: a cancelled queued job frees its queue slot at once (``MAX_QUEUE=2``: cancel the queued
job, submit again: 202, not 429), for dataset jobs and for uploads (held in memory, pinned to a replica).

The first job is really running, held at its first batch by the gated runner, so the others stay queued.
Since the queue moved into the job store (a count of ``queued`` rows), a cancel frees the slot in the same
statement that marks the job ``cancelled``: this passes without a change and stays as the regression test.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from tests.service.conftest import FAST_PARAMS, GatedRunner, load_tiny, upload_files, wait_final


def _dataset_job(client: TestClient, dataset: Path) -> int | str:
    body = {"model": "tiny", "dataset": dataset.name, "params": FAST_PARAMS}
    response = client.post("/v1/validations", json=body)
    return response.json()["id"] if response.status_code == 202 else response.status_code


def _upload_job(client: TestClient, dataset: Path) -> int | str:
    form = {"model": "tiny", "params": json.dumps(FAST_PARAMS)}
    response = client.post("/v1/validations/upload", data=form, files=upload_files(dataset, 2))
    return response.json()["id"] if response.status_code == 202 else response.status_code


def test_cancelled_queued_jobs_free_their_slot_at_once(
    client_for: Callable[..., TestClient], gated: GatedRunner, synthetic_dataset: Path
) -> None:
    client = client_for(runner=gated, max_queue=2)
    load_tiny(client)
    running = _dataset_job(client, synthetic_dataset)
    assert gated.started.wait(30)
    for submit in (_dataset_job, _upload_job):
        first, second = submit(client, synthetic_dataset), submit(client, synthetic_dataset)
        assert isinstance(first, str) and isinstance(second, str)
        assert submit(client, synthetic_dataset) == 429  # two queued: the queue is full
        assert client.post(f"/v1/validations/{second}/cancel").json()["status"] == "cancelled"
        replacement = submit(client, synthetic_dataset)
        assert isinstance(replacement, str), replacement  # before: 429 until restart
        assert submit(client, synthetic_dataset) == 429
        for job in (first, replacement):
            assert client.post(f"/v1/validations/{job}/cancel").json()["status"] == "cancelled"
    gated.gate.set()
    assert wait_final(client, str(running))["status"] == "succeeded"
