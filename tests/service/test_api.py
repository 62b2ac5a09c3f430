"""Every endpoint and error path through FastAPI's test client, on the real validation pipeline."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.service.conftest import FAST_PARAMS, GatedRunner, load_tiny, upload_files, wait_final

Client = Callable[..., TestClient]


def _submit(client: TestClient, dataset: str, **params: object) -> dict:
    body = {"model": "tiny", "dataset": dataset, "params": {**FAST_PARAMS, **params}}
    response = client.post("/v1/validations", json=body)
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"/v1/validations/{response.json()['id']}"
    return response.json()


def test_health_live_always_and_ready_only_with_a_model(client_for: Client) -> None:
    client = client_for()
    assert client.get("/v2/health/live").json()["status"] == "ok"
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 503 and ready.json()["status"] == "not_ready"
    load_tiny(client)
    assert client.get("/v2/health/ready").json() == {"status": "ok", "models": 1, "workers_alive": True}


def test_models_load_describe_reuse_and_delete(client_for: Client) -> None:
    client = client_for()
    created = client.post("/v1/models", json={"name": "tiny", "checkpoint": "tiny.safetensors"})
    assert created.status_code == 201 and created.headers["location"] == "/v1/models/tiny"
    info = created.json()
    assert (
        info["device"] == "cpu" and info["imgsz"] == 64 and info["num_classes"] == 17 and info["params"] > 0
    )
    assert len(info["class_table"]["mapped_names"]) == 8 and not info["reused"]
    again = client.post("/v1/models", json={"name": "tiny", "checkpoint": "tiny.safetensors"}).json()
    assert again["loaded_at"] == info["loaded_at"]  # idempotent: the very same entry
    twin = client.post("/v1/models", json={"name": "twin", "checkpoint": "nested/same.safetensors"}).json()
    assert twin["reused"] and twin["file_sha256"] == info["file_sha256"] and twin["sha256"] == info["sha256"]
    model_cache = client.get("/v1/cache").json()["model"]
    assert model_cache["entries"] == 1 and model_cache["hits"] == 1 and model_cache["bytes"] > 0
    assert [m["name"] for m in client.get("/v1/models").json()["models"]] == ["tiny", "twin"]
    assert client.get("/v1/models/twin").json()["checkpoint"] == "nested/same.safetensors"
    assert client.delete("/v1/models/twin").status_code == 204
    assert client.get("/v1/models/twin").status_code == 404
    assert client.delete("/v1/models/twin").json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"name": "x", "checkpoint": "../tiny.safetensors"}, 400, "path_rejected"),
        ({"name": "x", "checkpoint": "/etc/passwd"}, 400, "path_rejected"),
        ({"name": "x", "checkpoint": "missing.safetensors"}, 404, "not_found"),
        ({"name": "x", "checkpoint": "nested"}, 404, "not_found"),
        ({"name": "x", "checkpoint": "a" * 300}, 400, "path_rejected"),  # ENAMETOOLONG, not a 500
        ({"name": "x", "checkpoint": "broken.safetensors"}, 422, "bad_checkpoint"),
        ({"name": "x", "checkpoint": "tiny.safetensors", "device": "cuda:7"}, 422, "bad_device"),
        ({"name": "x", "checkpoint": "tiny.safetensors", "device": "tpu"}, 422, "invalid_request"),
        ({"name": "../x", "checkpoint": "tiny.safetensors"}, 422, "invalid_request"),
        ({"name": "x", "checkpoint": "tiny.safetensors", "extra": 1}, 422, "invalid_request"),
    ],
)
def test_model_load_errors_name_the_problem(client_for: Client, body: dict, status: int, code: str) -> None:
    response = client_for().post("/v1/models", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"] and response.json()["request_id"]


def test_model_symlink_escaping_the_root_and_name_conflict(
    client_for: Client, checkpoint_root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes((checkpoint_root / "tiny.safetensors").read_bytes())
    link = checkpoint_root / f"escape_{tmp_path.name}.safetensors"
    link.symlink_to(outside)
    client = client_for()
    escaped = client.post("/v1/models", json={"name": "x", "checkpoint": link.name})
    assert escaped.status_code == 400 and "outside" in escaped.json()["error"]["message"]
    load_tiny(client)
    conflict = client.post("/v1/models", json={"name": "tiny", "checkpoint": "broken.safetensors"})
    assert conflict.status_code == 409 and "DELETE" in conflict.json()["error"]["fix"]


def test_dataset_validation_runs_to_a_result_with_the_json_contract(
    client_for: Client, synthetic_dataset: Path
) -> None:
    client = client_for()
    load_tiny(client)
    job = _submit(client, synthetic_dataset.name)
    assert job["status"] in {"queued", "running", "succeeded"} and job["source_kind"] == "dataset"
    final = wait_final(client, job["id"])
    assert final["status"] == "succeeded", final["error"]
    result = final["result"]
    assert result["dataset"]["images"] == 24 and "per_image" not in result
    assert len(result["metrics"]["per_class"]) == 8 and 0.0 <= result["metrics"]["map50"] <= 1.0
    assert set(result["cache"]) >= {"image", "label", "model", "tensor"}
    assert final["progress"]["fraction"] == 1.0 and final["params"]["imgsz"] == 64
    images = client.get(f"/v1/validations/{job['id']}/images", params={"offset": 20, "limit": 10}).json()
    assert images["total"] == 24 and len(images["items"]) == 4
    embedded = client.get(f"/v1/validations/{job['id']}", params={"include_per_image": True}).json()
    assert len(embedded["result"]["per_image"]) == 24
    page = client.get("/v1/validations", params={"status": "succeeded", "limit": 1}).json()
    assert page["total"] == 1 and page["items"][0]["id"] == job["id"] and page["items"][0]["result"] is None


def test_dataset_validation_errors(client_for: Client, synthetic_dataset: Path, data_root: Path) -> None:
    client = client_for()
    load_tiny(client)
    base = {"model": "tiny", "params": FAST_PARAMS}
    cases = [
        ({**base, "model": "nope", "dataset": synthetic_dataset.name}, 404, "not_found"),
        ({**base, "dataset": "../../etc"}, 400, "path_rejected"),
        ({**base, "dataset": str(synthetic_dataset)}, 400, "path_rejected"),
        ({**base, "dataset": "no_such_set"}, 400, "dataset_not_found"),
        ({**base, "dataset": "d" * 300}, 400, "path_rejected"),  # ENAMETOOLONG, not a 500
        ({**base, "dataset": f"{synthetic_dataset.name}/images/val"}, 422, "unprocessable"),
        (
            {**base, "dataset": synthetic_dataset.name, "params": {"imgsz": 64, "confidence": 0.5}},
            422,
            "invalid_request",
        ),
        ({**base, "dataset": synthetic_dataset.name, "params": {"imgsz": 8}}, 422, "invalid_request"),
    ]
    for body, status, code in cases:
        response = client.post("/v1/validations", json=body)
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), body


def test_a_dataset_of_broken_images_fails_the_job_with_a_code_and_a_relative_path(
    client_for: Client, tmp_path_factory: pytest.TempPathFactory, data_root: Path
) -> None:
    broken = tmp_path_factory.mktemp("brokenset")
    (broken / "images" / "val").mkdir(parents=True)
    (broken / "images" / "val" / "a.jpg").write_bytes(b"not a jpeg")  # an image at submit, none at run
    assert broken.parent == data_root
    client = client_for()
    load_tiny(client)
    final = wait_final(client, _submit(client, broken.name)["id"])
    assert final["status"] == "failed" and final["result"] is None
    assert final["error"]["code"] == "dataset_empty", final["error"]
    assert str(data_root) not in final["error"]["message"] and broken.name in final["error"]["message"]
    images = client.get(f"/v1/validations/{final['id']}/images")
    assert images.status_code == 409 and "failed" in images.json()["error"]["message"]
    assert "wait until" not in images.json()["error"]["fix"]


def test_upload_with_wait_returns_the_result(client_for: Client, synthetic_dataset: Path) -> None:
    client = client_for()
    load_tiny(client)
    data = {"model": "tiny", "params": json.dumps(FAST_PARAMS)}
    response = client.post(
        "/v1/validations/upload?wait=true", data=data, files=upload_files(synthetic_dataset, 4)
    )
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "succeeded" and job["source_kind"] == "upload"
    assert job["result"]["dataset"]["images"] == 4
    queued = client.post("/v1/validations/upload", data=data, files=upload_files(synthetic_dataset, 3))
    assert queued.status_code == 202
    assert wait_final(client, queued.json()["id"])["result"]["dataset"]["images"] == 3


def test_upload_limits_and_malformed_bodies(client_for: Client, synthetic_dataset: Path) -> None:
    client = client_for(max_upload_bytes=200_000, max_upload_files=4, wait_max_images=1)
    load_tiny(client)
    data = {"model": "tiny", "params": json.dumps(FAST_PARAMS)}
    too_big = client.post(
        "/v1/validations/upload", data=data, files=[("files", ("a.jpg", b"\0" * 300_000, "image/jpeg"))]
    )
    assert too_big.status_code == 413 and "SMARTCASH_MAX_UPLOAD_BYTES" in too_big.json()["error"]["fix"]
    too_many = client.post("/v1/validations/upload", data=data, files=upload_files(synthetic_dataset, 3))
    assert too_many.status_code == 413 and "files" in too_many.json()["error"]["message"]
    cases = [
        ({"content": b"{}", "headers": {"content-type": "application/json"}}, 415),
        (
            {
                "content": b"--x\r\nnot multipart",
                "headers": {"content-type": "multipart/form-data; boundary=x"},
            },
            400,
        ),
        ({"content": b"", "headers": {"content-type": "multipart/form-data"}}, 400),
        ({"data": {"params": "{}"}, "files": upload_files(synthetic_dataset, 1)}, 422),
        (
            {
                "data": {"model": "tiny", "params": '{"imgsz": "big"}'},
                "files": upload_files(synthetic_dataset, 1),
            },
            422,
        ),
        (
            {"data": {"model": "tiny"}, "files": [("files", ("a.txt", b"0 0.5 0.5 0.1 0.1", "text/plain"))]},
            400,
        ),
        ({"data": {"model": "ghost"}, "files": upload_files(synthetic_dataset, 1)}, 404),
    ]
    for kwargs, status in cases:
        response = client.post("/v1/validations/upload", **kwargs)
        assert response.status_code == status, (kwargs.get("data"), response.text)
        assert response.json()["error"]["message"]
    over_wait = client.post(
        "/v1/validations/upload?wait=true", data=data, files=upload_files(synthetic_dataset, 2)
    )
    assert over_wait.status_code == 422 and "wait=true" in over_wait.json()["error"]["message"]


def test_cancel_a_running_job_and_sse_reports_progress_then_status(
    client_for: Client, gated: GatedRunner, synthetic_dataset: Path
) -> None:
    client = client_for(runner=gated)
    load_tiny(client)
    job = _submit(client, synthetic_dataset.name, batch_size=4)
    assert gated.started.wait(30)
    cancelling = client.post(f"/v1/validations/{job['id']}/cancel").json()
    assert cancelling["status"] == "cancelling"
    gated.gate.set()
    with client.stream("GET", f"/v1/validations/{job['id']}/events") as events:
        assert events.headers["content-type"].startswith("text/event-stream")
        text = events.read().decode()
    assert "event: status" in text and '"status": "cancelled"' in text
    final = wait_final(client, job["id"])
    assert final["status"] == "cancelled" and final["progress"]["done"] < 24 and final["result"] is None
    again = client.post(f"/v1/validations/{job['id']}/cancel")
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
    assert client.post(f"/v1/validations/{'0' * 32}/cancel").status_code == 404
    assert client.get("/v1/validations/not-a-job-id").status_code == 422


def test_sse_streams_progress_of_a_running_job(
    client_for: Client, gated: GatedRunner, synthetic_dataset: Path
) -> None:
    client = client_for(runner=gated)
    load_tiny(client)
    job = _submit(client, synthetic_dataset.name, batch_size=8)
    assert gated.started.wait(30)
    gated.gate.set()
    with client.stream("GET", f"/v1/validations/{job['id']}/events") as events:
        lines = [line for line in events.iter_lines() if line.startswith(("event:", "data:"))]
    kinds = [line for line in lines if line.startswith("event:")]
    assert kinds[-1] == "event: status" and set(kinds[:-1]) <= {"event: progress"}
    final = json.loads(lines[-1].removeprefix("data: "))
    metrics = final.pop("metrics")  # the final event of a succeeded job carries the headline: no extra GET
    assert final == {"id": job["id"], "status": "succeeded", "done": 24, "total": 24, "stage": final["stage"]}
    result = client.get(f"/v1/validations/{job['id']}").json()["result"]["metrics"]
    assert metrics == {
        "map50": result["map50"],
        "map50_95": result["map50_95"],
        "per_class_ap50": {entry["name"]: entry["ap50"] for entry in result["per_class"]},
    }
    assert len(metrics["per_class_ap50"]) == len(result["per_class"]) > 0


def test_queue_full_answers_429_with_retry_after_and_queued_jobs_cancel_at_once(
    client_for: Client, gated: GatedRunner, synthetic_dataset: Path
) -> None:
    client = client_for(runner=gated, max_queue=1, retry_after_s=7)
    load_tiny(client)
    running = _submit(client, synthetic_dataset.name)
    assert gated.started.wait(30)
    queued = _submit(client, synthetic_dataset.name)
    refused = client.post("/v1/validations", json={"model": "tiny", "dataset": synthetic_dataset.name})
    assert refused.status_code == 429 and refused.headers["retry-after"] == "7"
    assert client.get("/v1/validations").json()["total"] == 2  # a refused job leaves no record
    assert client.post(f"/v1/validations/{queued['id']}/cancel").json()["status"] == "cancelled"
    gated.gate.set()
    assert wait_final(client, running["id"])["status"] == "succeeded"
    assert client.get(f"/v1/validations/{queued['id']}").json()["status"] == "cancelled"


def test_restart_marks_active_jobs_interrupted_and_keeps_results(
    client_for: Client, gated: GatedRunner, synthetic_dataset: Path, tmp_path: Path
) -> None:
    first = client_for()
    load_tiny(first)
    done = wait_final(first, _submit(first, synthetic_dataset.name)["id"])
    blocked = client_for(runner=gated, state_dir=tmp_path / "state2")
    load_tiny(blocked)
    active = _submit(blocked, synthetic_dataset.name)
    assert gated.started.wait(30)
    restarted = client_for(state_dir=tmp_path / "state2")  # a new process on the same state dir
    assert restarted.get(f"/v1/validations/{active['id']}").json()["status"] == "interrupted"
    again = client_for()  # and the finished job of the first app is intact after its restart
    assert again.get(f"/v1/validations/{done['id']}").json()["result"] == done["result"]


def test_api_key_guards_v1_and_metrics_but_not_health_or_docs(client_for: Client) -> None:
    client = client_for(api_key="s3cret")
    for path in ("/v1/models", "/v1/cache", "/metrics", "/v1/validations"):
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers={"X-API-Key": "wrong"}).json()["error"]["code"] == "unauthorized"
        assert client.get(path, headers={"X-API-Key": "s3cret"}).status_code == 200, path
    for path in ("/v2/health/live", "/docs", "/openapi.json"):
        assert client.get(path).status_code == 200, path
    assert client.get("/v2/health/ready").status_code == 503


def test_cache_metrics_request_id_and_openapi(client_for: Client, synthetic_dataset: Path) -> None:
    client = client_for()
    load_tiny(client)
    wait_final(client, _submit(client, synthetic_dataset.name)["id"])
    caches = client.get("/v1/cache").json()
    assert set(caches) == {"image", "label", "model", "tensor"} and caches["image"]["misses"] >= 0
    cleared = client.delete("/v1/cache").json()
    assert cleared["cleared"] == ["image", "label"] and cleared["caches"]["image"]["bytes"] == 0
    echoed = client.get("/v2/health/live", headers={"X-Request-ID": "trace-42"})
    assert echoed.headers["x-request-id"] == "trace-42"
    assert (
        len(client.get("/v2/health/live", headers={"X-Request-ID": "bad id\n"}).headers["x-request-id"]) == 32
    )
    text = client.get("/metrics").text
    for needle in (
        'request_duration_seconds_count{method="POST",route="/v1/validations",status="202"} 1.0',
        'route="/v1/validations/{job_id}"',
        'smartcash_validation_jobs_total{status="succeeded"} 1.0',
        'smartcash_validation_job_duration_seconds_count{status="succeeded"} 1.0',
        "smartcash_validation_queue_depth 0.0",
        'smartcash_cache_bytes{cache="image"}',
        'smartcash_cache_hit_ratio{cache="image"}',
        "smartcash_model_load_seconds_count 1.0",
        "smartcash_models_loaded 1.0",
    ):
        assert needle in text, needle
    schema = client.get("/openapi.json").json()
    assert set(schema["paths"]) >= {
        "/v2/health/live",
        "/v2/health/ready",
        "/v1/models",
        "/v1/models/{name}",
        "/v1/validations",
        "/v1/validations/upload",
        "/v1/validations/{job_id}",
        "/v1/validations/{job_id}/events",
        "/v1/validations/{job_id}/cancel",
        "/v1/validations/{job_id}/images",
        "/v1/cache",
        "/metrics",
    }
    upload = schema["paths"]["/v1/validations/upload"]["post"]
    assert "multipart/form-data" in upload["requestBody"]["content"]
