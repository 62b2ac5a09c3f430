"""Checkpoint in the request: no registration, reuse by file sha256, LRU eviction, and a file that changed."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from smartcash_core.checkpoint.native import save_checkpoint
from smartcash_core.classes import default_class_table
from smartcash_core.model.yolo import build_model
from tests.service.conftest import FAST_PARAMS, GatedRunner, upload_files, wait_final

Client = Callable[..., TestClient]


@pytest.fixture(scope="module")
def epochs(checkpoint_root: Path) -> list[str]:
    """Two more tiny checkpoints with other weights (other bytes) under ``runs/``."""
    names = []
    for seed in (11, 12):
        torch.manual_seed(seed)
        model = build_model("yolov5n", num_classes=17).eval()
        name = f"runs/epoch{seed}.safetensors"
        (checkpoint_root / "runs").mkdir(exist_ok=True)
        save_checkpoint(checkpoint_root / name, model, class_table=default_class_table(), imgsz=64)
        names.append(name)
    return names


def _submit(client: TestClient, dataset: str, checkpoint: str, **extra: object) -> dict:
    body = {"checkpoint": checkpoint, "dataset": dataset, "params": FAST_PARAMS, **extra}
    response = client.post("/v1/validations", json=body)
    assert response.status_code == 202, response.text
    return response.json()


def test_a_checkpoint_job_needs_no_registration_and_reuses_loaded_bytes(
    client_for: Client, synthetic_dataset: Path
) -> None:
    client = client_for()
    first = _submit(client, synthetic_dataset.name, "tiny.safetensors")
    assert first["model"] is None and first["checkpoint"] == "tiny.safetensors"
    done = wait_final(client, first["id"])
    assert done["status"] == "succeeded" and done["result"]["dataset"]["images"] == 24
    assert client.get("/v1/models").json()["models"] == []  # nothing registered, nothing to delete
    cache = client.get("/v1/cache").json()["model"]
    assert cache["entries"] == 1 and cache["bytes"] > 0
    # the same bytes under another path, then the same path again: no 409, no second load
    again = wait_final(client, _submit(client, synthetic_dataset.name, "nested/same.safetensors")["id"])
    third = wait_final(client, _submit(client, synthetic_dataset.name, "tiny.safetensors")["id"])
    assert again["status"] == third["status"] == "succeeded"
    assert again["result"]["metrics"] == done["result"]["metrics"] == third["result"]["metrics"]
    assert again["result"]["model"]["sha256"] == done["result"]["model"]["sha256"]
    after = client.get("/v1/cache").json()["model"]
    assert after["entries"] == 1 and after["hits"] >= cache["hits"] + 2


def test_a_registered_model_with_the_same_bytes_is_shared(
    client_for: Client, synthetic_dataset: Path
) -> None:
    client = client_for()
    assert client.post("/v1/models", json={"name": "t", "checkpoint": "tiny.safetensors"}).status_code == 201
    job = wait_final(client, _submit(client, synthetic_dataset.name, "nested/same.safetensors")["id"])
    assert job["status"] == "succeeded"
    assert client.get("/v1/cache").json()["model"]["entries"] == 1  # no second copy of the weights


def test_ephemeral_models_are_evicted_least_recently_used_under_the_byte_cap(
    client_for: Client, synthetic_dataset: Path, epochs: list[str]
) -> None:
    one_model = 8 * 1024 * 1024  # yolov5n (float32) is ~7 MB: the cap holds one
    client = client_for(model_cache_bytes=one_model)
    for checkpoint in ("tiny.safetensors", *epochs, "tiny.safetensors"):
        job = wait_final(client, _submit(client, synthetic_dataset.name, checkpoint)["id"])
        assert job["status"] == "succeeded" and job["checkpoint"] == checkpoint
    cache = client.get("/v1/cache").json()["model"]
    assert cache["entries"] == 1 and cache["evictions"] == 3 and cache["bytes"] <= one_model


def test_a_checkpoint_rewritten_while_its_job_waits_fails_the_job_not_validates_other_weights(
    client_for: Client, gated: GatedRunner, synthetic_dataset: Path, checkpoint_root: Path, epochs: list[str]
) -> None:
    client = client_for(runner=gated, model_cache_bytes=0)  # nothing kept: the job must reload the file
    moving = checkpoint_root / "runs" / "last.safetensors"
    shutil.copy(checkpoint_root / "tiny.safetensors", moving)
    blocker = _submit(client, synthetic_dataset.name, "tiny.safetensors")
    assert gated.started.wait(30)
    waiting = _submit(client, synthetic_dataset.name, "runs/last.safetensors")
    shutil.copy(checkpoint_root / epochs[0], moving)  # the pipeline overwrote last.safetensors meanwhile
    gated.gate.set()
    assert wait_final(client, blocker["id"])["status"] == "succeeded"
    failed = wait_final(client, waiting["id"])
    assert failed["status"] == "failed" and failed["error"]["code"] == "checkpoint_changed"
    assert "runs/last.safetensors" in failed["error"]["message"]
    assert str(checkpoint_root) not in failed["error"]["message"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"checkpoint": "../tiny.safetensors"}, 400, "path_rejected"),
        ({"checkpoint": "/etc/passwd"}, 400, "path_rejected"),
        ({"checkpoint": "missing.safetensors"}, 404, "not_found"),
        ({"checkpoint": "nested"}, 404, "not_found"),
        ({"checkpoint": "broken.safetensors"}, 422, "bad_checkpoint"),
        ({"checkpoint": ""}, 422, "invalid_request"),
        ({"checkpoint": "tiny.safetensors", "model": "tiny"}, 422, "invalid_request"),  # exactly one
        ({}, 422, "invalid_request"),
    ],
)
def test_checkpoint_errors_name_the_problem_and_queue_nothing(
    client_for: Client, synthetic_dataset: Path, body: dict, status: int, code: str
) -> None:
    client = client_for()
    response = client.post("/v1/validations", json={"dataset": synthetic_dataset.name, **body})
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert client.get("/v1/validations").json()["total"] == 0


def test_an_upload_may_name_a_checkpoint_and_tags(client_for: Client, synthetic_dataset: Path) -> None:
    client = client_for()
    response = client.post(
        "/v1/validations/upload",
        data={
            "checkpoint": "tiny.safetensors",
            "tags": '{"run": "u1", "epoch": "1"}',
            "params": '{"imgsz": 64}',
        },
        files=upload_files(synthetic_dataset, 4),
    )
    assert response.status_code == 202, response.text
    job = wait_final(client, response.json()["id"])
    assert job["status"] == "succeeded" and job["checkpoint"] == "tiny.safetensors"
    assert job["tags"] == {"run": "u1", "epoch": "1"} and job["result"]["dataset"]["images"] == 4
    for fields, code in (
        ({"checkpoint": "tiny.safetensors", "model": "tiny"}, "unprocessable"),  # exactly one
        ({"checkpoint": "tiny.safetensors", "tags": '{"run": 1}'}, "unprocessable"),
        ({"checkpoint": "tiny.safetensors", "tags": "not json"}, "unprocessable"),
        ({}, "unprocessable"),
    ):
        refused = client.post("/v1/validations/upload", data=fields, files=upload_files(synthetic_dataset, 1))
        assert refused.json()["error"]["code"] == code, (fields, refused.text)
