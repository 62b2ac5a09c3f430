"""``POST /v1/comparisons`` in-process: real validations of the trained demo model and a degraded copy, the
state each job stores, and every refusal."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.comparisons import COMPARISON_STATE, ComparisonSlots
from service.errors import QueueFull
from smartcash_core.validation.comparison_state import state_from_bytes
from smartcash_core.validation.runner import run_validation
from tests.service.comparison_helpers import demo_checkpoints
from tests.service.conftest import FAST_PARAMS, load_tiny, upload_files, wait_final

PARAMS: dict[str, Any] = {"imgsz": 320, "batch_size": 8, "workers": 0}


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory, checkpoint_root: Path) -> Path:
    root = tmp_path_factory.mktemp("comparison_checkpoints")
    demo_checkpoints(root)
    (root / "tiny.safetensors").write_bytes((checkpoint_root / "tiny.safetensors").read_bytes())
    return root


@pytest.fixture()
def client(client_for: Callable[..., TestClient], demo_root: Path) -> TestClient:
    app = client_for(checkpoint_root=demo_root)
    for name in ("demo", "degraded"):
        response = app.post("/v1/models", json={"name": name, "checkpoint": f"{name}.safetensors"})
        assert response.status_code == 201, response.text
    return app


def _validate(client: TestClient, model: str, dataset: str, **params: Any) -> str:
    body = {"model": model, "dataset": dataset, "params": {**PARAMS, **params}}
    response = client.post("/v1/validations", json=body)
    assert response.status_code == 202, response.text
    job = wait_final(client, response.json()["id"], timeout=180)
    assert job["status"] == "succeeded", job
    return str(job["id"])


def _compare(client: TestClient, baseline: str, candidate: str, **extra: Any) -> Any:
    return client.post("/v1/comparisons", json={"baseline": baseline, "candidate": candidate, **extra})


def _estimates(view: dict[str, Any]) -> list[dict[str, Any]]:
    found = [view["map50"], view["map50_95"]]
    for item in view["per_class"]:
        found += [item["ap50"], item["ap50_95"]]
    return found


def test_degraded_checkpoint_is_worse_and_the_same_one_is_not(
    client: TestClient, synthetic_dataset: Path
) -> None:
    dataset = synthetic_dataset.name
    demo, degraded, again = (_validate(client, model, dataset) for model in ("demo", "degraded", "demo"))
    response = _compare(client, demo, degraded, resamples=400, seed=1, confidence=0.9)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["baseline"], body["candidate"]) == (demo, degraded)
    assert body["models"] == {"baseline": "demo", "candidate": "degraded"}
    assert (body["resamples"], body["seed"], body["confidence"], body["images"]) == (400, 1, 0.9, 24)
    assert body["protocol"] == "yolo" and body["method"].startswith("paired bootstrap over images")
    headline = body["mapped"]["map50_95"]
    assert headline["verdict"] == "worse" and headline["ci"][1] < 0 and headline["delta"] < 0
    demo_result = client.get(f"/v1/validations/{demo}").json()["result"]["metrics"]
    assert headline["baseline"] == pytest.approx(demo_result["map50_95"], abs=1e-12)
    assert body["fine"]["map50"]["baseline"] == pytest.approx(demo_result["fine"]["map50"], abs=1e-12)
    assert [item["id"] for item in body["mapped"]["per_class"]] == [c["id"] for c in demo_result["per_class"]]

    same = _compare(client, demo, again).json()
    assert (same["resamples"], same["seed"], same["confidence"]) == (1000, 0, 0.95)  # the defaults
    for item in _estimates(same["mapped"]) + _estimates(same["fine"]):
        assert item["delta"] == 0.0 and item["ci"] == [0.0, 0.0]
        assert item["verdict"] == "no significant difference"
    assert _compare(client, demo, again).json() == same  # seeded: the same answer twice


def test_each_succeeded_job_stores_its_state(client: TestClient, synthetic_dataset: Path) -> None:
    job_id = _validate(client, "demo", synthetic_dataset.name)
    content = client.app.state.smartcash.jobs.store.get_artifact(job_id, COMPARISON_STATE)  # type: ignore[attr-defined]
    state = state_from_bytes(content)
    files = sorted(
        row["file"]
        for row in client.get(f"/v1/validations/{job_id}?include_per_image=true").json()["result"][
            "per_image"
        ]
    )
    assert sorted(state.image_keys) == files and state.protocol == "yolo"


def test_uploads_pair_by_image_content(client: TestClient, synthetic_dataset: Path) -> None:
    parts = upload_files(synthetic_dataset, 6)
    renamed = [(field, (f"copy_{name}", data, kind)) for field, (name, data, kind) in parts]
    jobs = []
    for files in (parts, renamed, upload_files(synthetic_dataset, 5)):
        response = client.post(
            "/v1/validations/upload", data={"model": "demo", "params": json.dumps(PARAMS)}, files=files
        )
        assert response.status_code == 202, response.text
        jobs.append(wait_final(client, response.json()["id"])["id"])
    same = _compare(client, jobs[0], jobs[1], resamples=50)
    assert same.status_code == 200, same.text
    assert same.json()["images"] == 6 and same.json()["mapped"]["map50"]["delta"] == 0.0
    fewer = _compare(client, jobs[0], jobs[2], resamples=50)
    assert fewer.status_code == 400 and fewer.json()["error"]["code"] == "comparison_images_differ"


def test_refusals(
    client: TestClient, synthetic_dataset: Path, mixed_aspect_dataset: Path, data_root: Path
) -> None:
    dataset = synthetic_dataset.name
    base = _validate(client, "demo", dataset)
    coco = _validate(client, "demo", dataset, protocol="coco")
    other_split = _validate(client, "demo", mixed_aspect_dataset.name)
    upload = client.post(
        "/v1/validations/upload",
        data={"model": "demo", "params": json.dumps(PARAMS)},
        files=upload_files(synthetic_dataset, 3),
    ).json()["id"]
    wait_final(client, upload)
    cases = [
        (_compare(client, base, coco), 400, "comparison_protocol_differs"),
        (_compare(client, base, upload), 400, "comparison_images_differ"),
        (_compare(client, base, "0" * 32), 404, "not_found"),
        (_compare(client, base, "not-a-job-id"), 422, "invalid_request"),
        (_compare(client, base, base, resamples=10_001), 422, "unprocessable"),
        (_compare(client, base, base, resamples=0), 422, "invalid_request"),
        (_compare(client, base, base, confidence=1.0), 422, "invalid_request"),
        (_compare(client, base, base, method="bca"), 422, "invalid_request"),
    ]
    if mixed_aspect_dataset.parent == data_root:  # both live under the data root: a second dataset
        cases.append((_compare(client, base, other_split), 400, "comparison_images_differ"))
    for response, status, code in cases:
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code, response.text


def test_unfinished_and_stateless_jobs(
    client_for: Callable[..., TestClient], synthetic_dataset: Path, gated: Any
) -> None:
    def without_state(*args: Any) -> Any:
        result = run_validation(*args)
        result.evaluator = None  # as if validated by a release that kept no state
        return result

    plain = client_for(runner=without_state)
    load_tiny(plain)
    body = {"model": "tiny", "dataset": synthetic_dataset.name, "params": FAST_PARAMS}
    first, second = (
        wait_final(plain, plain.post("/v1/validations", json=body).json()["id"]) for _ in range(2)
    )
    missing = _compare(plain, first["id"], second["id"])
    assert missing.status_code == 409 and missing.json()["error"]["code"] == "comparison_state_missing"

    held = client_for(runner=gated)
    load_tiny(held)
    running = held.post("/v1/validations", json=body).json()["id"]
    assert gated.started.wait(30)
    response = _compare(held, running, running)
    assert response.status_code == 409 and response.json()["error"]["code"] == "job_not_succeeded"
    gated.gate.set()


def test_comparison_slots_bound_concurrent_work() -> None:
    slots = ComparisonSlots(1, retry_after_s=3)
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        with slots.slot():
            entered.set()
            release.wait(10)

    worker = threading.Thread(target=hold)
    worker.start()
    assert entered.wait(10)
    with pytest.raises(QueueFull) as error, slots.slot():
        pass
    assert error.value.headers == {"Retry-After": "3"}
    release.set()
    worker.join(10)
    with slots.slot():  # free again
        pass


def test_state_survives_a_restart_on_postgres(
    client_for: Callable[..., TestClient], demo_root: Path, synthetic_dataset: Path, postgres_url: str
) -> None:
    """Both store backends keep the state with the result: a new replica on the same store compares."""
    first = client_for(checkpoint_root=demo_root, database_url=postgres_url)
    first.post("/v1/models", json={"name": "demo", "checkpoint": "demo.safetensors"})
    jobs = [_validate(first, "demo", synthetic_dataset.name) for _ in range(2)]
    second = client_for(
        checkpoint_root=demo_root, database_url=postgres_url, state_dir=demo_root.parent / "other"
    )
    response = _compare(second, *jobs, resamples=30)
    assert response.status_code == 200, response.text
    assert response.json()["mapped"]["map50_95"]["delta"] == 0.0
