"""The issue's "done when": a training pipeline's loop over 3 epochs against the real server.

Each "epoch" writes a checkpoint under a fresh checkpoint root (the demo model with noise on its Detect head,
less each epoch; the last is the demo model itself), validates it with ``smartcash_client`` by naming the
file in the request (nothing registered), tagged run/epoch, waits for the result, and gets a signed webhook
per job on a real loopback receiver. The run history then lists the 3 epochs in order with the undegraded
one as the best, and its numbers equal the library's own pass over the same images with the same weights.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

from smartcash_client import Client, ValidationResult, verify_signature
from smartcash_core.checkpoint import load_model
from smartcash_core.checkpoint.native import save_checkpoint
from smartcash_core.training.synthetic import generate_dataset
from smartcash_core.validation.params import ValidationParams
from smartcash_core.validation.runner import run_validation
from tests.service.servers import API_KEY, ServerProcess
from tests.service.webhook_receiver import Receiver

DEMO = Path(__file__).resolve().parents[2] / "smartcash_core" / "assets" / "demo_yolov5n.safetensors"
SECRET = "pipeline-secret"
HEAD_NOISE = (0.2, 0.05, 0.0)  # epochs 1, 2, 3: the head's noise relative to its mean weight magnitude
PARAMS: dict[str, Any] = {"imgsz": 256, "batch_size": 16, "workers": 0}


def _write_epoch(root: Path, epoch: int, noise: float) -> str:
    relative = f"exp7/epoch{epoch}.safetensors"
    if noise == 0.0:
        (root / "exp7").mkdir(parents=True, exist_ok=True)
        shutil.copy(DEMO, root / relative)
        return relative
    loaded = load_model(DEMO, "cpu")
    generator = torch.Generator().manual_seed(epoch)
    with torch.no_grad():
        for name, weight in loaded.model.named_parameters():
            if name.startswith("model.24."):  # the Detect head
                weight.add_(torch.randn(weight.shape, generator=generator) * noise * weight.abs().mean())
    save_checkpoint(
        root / relative, loaded.model, class_table=loaded.class_table, imgsz=loaded.imgsz, epoch=epoch
    )
    return relative


@pytest.fixture(scope="module")
def pipeline_roots(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    checkpoints = tmp_path_factory.mktemp("pipeline_checkpoints")
    data = tmp_path_factory.mktemp("pipeline_data")
    generate_dataset(data / "banknotes", images=16, seed=11, width=320, height=240, split="val")
    names = [_write_epoch(checkpoints, epoch, noise) for epoch, noise in enumerate(HEAD_NOISE, start=1)]
    return checkpoints, data, names


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, pipeline_roots: tuple[Path, Path, list[str]]
) -> Iterator[ServerProcess]:
    checkpoints, data, _ = pipeline_roots
    process = ServerProcess(
        tmp_path_factory.mktemp("pipeline_state"),
        checkpoints,
        data,
        ready_path="/v2/health/live",  # nothing preloaded: the pipeline never registers a model
        SMARTCASH_PRELOAD="",
        SMARTCASH_WEBHOOK_SECRET=SECRET,
        SMARTCASH_WEBHOOK_ALLOWED_HOSTS="127.0.0.1",
        SMARTCASH_WEBHOOK_POLL_S="0.1",
    )
    yield process.start()
    process.stop()


def test_three_epochs_validated_by_checkpoint_come_back_as_a_run_with_the_best_epoch(
    server: ServerProcess, pipeline_roots: tuple[Path, Path, list[str]]
) -> None:
    checkpoints, data, names = pipeline_roots
    results: list[ValidationResult] = []
    with Receiver(SECRET.encode()) as receiver, Client(server.url, api_key=API_KEY, timeout=120) as client:
        for epoch, checkpoint in enumerate(names, start=1):  # the pipeline's loop, one validation per epoch
            result = client.validate(
                checkpoint=checkpoint,
                dataset="banknotes",
                params=PARAMS,
                tags={"run": "exp7", "epoch": epoch},
                callback_url=receiver.url,
            )
            results.append(result)
        history = client.run("exp7")
        compared = client.compare(results[0].job_id, results[2].job_id, resamples=200, seed=1)
        deliveries = receiver.wait_for(3)
        registered = httpx.get(f"{server.url}/v1/models", headers={"X-API-Key": API_KEY}).json()["models"]

    maps = [result.map50_95 for result in results]
    assert maps[0] < maps[1] < maps[2], maps  # less head noise, better model
    assert [entry.epoch for entry in history.jobs] == ["1", "2", "3"]
    assert [entry.id for entry in history.jobs] == [result.job_id for result in results]
    assert [entry.map50_95 for entry in history.jobs] == maps
    assert history.best is not None and history.best.id == results[2].job_id and history.best_by == "map50_95"
    assert registered == []  # no registration step, nothing to clean up
    # the client's compare() against the real endpoint: both jobs' own numbers, their difference, a verdict
    estimate = compared.estimate("map50_95", "mapped")
    assert estimate is not None and (estimate["baseline"], estimate["candidate"]) == (maps[0], maps[2])
    assert estimate["delta"] == pytest.approx(maps[2] - maps[0]) and estimate["ci"][0] <= estimate["ci"][1]
    assert compared.verdict == estimate["verdict"] in {"better", "worse", "no significant difference"}

    assert all(delivery.signature_ok for delivery in deliveries)
    assert all(verify_signature(SECRET, d.headers, d.body, now=d.received_at) for d in deliveries)
    by_job = {delivery.payload["job"]["id"]: delivery.payload for delivery in deliveries}
    assert set(by_job) == {result.job_id for result in results}
    for result in results:
        payload = by_job[result.job_id]
        assert payload["job"]["status"] == "succeeded" and payload["job"]["tags"]["run"] == "exp7"
        assert (
            payload["metrics"]["map50_95"] == result.map50_95 and payload["links"]["run"] == "/v1/runs/exp7"
        )

    # the service validated exactly the weights of each file: the library's own pass agrees
    local = run_validation(
        load_model(checkpoints / names[2], "cpu"), data / "banknotes", ValidationParams(**PARAMS)
    )
    assert results[2].map50_95 == local.metrics["map50_95"] and results[2].map50 == local.metrics["map50"]
