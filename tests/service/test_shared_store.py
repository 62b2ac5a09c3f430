"""Two replicas (two apps in this process) on one PostgreSQL job store: any replica answers for any job.

Fast and deterministic (a gated runner holds a job at a batch boundary); the same behaviours between real
processes, kill -9 included, are in ``test_replicas.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient

from smartcash_core.checkpoint.native import save_checkpoint
from smartcash_core.classes import default_class_table
from smartcash_core.model.yolo import build_model
from tests.service.conftest import FAST_PARAMS, GatedRunner, load_tiny, upload_files, wait_final

Client = Callable[..., TestClient]
SHARED = {"lease_s": 2.0, "claim_poll_s": 0.1, "sse_poll_s": 0.1}


@pytest.fixture(scope="module")
def other_checkpoint(checkpoint_root: Path) -> str:
    """A second tiny checkpoint with other weights (other bytes, other sha256) under the checkpoint root."""
    torch.manual_seed(1)
    model = build_model("yolov5n", num_classes=17).eval()
    save_checkpoint(
        root := checkpoint_root / "other.safetensors", model, class_table=default_class_table(), imgsz=64
    )
    return root.name


@pytest.fixture()  # postgres_url first: its database must outlive the apps (teardown runs in reverse)
def replica(postgres_url: str, client_for: Client, tmp_path: Path) -> Callable[..., TestClient]:
    def build(name: str, runner: Any = None, **overrides: Any) -> TestClient:
        settings = {"database_url": postgres_url, "replica_id": name, "state_dir": tmp_path / name, **SHARED}
        return client_for(runner=runner, **{**settings, **overrides})

    return build


def _submit(client: TestClient, dataset: str, model: str = "tiny", **params: Any) -> str:
    body = {"model": model, "dataset": dataset, "params": {**FAST_PARAMS, **params}}
    response = client.post("/v1/validations", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_a_job_runs_where_its_checkpoint_is_loaded_and_every_replica_serves_it(
    replica: Callable[..., TestClient], synthetic_dataset: Path, other_checkpoint: str
) -> None:
    a, b = replica("a"), replica("b")
    load_tiny(a)
    assert b.post("/v1/models", json={"name": "tiny", "checkpoint": other_checkpoint}).status_code == 201
    # same name, other weights on b: b must not take a's job (it would validate other weights)
    job_id = _submit(a, synthetic_dataset.name)
    final = wait_final(b, job_id)
    assert final["status"] == "succeeded" and final["replica"] == "a"
    assert a.get(f"/v1/validations/{job_id}").json()["result"] == final["result"]
    other_id = _submit(b, synthetic_dataset.name)
    assert wait_final(a, other_id)["replica"] == "b"
    assert b.get("/v1/validations").json()["total"] == 2 == a.get("/v1/validations").json()["total"]
    page = b.get(f"/v1/validations/{job_id}/images", params={"sort": "errors", "limit": 5}).json()
    assert page["total"] == 24 and len(page["items"]) == 5 and page["sort"] == "errors"
    errors = [row["fp"] + row["fn"] for row in page["items"]]
    assert errors == sorted(errors, reverse=True)
    embedded = b.get(f"/v1/validations/{job_id}", params={"include_per_image": True}).json()
    assert [row["file"] for row in embedded["result"]["per_image"]] == [
        row["file"]
        for row in a.get(f"/v1/validations/{job_id}/images", params={"limit": 100}).json()["items"]
    ]


def test_plots_of_a_job_that_ran_on_a_are_drawn_by_b(
    replica: Callable[..., TestClient], synthetic_dataset: Path, tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib")
    a, b = replica("a"), replica("b")
    load_tiny(a)
    job_id = _submit(a, synthetic_dataset.name)
    assert wait_final(a, job_id)["status"] == "succeeded"
    assert not (tmp_path / "b" / "plots" / job_id).exists()  # b never saw the job's files
    names = [item["name"] for item in b.get(f"/v1/validations/{job_id}/plots").json()["items"]]
    png = b.get(f"/v1/validations/{job_id}/plots/{names[0]}")
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    assert png.content == a.get(f"/v1/validations/{job_id}/plots/{names[0]}").content


def test_cancel_on_b_stops_a_job_running_on_a_and_sse_on_b_follows_it(
    replica: Callable[..., TestClient], gated: GatedRunner, synthetic_dataset: Path
) -> None:
    a, b = replica("a", runner=gated), replica("b")
    load_tiny(a)
    job_id = _submit(a, synthetic_dataset.name, batch_size=4)
    assert gated.started.wait(30)
    _until(lambda: b.get(f"/v1/validations/{job_id}").json()["progress"]["done"] >= 4)
    assert b.post(f"/v1/validations/{job_id}/cancel").json()["status"] == "cancelling"
    assert a.get(f"/v1/validations/{job_id}").json()["status"] == "cancelling"
    # a learns of it from the store (its lease keeper, or its next progress write) and stops the run
    _until(lambda: a.app.state.smartcash.jobs.live(job_id).stop_reason == "cancelled", timeout=10)
    gated.gate.set()
    with b.stream("GET", f"/v1/validations/{job_id}/events") as events:
        lines = [line for line in events.iter_lines() if line.startswith("data:")]
    final = json.loads(lines[-1].removeprefix("data: "))
    assert final["status"] == "cancelled" and final["done"] < 24
    record = wait_final(b, job_id)
    assert record["status"] == "cancelled" and record["replica"] == "a" and record["result"] is None


def test_a_replica_that_stops_renewing_loses_its_job_and_cannot_write_it_back(
    replica: Callable[..., TestClient], gated: GatedRunner, synthetic_dataset: Path
) -> None:
    a, b = replica("a", runner=gated), replica("b")
    load_tiny(a)
    job_id = _submit(a, synthetic_dataset.name, batch_size=4)
    assert gated.started.wait(30)
    a.app.state.smartcash.jobs._keeper.stop(5)  # a hangs: its lease keeper stops, its job is stuck
    _until(lambda: b.get(f"/v1/validations/{job_id}").json()["status"] == "interrupted", timeout=20)
    gated.gate.set()  # a wakes up: its next progress write finds the job gone and stops it
    _until(lambda: a.app.state.smartcash.jobs.live(job_id) is None)
    record = b.get(f"/v1/validations/{job_id}").json()
    assert record["status"] == "interrupted" and "lease" in record["error"]["message"]
    assert record["result"] is None and b.get(f"/v1/validations/{job_id}/images").status_code == 409


def test_an_upload_held_by_a_and_cancelled_on_b_is_released_on_a(
    replica: Callable[..., TestClient], gated: GatedRunner, synthetic_dataset: Path
) -> None:
    a, b = replica("a", runner=gated), replica("b")
    load_tiny(a)
    load_tiny(b)  # b could run the upload, but its bytes are on a: only a may claim it
    busy = _submit(a, synthetic_dataset.name)
    assert gated.started.wait(30)
    _until(lambda: a.get(f"/v1/validations/{busy}").json()["status"] == "running")
    data = {"model": "tiny", "params": json.dumps(FAST_PARAMS)}
    upload = a.post("/v1/validations/upload", data=data, files=upload_files(synthetic_dataset, 3)).json()
    time.sleep(0.5)  # several claim polls of b
    assert b.get(f"/v1/validations/{upload['id']}").json()["status"] == "queued"
    assert a.app.state.smartcash.jobs.live(upload["id"]) is not None
    assert b.post(f"/v1/validations/{upload['id']}/cancel").json()["status"] == "cancelled"
    _until(lambda: a.app.state.smartcash.jobs.live(upload["id"]) is None)  # a's lease keeper let go
    gated.gate.set()
    assert wait_final(b, busy)["status"] == "succeeded"


def test_the_queue_bound_counts_jobs_queued_on_every_replica(
    replica: Callable[..., TestClient], gated: GatedRunner, synthetic_dataset: Path
) -> None:
    a, b = replica("a", runner=gated, max_queue=1), replica("b", runner=gated, max_queue=1, retry_after_s=9)
    load_tiny(a)
    load_tiny(b)
    running = [_submit(a, synthetic_dataset.name), _submit(b, synthetic_dataset.name)]
    _until(lambda: all(a.get(f"/v1/validations/{j}").json()["status"] == "running" for j in running))
    queued = _submit(a, synthetic_dataset.name)
    refused = b.post("/v1/validations", json={"model": "tiny", "dataset": synthetic_dataset.name})
    assert refused.status_code == 429 and refused.headers["retry-after"] == "9"
    assert b.post(f"/v1/validations/{queued}/cancel").json()["status"] == "cancelled"
    gated.gate.set()
    assert {wait_final(a, job_id)["status"] for job_id in running} == {"succeeded"}
    assert {wait_final(a, job_id)["replica"] for job_id in running} == {"a", "b"}
