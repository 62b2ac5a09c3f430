"""End to end: the real server (``smartcash serve`` in a subprocess, uvicorn on a free loopback port)
driven over HTTP with httpx, including a kill -9 in the middle of a job."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service.conftest import FAST_PARAMS, upload_files, wait_final
from tests.service.servers import ServerProcess, sse_events

# Batches of one image: a job has 24 steps, so there is time to cancel it or kill the server mid-run.
SLOW_PARAMS: dict[str, Any] = {"imgsz": 160, "batch_size": 1, "workers": 0}


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, checkpoint_root: Path, data_root: Path
) -> Iterator[ServerProcess]:
    state = tmp_path_factory.mktemp("e2e_state")
    process = ServerProcess(
        state,
        checkpoint_root,
        data_root,
        SMARTCASH_MAX_QUEUE="1",
        SMARTCASH_MAX_UPLOAD_BYTES=str(1 << 20),
        SMARTCASH_RETRY_AFTER_S="3",
    )
    yield process.start()
    process.stop()


def _submit(client: httpx.Client, dataset: str, params: dict[str, Any]) -> httpx.Response:
    return client.post("/v1/validations", json={"model": "tiny", "dataset": dataset, "params": params})


def test_dataset_job_streams_progress_and_finishes(server: ServerProcess, synthetic_dataset: Path) -> None:
    with server.client() as client:
        submitted = _submit(client, synthetic_dataset.name, {**FAST_PARAMS, "batch_size": 4})
        assert submitted.status_code == 202
        job_id = submitted.json()["id"]
        events = list(sse_events(client, job_id))
        assert events[-1][1].pop("metrics")["map50"] is not None  # the headline travels with the event
        assert events[-1] == (
            "status",
            {"id": job_id, "status": "succeeded", "done": 24, "total": 24, "stage": events[-1][1]["stage"]},
        )
        done_counts = [data["done"] for kind, data in events if kind == "progress"]
        assert done_counts == sorted(done_counts) and done_counts
        result = client.get(submitted.headers["location"]).json()["result"]
        assert result["dataset"]["images"] == 24 and len(result["metrics"]["per_class"]) == 8


def test_upload_job_runs_to_completion(server: ServerProcess, synthetic_dataset: Path) -> None:
    with server.client() as client:
        response = client.post(
            "/v1/validations/upload",
            data={"model": "tiny", "params": json.dumps(FAST_PARAMS)},
            files=upload_files(synthetic_dataset, 6),
        )
        assert response.status_code == 202, response.text
        final = wait_final(client, response.json()["id"])
        assert final["status"] == "succeeded" and final["result"]["dataset"]["images"] == 6
        assert client.get(f"/v1/validations/{final['id']}/images").json()["total"] == 6


def test_cancel_mid_run(server: ServerProcess, synthetic_dataset: Path) -> None:
    with server.client() as client:
        job_id = _submit(client, synthetic_dataset.name, SLOW_PARAMS).json()["id"]
        for kind, data in sse_events(client, job_id):
            if kind == "progress" and data["done"] >= 1:
                assert client.post(f"/v1/validations/{job_id}/cancel").json()["status"] in {
                    "cancelling",
                    "cancelled",
                }
            if kind == "status":
                assert data["status"] == "cancelled" and data["done"] < 24
        assert wait_final(client, job_id)["status"] == "cancelled"


def test_queue_full_answers_429(server: ServerProcess, synthetic_dataset: Path) -> None:
    with server.client() as client:
        responses = [_submit(client, synthetic_dataset.name, SLOW_PARAMS) for _ in range(4)]
        statuses = [response.status_code for response in responses]
        assert statuses[:2] == [202, 202] and 429 in statuses[2:], statuses
        refused = next(response for response in responses if response.status_code == 429)
        assert refused.headers["retry-after"] == "3" and refused.json()["error"]["code"] == "queue_full"
        for response in responses:
            if response.status_code == 202:
                client.post(f"/v1/validations/{response.json()['id']}/cancel")
        for response in responses:
            if response.status_code == 202:
                assert wait_final(client, response.json()["id"])["status"] in {"cancelled", "succeeded"}


def test_upload_over_the_limit_is_refused_before_parsing(server: ServerProcess) -> None:
    with server.client() as client:
        declared = client.post(
            "/v1/validations/upload",
            data={"model": "tiny"},
            files=[("files", ("big.jpg", b"\0" * (2 << 20), "image/jpeg"))],
        )
        assert declared.status_code == 413 and declared.json()["error"]["code"] == "payload_too_large"

        def chunks() -> Iterator[bytes]:  # no Content-Length: the server must count while streaming
            yield b'--b\r\nContent-Disposition: form-data; name="files"; filename="a.jpg"\r\n\r\n'
            for _ in range(20):
                yield b"\0" * 65536

        streamed = client.post(
            "/v1/validations/upload",
            content=chunks(),
            headers={"content-type": "multipart/form-data; boundary=b"},
        )
        assert streamed.status_code == 413 and "stopped reading" in streamed.json()["error"]["message"]


def test_path_traversal_bad_key_and_malformed_multipart(server: ServerProcess, checkpoint_root: Path) -> None:
    with server.client() as client:
        for dataset in ("../../etc", "/etc", "..", "x/../../y"):
            response = _submit(client, dataset, FAST_PARAMS)
            assert response.status_code == 400 and response.json()["error"]["code"] == "path_rejected", (
                dataset
            )
        for checkpoint in (
            "/etc/passwd",
            "../checkpoints/tiny.safetensors",
            str(checkpoint_root / "tiny.safetensors"),
        ):
            response = client.post("/v1/models", json={"name": "evil", "checkpoint": checkpoint})
            assert response.status_code == 400, checkpoint
        assert client.get("/v1/models/..%2F..%2Fetc").status_code in {404, 422}
        malformed = client.post(
            "/v1/validations/upload",
            content=b"--zz\r\ngarbage without headers",
            headers={"content-type": "multipart/form-data; boundary=zz"},
        )
        assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "bad_upload"
    for headers in ({}, {"X-API-Key": "wrong"}):
        response = httpx.get(f"{server.url}/v1/models", headers=headers)
        assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"
    assert httpx.get(f"{server.url}/v2/health/live").status_code == 200


def test_kill9_mid_job_then_restart_marks_it_interrupted_and_keeps_results(
    tmp_path_factory: pytest.TempPathFactory, checkpoint_root: Path, data_root: Path, synthetic_dataset: Path
) -> None:
    state = tmp_path_factory.mktemp("kill_state")
    first = ServerProcess(state, checkpoint_root, data_root).start()
    try:
        with first.client() as client:
            finished = wait_final(client, _submit(client, synthetic_dataset.name, FAST_PARAMS).json()["id"])
            assert finished["status"] == "succeeded"
            running_id = _submit(client, synthetic_dataset.name, SLOW_PARAMS).json()["id"]
            for kind, data in sse_events(client, running_id):
                if kind == "progress" and data["done"] >= 1:
                    break
        first.kill9()
    finally:
        first.stop()
    second = ServerProcess(state, checkpoint_root, data_root).start()
    try:
        with second.client() as client:
            interrupted = client.get(f"/v1/validations/{running_id}").json()
            assert interrupted["status"] == "interrupted" and interrupted["error"]["code"] == "interrupted"
            assert client.get(f"/v1/validations/{finished['id']}").json()["result"] == finished["result"]
            assert client.get("/v1/validations").json()["total"] == 2
    finally:
        second.stop()
