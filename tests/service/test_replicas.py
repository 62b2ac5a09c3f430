"""Replica processes (real uvicorn servers on loopback) sharing one real PostgreSQL job store.

Submit to A and follow from B; cancel on B a job running on A; 100 small jobs submitted to both run exactly
once; kill -9 a replica mid-job and another marks the job interrupted once its lease has run out.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from smartcash_core.training.synthetic import generate_dataset
from tests.postgres_server import PostgresCluster
from tests.service.conftest import FAST_PARAMS, upload_files, wait_final
from tests.service.servers import ServerProcess, sse_events

SLOW_PARAMS: dict[str, Any] = {"imgsz": 448, "batch_size": 1, "workers": 0}  # 24 steps: time to act mid-run
TINY_PARAMS: dict[str, Any] = {"imgsz": 32, "batch_size": 2, "workers": 0}
JOBS = 100
_SUCCEEDED = re.compile(r'^smartcash_validation_jobs_total\{status="succeeded"\} (\S+)$', re.MULTILINE)


def _replica(name: str, url: str, root: Path, checkpoints: Path, data: Path, **env: str) -> ServerProcess:
    settings = {
        "SMARTCASH_DATABASE_URL": url,
        "SMARTCASH_REPLICA_ID": name,
        "SMARTCASH_LEASE_S": "2",
        "SMARTCASH_CLAIM_POLL_S": "0.1",
        "SMARTCASH_SSE_POLL_S": "0.1",
        "SMARTCASH_MAX_QUEUE": str(JOBS + 10),
        "SMARTCASH_WORKER_NICE": "0",
        "OMP_NUM_THREADS": "1",  # two replicas share this machine: one torch thread each
        **env,
    }
    return ServerProcess(root / name, checkpoints, data, **settings)


@pytest.fixture(scope="module")
def database(postgres_cluster: PostgresCluster) -> Iterator[str]:
    url = postgres_cluster.database("replicas")
    yield url
    postgres_cluster.drop(url)


@pytest.fixture(scope="module")
def replicas(
    database: str, tmp_path_factory: pytest.TempPathFactory, checkpoint_root: Path, data_root: Path
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    root = tmp_path_factory.mktemp("replicas")
    a, b = (_replica(name, database, root, checkpoint_root, data_root) for name in ("a", "b"))
    try:
        a.launch(), b.launch()  # both import torch at once: start-up overlaps
        yield a.wait_ready(), b.wait_ready()
    finally:
        a.stop()
        b.stop()


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> str:
    root = tmp_path_factory.mktemp("tiny_set")
    assert root.parent == data_root
    generate_dataset(root, images=2, seed=5, width=96, height=64, split="val")
    return root.name


def _submit(client: httpx.Client, dataset: str, params: dict[str, Any]) -> str:
    response = client.post("/v1/validations", json={"model": "tiny", "dataset": dataset, "params": params})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _upload(client: httpx.Client, dataset: Path, count: int, params: dict[str, Any]) -> str:
    response = client.post(
        "/v1/validations/upload",
        data={"model": "tiny", "params": json.dumps(params)},
        files=upload_files(dataset, count),
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _succeeded_count(client: httpx.Client) -> float:
    match = _SUCCEEDED.search(client.get("/metrics").text)
    return float(match.group(1)) if match else 0.0


def test_a_job_submitted_to_a_is_read_and_followed_from_b(
    replicas: tuple[ServerProcess, ServerProcess], synthetic_dataset: Path
) -> None:
    a, b = replicas
    with a.client() as on_a, b.client() as on_b:
        job_id = _submit(on_a, synthetic_dataset.name, {**FAST_PARAMS, "batch_size": 4})
        events = list(sse_events(on_b, job_id))
        kind, final = events[-1]
        assert kind == "status" and final["status"] == "succeeded" and final["done"] == final["total"] == 24
        done = [data["done"] for kind, data in events if kind == "progress"]
        assert done == sorted(done)
        from_b = on_b.get(f"/v1/validations/{job_id}").json()
        assert from_b["result"] == on_a.get(f"/v1/validations/{job_id}").json()["result"]
        assert from_b["replica"] in {"a", "b"} and from_b["result"]["dataset"]["images"] == 24
        worst = on_b.get(f"/v1/validations/{job_id}/images", params={"sort": "fn", "limit": 3}).json()
        assert worst["total"] == 24 and len(worst["items"]) == 3
        assert on_a.get("/v1/validations", params={"limit": 200}).json()["items"][0]["id"] == job_id


def test_cancel_on_b_stops_a_job_running_on_a(
    replicas: tuple[ServerProcess, ServerProcess], synthetic_dataset: Path
) -> None:
    a, b = replicas
    with a.client() as on_a, b.client() as on_b:
        job_id = _upload(on_a, synthetic_dataset, 24, SLOW_PARAMS)  # an upload: it runs on a, nowhere else
        cancelled_at = None
        for kind, data in sse_events(on_b, job_id):
            if kind == "progress" and data["done"] >= 1 and cancelled_at is None:
                assert on_b.post(f"/v1/validations/{job_id}/cancel").json()["status"] == "cancelling"
                cancelled_at = data["done"]
            if kind == "status":  # the flag is seen between batches: it may land after the last one
                assert data["status"] == "cancelled" and data["done"] <= 24
        final = wait_final(on_a, job_id)
        assert cancelled_at is not None and cancelled_at < 24  # asked while a still had batches to run
        assert final["status"] == "cancelled" and final["replica"] == "a" and final["result"] is None
        assert final["error"]["code"] == "cancelled"


def test_jobs_submitted_to_both_replicas_run_exactly_once(
    replicas: tuple[ServerProcess, ServerProcess], tiny_dataset: str, database: str
) -> None:
    a, b = replicas
    with a.client() as on_a, b.client() as on_b:
        before = _succeeded_count(on_a) + _succeeded_count(on_b)
        ids = [_submit((on_a, on_b)[index % 2], tiny_dataset, TINY_PARAMS) for index in range(JOBS)]
        finals = [
            wait_final((on_b, on_a)[index % 2], job_id, timeout=240) for index, job_id in enumerate(ids)
        ]
        assert {final["status"] for final in finals} == {"succeeded"}
        ran_on = [final["replica"] for final in finals]
        assert set(ran_on) == {"a", "b"}, ran_on  # both replicas took work from the shared queue
        assert _succeeded_count(on_a) + _succeeded_count(on_b) - before == JOBS  # JOBS runs, no more
    import psycopg

    with psycopg.connect(database) as conn:
        rows = conn.execute(
            "SELECT attempts, COUNT(*) FROM jobs WHERE id = ANY(%s) GROUP BY attempts", (ids,)
        ).fetchall()
    assert rows == [(1, JOBS)]  # each job was claimed once


def test_kill9_of_a_replica_mid_job_is_seen_by_another_after_the_lease(
    replicas: tuple[ServerProcess, ServerProcess],
    database: str,
    tmp_path_factory: pytest.TempPathFactory,
    checkpoint_root: Path,
    data_root: Path,
    synthetic_dataset: Path,
) -> None:
    _, b = replicas
    root = tmp_path_factory.mktemp("doomed")
    doomed = _replica("doomed", database, root, checkpoint_root, data_root, SMARTCASH_LEASE_S="5").start()
    try:
        with doomed.client() as on_doomed, b.client() as on_b:
            running = _upload(on_doomed, synthetic_dataset, 24, SLOW_PARAMS)
            held = _upload(on_doomed, synthetic_dataset, 2, FAST_PARAMS)  # queued behind it, held there
            for kind, data in sse_events(on_b, running):
                if kind == "progress" and data["done"] >= 1:
                    break
            doomed.kill9()
            killed_at = time.time()
            assert on_b.get(f"/v1/validations/{running}").json()["status"] == "running"  # lease still valid
            final = wait_final(on_b, running, timeout=60)
            assert final["status"] == "interrupted" and "lease" in final["error"]["message"]
            assert final["replica"] == "doomed" and final["progress"]["done"] < 24
            assert datetime.fromisoformat(final["finished_at"]).timestamp() >= killed_at  # b did it, later
            assert wait_final(on_b, held, timeout=30)["status"] == "interrupted"
    finally:
        doomed.stop()


def test_checkpoint_jobs_run_on_either_replica_without_registration(
    replicas: tuple[ServerProcess, ServerProcess], tiny_dataset: str
) -> None:
    a, b = replicas
    with a.client() as on_a, b.client() as on_b:
        ids = []
        for index in range(6):
            body = {
                "checkpoint": "nested/same.safetensors",
                "dataset": tiny_dataset,
                "params": TINY_PARAMS,
                "tags": {"run": "replicas", "epoch": str(index)},
            }
            response = (on_a, on_b)[index % 2].post("/v1/validations", json=body)
            assert response.status_code == 202, response.text
            ids.append(response.json()["id"])
        finals = [wait_final((on_b, on_a)[index % 2], job_id) for index, job_id in enumerate(ids)]
        assert {final["status"] for final in finals} == {"succeeded"}
        assert {final["replica"] for final in finals} <= {"a", "b"}
        history = on_b.get("/v1/runs/replicas").json()
        assert [job["epoch"] for job in history["jobs"]] == [str(index) for index in range(6)]
