"""Issue 11 items 12c/12d over real HTTP: ``DELETE /v1/validations/{id}`` removes a finished job with its
per-image rows and plots (409 while it is queued or runs, 404 unknown), and retention keeps the newest
``SMARTCASH_RETENTION_MAX_JOBS`` finished jobs, at start and periodically."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.security.threaded_server import ThreadedServer
from tests.service.conftest import FAST_PARAMS, GatedRunner, load_tiny, wait_final


def _submit(client: httpx.Client, dataset: Path) -> str:
    body = {"model": "tiny", "dataset": dataset.name, "params": FAST_PARAMS}
    response = client.post("/v1/validations", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def test_delete_a_finished_job_and_refuse_an_active_one(
    threaded_server_for: Callable[..., ThreadedServer], gated: GatedRunner, synthetic_dataset: Path,
    tmp_path: Path,
) -> None:
    server = threaded_server_for()
    with server.client() as client:
        load_tiny(client)
        running = _submit(client, synthetic_dataset)
        assert gated.started.wait(30)
        queued = _submit(client, synthetic_dataset)
        for job_id in (running, queued):
            conflict = client.delete(f"/v1/validations/{job_id}")
            assert conflict.status_code == 409, conflict.text
            assert conflict.json()["error"]["code"] == "conflict"
            assert "cancel it first" in conflict.json()["error"]["fix"]
        gated.gate.set()
        assert wait_final(client, running)["status"] == "succeeded"
        wait_final(client, queued)
        assert client.get(f"/v1/validations/{running}/plots/pr_curve.png").status_code == 200
        plots = tmp_path / "state" / "plots" / running
        assert plots.is_dir()
        assert client.delete(f"/v1/validations/{running}").status_code == 204
        for path in ("", "/images", "/plots", "/plots/pr_curve.png", "/events"):
            assert client.get(f"/v1/validations/{running}{path}").status_code == 404, path
        assert not plots.exists()
        assert client.delete(f"/v1/validations/{running}").status_code == 404
        assert client.delete("/v1/validations/not-an-id").status_code == 422
        assert [job["id"] for job in client.get("/v1/validations").json()["items"]] == [queued]


def test_retention_keeps_the_newest_finished_jobs(
    threaded_server_for: Callable[..., ThreadedServer], gated: GatedRunner, synthetic_dataset: Path
) -> None:
    gated.gate.set()  # jobs run freely
    server = threaded_server_for(retention_max_jobs=2, retention_interval_s=0.2)
    with server.client() as client:
        load_tiny(client)
        ids = []
        for _ in range(4):
            ids.append(_submit(client, synthetic_dataset))
            wait_final(client, ids[-1])
        deadline = time.monotonic() + 10
        while client.get("/v1/validations").json()["total"] > 2:
            assert time.monotonic() < deadline, "retention did not run"
            time.sleep(0.1)
        assert [job["id"] for job in client.get("/v1/validations").json()["items"]] == ids[:1:-1]
        assert client.get(f"/v1/validations/{ids[0]}").status_code == 404


def test_retention_runs_at_start(
    threaded_server_for: Callable[..., ThreadedServer], gated: GatedRunner, synthetic_dataset: Path
) -> None:
    gated.gate.set()
    first = threaded_server_for(retention_max_jobs=0)  # no limit while the jobs are made
    with first.client() as client:
        load_tiny(client)
        ids = [_submit(client, synthetic_dataset) for _ in range(3)]
        for job_id in ids:
            wait_final(client, job_id)
    first.stop()
    second = threaded_server_for(retention_max_jobs=1, retention_interval_s=3600)  # same state dir
    with second.client() as client:
        deadline = time.monotonic() + 10
        while client.get("/v1/validations").json()["total"] != 1:
            assert time.monotonic() < deadline, "retention did not run at start"
            time.sleep(0.1)
        assert client.get("/v1/validations").json()["items"][0]["id"] == ids[-1]
