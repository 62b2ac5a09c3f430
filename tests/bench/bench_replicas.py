"""Replica benchmark (issue 15): the shared PostgreSQL job store against the embedded SQLite one.

1. Store overhead per job, in process, no model: the store calls of one job's life (submit, claim, 5
   progress writes, finish with 24 per-image rows and a 30 kB artifact, read back the job and a page of its
   images), one job after the other, on SQLite and on PostgreSQL (a throwaway local server).
2. Jobs per second for tiny jobs (2 images at imgsz 32) through HTTP: 1 replica on SQLite (the baseline),
   1 replica on PostgreSQL, 2 replicas on PostgreSQL (jobs submitted to both). Each replica is a real
   ``smartcash serve`` process with one torch thread, so 2 replicas can use 2 cores.

Run from the repository root: ``.venv/bin/python tests/bench/bench_replicas.py [--jobs 60] [--rounds 3]``.
Prints one JSON object; ratios are against the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # the tests package (PostgreSQL launcher, server helper)

import torch  # noqa: E402

from service.store import ImageQuery, JobRecord, JobStore, SqliteJobStore  # noqa: E402
from smartcash_core.checkpoint.native import save_checkpoint  # noqa: E402
from smartcash_core.classes import default_class_table  # noqa: E402
from smartcash_core.model.yolo import build_model  # noqa: E402
from smartcash_core.training.synthetic import generate_dataset  # noqa: E402
from tests.postgres_server import PostgresCluster, start_cluster  # noqa: E402
from tests.service.servers import ServerProcess  # noqa: E402

ROWS = [
    {
        "index": i,
        "order": i,
        "file": f"img{i}.jpg",
        "instances": 3,
        "predictions": 4,
        "tp": 2,
        "fp": i % 3,
        "fn": i % 2,
        "true_denomination": i % 7,
        "predicted_denomination": (i + 1) % 7,
    }
    for i in range(24)
]
RESULT = {
    "metrics": {"map50": 0.5, "per_class": [{"id": c, "ap50": 0.5} for c in range(8)]},
    "per_image": ROWS,
}
ARTIFACT = os.urandom(30_000)
TINY = {"imgsz": 32, "batch_size": 2, "workers": 0}


def one_job(store: JobStore, index: int) -> None:
    job_id = f"{index:032x}"
    record = JobRecord(
        id=job_id,
        status="queued",
        model="m",
        model_sha256="sha",
        source_kind="dataset",
        source="ds",
        params={"imgsz": 32},
        created_at=time.time(),
    )
    store.create(record, max_queued=1_000_000)
    claimed = store.claim("bench", ["sha"])
    assert claimed is not None and claimed.id == job_id
    for done in range(5):
        store.report_progress(job_id, "bench", done, 5, "batch")
    assert store.finish(job_id, "bench", "succeeded", result=RESULT, artifacts={"plot_data.npz": ARTIFACT})
    store.get(job_id)
    store.per_image_page(job_id, ImageQuery(sort="errors", limit=20))


def store_ms_per_job(store: JobStore, jobs: int, first: int) -> float:
    started = time.perf_counter()
    for index in range(first, first + jobs):
        one_job(store, index)
    return (time.perf_counter() - started) / jobs * 1000


def bench_store(cluster: PostgresCluster, root: Path, jobs: int, rounds: int) -> dict[str, Any]:
    """Rounds alternate the two stores (best round of each), so load changes hit both alike."""
    from service.store.postgres import PostgresJobStore

    stores = {
        "sqlite": SqliteJobStore(root / "bench.sqlite3"),
        "postgres": PostgresJobStore(cluster.database("b")),
    }
    ms: dict[str, list[float]] = {name: [] for name in stores}
    try:
        for store in stores.values():
            store_ms_per_job(store, 10, first=10_000_000)  # warm-up: connections, statement caches
        for round_index in range(rounds):
            for name, store in stores.items():
                ms[name].append(round(store_ms_per_job(store, jobs, first=round_index * jobs), 3))
    finally:
        for store in stores.values():
            store.close()
    best = {name: min(values) for name, values in ms.items()}
    return {
        "jobs_per_round": jobs,
        "ms_per_job_rounds": ms,
        "ms_per_job_best": best,
        "postgres_over_sqlite": round(best["postgres"] / best["sqlite"], 2),
    }


def prepare_files(root: Path) -> tuple[Path, Path]:
    checkpoints, data = root / "checkpoints", root / "data"
    checkpoints.mkdir()
    torch.manual_seed(0)
    model = build_model("yolov5n", num_classes=17).eval()
    save_checkpoint(checkpoints / "tiny.safetensors", model, class_table=default_class_table(), imgsz=64)
    generate_dataset(data / "tiny", images=2, seed=5, width=96, height=64, split="val")
    return checkpoints, data


def start_replicas(root: Path, files: tuple[Path, Path], count: int, url: str | None) -> list[ServerProcess]:
    env = {
        "SMARTCASH_MAX_QUEUE": "100000",
        "SMARTCASH_WORKER_NICE": "0",
        "SMARTCASH_CLAIM_POLL_S": "0.1",
        "SMARTCASH_LOG_LEVEL": "error",
        "OMP_NUM_THREADS": "1",
    }
    if url:
        env["SMARTCASH_DATABASE_URL"] = url
    servers = [
        ServerProcess(root / f"r{index}-{time.monotonic_ns()}", *files, **env) for index in range(count)
    ]
    for server in servers:
        server.launch()
    return [server.wait_ready(180) for server in servers]


def warm_up(servers: list[ServerProcess]) -> None:
    """One job per replica first: first-job costs (imports, caches) are not what is measured."""
    for server in servers:
        with server.client() as client:
            job = client.post("/v1/validations", json={"model": "tiny", "dataset": "tiny", "params": TINY})
            while client.get(f"/v1/validations/{job.json()['id']}").json()["status"] != "succeeded":
                time.sleep(0.05)


def jobs_per_second(servers: list[ServerProcess], jobs: int) -> float:
    """Submit ``jobs`` tiny jobs round-robin over the replicas; jobs/s until the last one has succeeded."""
    clients = [server.client() for server in servers]
    try:
        body = {"model": "tiny", "dataset": "tiny", "params": TINY}
        succeeded = {"status": "succeeded", "limit": 1}
        before = clients[0].get("/v1/validations", params=succeeded).json()["total"]
        started = time.perf_counter()
        for index in range(jobs):
            response = clients[index % len(clients)].post("/v1/validations", json=body)
            assert response.status_code == 202, response.text
        while clients[0].get("/v1/validations", params=succeeded).json()["total"] < before + jobs:
            time.sleep(0.05)
        return jobs / (time.perf_counter() - started)
    finally:
        for client in clients:
            client.close()


def bench_replicas(cluster: PostgresCluster, root: Path, jobs: int, rounds: int) -> dict[str, Any]:
    """Every configuration runs at once (idle ones only poll the queue); rounds interleave them, so a
    change in the machine's load hits all of them alike. Best round of each."""
    files = prepare_files(root)
    configs = {
        "sqlite_1": start_replicas(root, files, 1, None),
        "postgres_1": start_replicas(root, files, 1, cluster.database("one")),
        "postgres_2": start_replicas(root, files, 2, cluster.database("two")),
    }
    rates: dict[str, list[float]] = {label: [] for label in configs}
    try:
        for servers in configs.values():
            warm_up(servers)
        for _ in range(rounds):
            for label, servers in configs.items():
                rates[label].append(round(jobs_per_second(servers, jobs), 2))
    finally:
        for servers in configs.values():
            for server in servers:
                server.stop()
    best = {label: max(values) for label, values in rates.items()}
    return {
        "jobs_per_round": jobs,
        "jobs_per_s_rounds": rates,
        "jobs_per_s_best": best,
        "postgres_1_over_sqlite_1": round(best["postgres_1"] / best["sqlite_1"], 2),
        "postgres_2_over_postgres_1": round(best["postgres_2"] / best["postgres_1"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=60, help="tiny jobs per HTTP configuration")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every configuration")
    parser.add_argument("--store-jobs", type=int, default=300, help="jobs through each store in process")
    args = parser.parse_args()
    cluster = start_cluster()
    try:
        with tempfile.TemporaryDirectory() as scratch:
            root = Path(scratch)
            report = {
                "cpus": os.cpu_count(),
                "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
                "store": bench_store(cluster, root, args.store_jobs, args.rounds),
                "http": bench_replicas(cluster, root, args.jobs, args.rounds),
            }
    finally:
        cluster.stop()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
