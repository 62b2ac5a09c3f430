"""End to end: ``smartcash serve`` in a subprocess, the trained demo model and a copy with a noisy Detect head
validated on the synthetic dataset over HTTP, then compared."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service.comparison_helpers import demo_checkpoints
from tests.service.conftest import wait_final
from tests.service.servers import ServerProcess

PARAMS: dict[str, Any] = {"imgsz": 320, "batch_size": 8, "workers": 0}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Iterator[ServerProcess]:
    checkpoints = tmp_path_factory.mktemp("comparison_e2e_checkpoints")
    demo_checkpoints(checkpoints)
    process = ServerProcess(
        tmp_path_factory.mktemp("comparison_e2e_state"),
        checkpoints,
        data_root,
        SMARTCASH_PRELOAD="demo=demo.safetensors,degraded=degraded.safetensors",
    )
    yield process.start()
    process.stop()


def _validate(client: httpx.Client, model: str, dataset: str) -> str:
    response = client.post("/v1/validations", json={"model": model, "dataset": dataset, "params": PARAMS})
    assert response.status_code == 202, response.text
    job = wait_final(client, response.json()["id"], timeout=300)
    assert job["status"] == "succeeded", job
    return str(job["id"])


def test_degraded_checkpoint_compares_worse_over_http(server: ServerProcess, synthetic_dataset: Path) -> None:
    with server.client() as client:
        demo, degraded, again = (
            _validate(client, model, synthetic_dataset.name) for model in ("demo", "degraded", "demo")
        )
        body = {"baseline": demo, "candidate": degraded, "resamples": 1000, "seed": 0, "confidence": 0.95}
        response = client.post("/v1/comparisons", json=body, timeout=120)
        assert response.status_code == 200, response.text
        worse = response.json()
        assert worse["mapped"]["map50_95"]["verdict"] == "worse"
        assert worse["mapped"]["map50_95"]["ci"][1] < 0 < worse["mapped"]["map50_95"]["baseline"]
        assert worse["images"] == 24 and worse["resamples"] == 1000

        same = client.post("/v1/comparisons", json={"baseline": demo, "candidate": again}, timeout=120)
        assert same.status_code == 200, same.text
        for view in ("mapped", "fine"):
            for metric in ("map50", "map50_95"):
                estimate = same.json()[view][metric]
                assert estimate["delta"] == 0.0 and estimate["ci"] == [0.0, 0.0]
                assert estimate["verdict"] == "no significant difference"

        missing = client.post("/v1/comparisons", json={"baseline": demo, "candidate": "f" * 32})
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
