"""Fixtures of the service tests: a tiny real checkpoint, roots, an app factory and a gated runner."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.main import create_app
from service.settings import Settings
from smartcash_core.cache import clear_all_caches
from smartcash_core.checkpoint.native import save_checkpoint
from smartcash_core.classes import default_class_table
from smartcash_core.model.yolo import build_model
from smartcash_core.validation.params import ProgressCallback, ValidationResult
from smartcash_core.validation.runner import run_validation

# Tiny images keep every real validation well under a second on a shared 2-core machine.
FAST_PARAMS: dict[str, Any] = {"imgsz": 64, "batch_size": 8}
FINAL = {"succeeded", "failed", "cancelled", "interrupted"}


@pytest.fixture(scope="session")
def checkpoint_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny.safetensors`` (an untrained yolov5n, 17 classes) and ``broken.safetensors`` (garbage)."""
    root = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    model = build_model("yolov5n", num_classes=17).eval()
    save_checkpoint(root / "tiny.safetensors", model, class_table=default_class_table(), imgsz=64)
    (root / "nested").mkdir()
    (root / "nested" / "same.safetensors").write_bytes((root / "tiny.safetensors").read_bytes())
    (root / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    return root


@pytest.fixture(scope="session")
def data_root(synthetic_dataset: Path) -> Path:
    """The data root holds the shared synthetic dataset as ``<data_root>/<synthetic_dataset.name>``."""
    return synthetic_dataset.parent


@pytest.fixture()
def settings_for(tmp_path: Path, checkpoint_root: Path, data_root: Path) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_root": data_root,
            "checkpoint_root": checkpoint_root,
            "state_dir": tmp_path / "state",
            "log_json": False,
        }
        values.update(overrides)
        return Settings(**values)

    return build


class GatedRunner:
    """The real ``run_validation``, held at its first progress report until ``gate`` opens.

    Lets a test observe a job that is really running (cancel it, fill the queue behind it)."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()

    def __call__(
        self,
        model: Any,
        source: Any,
        params: Any,
        on_progress: ProgressCallback | None,
        cancel: threading.Event | None,
    ) -> ValidationResult:
        def progress(done: int, total: int, stage: str) -> None:
            if on_progress is not None:
                on_progress(done, total, stage)
            self.started.set()
            self.gate.wait(30)

        return run_validation(model, source, params, progress, cancel)


@pytest.fixture()
def gated() -> Iterator[GatedRunner]:
    runner = GatedRunner()
    yield runner
    runner.gate.set()  # never leave a worker blocked after a failed test


@pytest.fixture()
def client_for(settings_for: Callable[..., Settings]) -> Iterator[Callable[..., TestClient]]:
    """Build an app from settings overrides (plus an optional runner) and enter its lifespan."""
    clients: list[TestClient] = []
    clear_all_caches(reset_stats=True)  # the library's caches are process-wide; each test starts cold

    def build(runner: Any = None, **overrides: Any) -> TestClient:
        app: FastAPI = create_app(settings_for(**overrides), runner=runner)
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.__exit__(None, None, None)


def load_tiny(
    client: httpx.Client | TestClient, name: str = "tiny", headers: dict[str, str] | None = None
) -> None:
    response = client.post(
        "/v1/models", json={"name": name, "checkpoint": "tiny.safetensors"}, headers=headers
    )
    assert response.status_code == 201, response.text


def wait_final(client: httpx.Client | TestClient, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/validations/{job_id}").json()
        if job["status"] in FINAL:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


def upload_files(dataset: Path, count: int) -> list[tuple[str, tuple[str, bytes, str]]]:
    """``count`` images of a YOLO dataset and their labels as multipart ``files`` parts."""
    parts: list[tuple[str, tuple[str, bytes, str]]] = []
    for image in sorted((dataset / "images" / "val").glob("*.jpg"))[:count]:
        label = dataset / "labels" / "val" / f"{image.stem}.txt"
        parts.append(("files", (image.name, image.read_bytes(), "image/jpeg")))
        parts.append(("files", (label.name, label.read_bytes(), "text/plain")))
    return parts
