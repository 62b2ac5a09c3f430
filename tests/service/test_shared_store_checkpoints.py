"""Checkpoint-in-request jobs on a shared PostgreSQL store: any replica that reads the checkpoint root
claims them and loads the file itself; webhooks of a job are delivered by whichever replica claims them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.service.conftest import FAST_PARAMS, GatedRunner, load_tiny, upload_files, wait_final
from tests.service.webhook_receiver import Receiver

Client = Callable[..., TestClient]
SHARED = {"lease_s": 2.0, "claim_poll_s": 0.1, "sse_poll_s": 0.1}
WEBHOOKS = {"webhook_secret": "s", "webhook_allowed_hosts": "127.0.0.1", "webhook_poll_s": 0.1}


def _replica(postgres_url: str, client_for: Client, tmp_path: Path) -> Callable[..., TestClient]:
    def build(name: str, runner: Any = None, **overrides: Any) -> TestClient:
        settings = {"database_url": postgres_url, "replica_id": name, "state_dir": tmp_path / name, **SHARED}
        return client_for(runner=runner, **{**settings, **overrides})

    return build


def test_a_checkpoint_job_queued_on_a_busy_replica_is_loaded_and_run_by_another(
    postgres_url: str, client_for: Client, tmp_path: Path, gated: GatedRunner, synthetic_dataset: Path
) -> None:
    replica = _replica(postgres_url, client_for, tmp_path)
    a, b = replica("a", runner=gated, **WEBHOOKS), replica("b", **WEBHOOKS)
    load_tiny(a)
    busy = a.post(
        "/v1/validations/upload",
        data={"model": "tiny", "params": json.dumps(FAST_PARAMS)},
        files=upload_files(synthetic_dataset, 2),
    )
    assert busy.status_code == 202 and gated.started.wait(30)  # a's only worker is held by its upload
    with Receiver(b"s") as receiver:
        body = {
            "checkpoint": "nested/same.safetensors",
            "dataset": synthetic_dataset.name,
            "params": FAST_PARAMS,
            "tags": {"run": "shared"},
            "callback_url": receiver.url,
        }
        submitted = a.post("/v1/validations", json=body)
        assert submitted.status_code == 202, submitted.text
        final = wait_final(b, submitted.json()["id"])
        delivery = receiver.wait_for(1)[0]
    assert final["status"] == "succeeded" and final["replica"] == "b"  # b had nothing loaded: it loaded it
    assert b.get("/v1/models").json()["models"] == []
    assert delivery.signature_ok and delivery.payload["job"]["id"] == final["id"]
    assert a.get("/v1/runs/shared").json()["best"]["id"] == final["id"]  # any replica reads the run
    gated.gate.set()
    assert wait_final(a, busy.json()["id"])["status"] == "succeeded"
