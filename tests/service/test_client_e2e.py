"""``smartcash_client`` and ``smartcash remote`` against the real server (a subprocess on loopback)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from smartcash_client import (
    AsyncClient,
    Client,
    Conflict,
    NotFound,
    QueueFull,
    Unauthorized,
    ValidationResult,
)
from tests.service.conftest import FAST_PARAMS
from tests.service.dropping_proxy import DroppingProxy
from tests.service.servers import API_KEY, ServerProcess

SLOW_PARAMS: dict[str, Any] = {"imgsz": 160, "batch_size": 1, "workers": 0}  # 24 steps


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, checkpoint_root: Path, data_root: Path
) -> Iterator[ServerProcess]:
    process = ServerProcess(
        tmp_path_factory.mktemp("client_state"),
        checkpoint_root,
        data_root,
        SMARTCASH_MAX_QUEUE="1",
        SMARTCASH_RETRY_AFTER_S="1",
        SMARTCASH_SSE_POLL_S="0.1",
    )
    yield process.start()
    process.stop()


@pytest.fixture()
def client(server: ServerProcess) -> Iterator[Client]:
    with Client(server.url, api_key=API_KEY, timeout=60) as opened:
        yield opened


def test_validate_a_checkpoint_with_tags_and_progress_then_find_it_again(
    client: Client, synthetic_dataset: Path
) -> None:
    progress: list[tuple[int, int, str]] = []
    result = client.validate(
        checkpoint="tiny.safetensors",
        dataset=synthetic_dataset.name,
        params=FAST_PARAMS,
        tags={"run": "client-e2e", "epoch": 1},
        on_progress=lambda *args: progress.append(args),
    )
    assert isinstance(result, ValidationResult) and result.images == 24
    assert len(result.per_class) == len(result.raw["result"]["metrics"]["per_class"])
    assert result.map50_95 == result.raw["result"]["metrics"]["map50_95"] and result.fine.per_class
    assert set(result.cache) >= {"image", "model"} and result.speed["inference"] > 0
    assert result.tags == {"run": "client-e2e", "epoch": "1"}
    done = [item[0] for item in progress]
    assert done == sorted(done) and {total for _, total, _ in progress} <= {0, 24}  # 0: not counted yet
    found = client.jobs(tags={"run": "client-e2e"})
    assert [job.id for job in found] == [result.job_id] and found[0].map50_95 == result.map50_95
    history = client.run("client-e2e")
    assert history.best is not None and history.best.id == result.job_id and history.jobs[0].epoch == "1"
    job = client.job(result.job_id)
    assert job.finished and job.checkpoint == "tiny.safetensors" and job.result == result


def test_server_errors_arrive_typed_with_code_message_and_fix(
    server: ServerProcess, client: Client, synthetic_dataset: Path
) -> None:
    with pytest.raises(NotFound) as missing:
        client.validate(checkpoint="nope.safetensors", dataset=synthetic_dataset.name, wait=False)
    assert missing.value.code == "not_found" and "nope.safetensors" in missing.value.message
    assert missing.value.fix and missing.value.request_id
    with Client(server.url, api_key="wrong") as stranger, pytest.raises(Unauthorized) as refused:
        stranger.jobs()
    assert refused.value.code == "unauthorized" and "X-API-Key" in refused.value.fix
    finished = client.jobs(status="succeeded", limit=1)
    if finished:
        with pytest.raises(Conflict):
            client.cancel(finished[0].id)


def test_a_full_queue_is_retried_after_retry_after_or_reported(
    server: ServerProcess, client: Client, synthetic_dataset: Path
) -> None:
    running = client.validate(model="tiny", dataset=synthetic_dataset.name, params=SLOW_PARAMS, wait=False)
    queued = client.validate(model="tiny", dataset=synthetic_dataset.name, params=SLOW_PARAMS, wait=False)
    try:
        with (
            Client(server.url, api_key=API_KEY, max_retries=0) as impatient,
            pytest.raises(QueueFull) as full,
        ):
            impatient.validate(model="tiny", dataset=synthetic_dataset.name, wait=False)
        assert full.value.retry_after == 1.0 and full.value.code == "queue_full" and full.value.fix
        # a patient client waits out the queue: it is accepted once the queued job starts running
        with Client(server.url, api_key=API_KEY, max_retries=120) as patient:
            accepted = patient.validate(
                model="tiny", dataset=synthetic_dataset.name, params=FAST_PARAMS, wait=False
            )
        assert client.job(queued.id).status != "queued"
        client.cancel(accepted.id)
    finally:
        for job in (running, queued):
            if not client.job(job.id).finished:
                client.cancel(job.id)


def test_a_dropped_event_stream_is_resumed_after_the_last_event(
    server: ServerProcess, synthetic_dataset: Path
) -> None:
    with DroppingProxy(server.port) as proxy:
        # one connection per request (no keep-alive), so the proxy sees each request's head
        http = httpx.Client(base_url=proxy.url, timeout=60, limits=httpx.Limits(max_keepalive_connections=0))
        via_proxy = Client(proxy.url, api_key=API_KEY, timeout=60, http=http)
        progress: list[int] = []
        result = via_proxy.validate(
            model="tiny",
            dataset=synthetic_dataset.name,
            params=SLOW_PARAMS,
            on_progress=lambda done, total, stage: progress.append(done),
        )
        streams = proxy.event_requests()
        via_proxy.close()
    assert proxy.dropped == 1 and len(streams) >= 2 and result.images == 24
    assert b"last-event-id" not in streams[0].lower() and b"last-event-id: " in streams[1].lower()
    assert progress == sorted(progress)  # nothing replayed from before the cut, nothing out of order


def test_the_async_client_uploads_files_and_waits(server: ServerProcess, synthetic_dataset: Path) -> None:
    images = sorted((synthetic_dataset / "images" / "val").glob("*.jpg"))[:4]
    files = [*images, *(synthetic_dataset / "labels" / "val" / f"{image.stem}.txt" for image in images)]

    async def main() -> Any:
        async with AsyncClient(server.url, api_key=API_KEY, timeout=60) as client:
            result = await client.validate(
                files=files, checkpoint="tiny.safetensors", params=FAST_PARAMS, tags={"run": "async"}
            )
            return result, await client.run("async")

    result, history = asyncio.run(main())
    assert result.images == 4 and history.best is not None and history.best.id == result.job_id


def _remote(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SMARTCASH_API_KEY": API_KEY, "SMARTCASH_SERVER": server.url}
    return subprocess.run(
        [sys.executable, "-m", "service.cli", "remote", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_remote_cli_validates_lists_and_shows_a_run(
    server: ServerProcess, synthetic_dataset: Path
) -> None:
    done = _remote(
        server,
        "validate",
        "--checkpoint",
        "tiny.safetensors",
        "--dataset",
        synthetic_dataset.name,
        "--param",
        "imgsz=64",
        "--param",
        "batch_size=8",
        "--tag",
        "run=cli",
        "--tag",
        "epoch=2",
    )
    assert done.returncode == 0, done.stderr
    assert "Mapped classes (yolo protocol)" in done.stdout and "Fine classes" in done.stdout
    assert "mAP50-95" in done.stdout and "Speed:" in done.stdout
    job_id = done.stderr.split()[1]
    listed = _remote(server, "jobs", "--tag", "run=cli")
    assert listed.returncode == 0 and job_id in listed.stdout and "epoch=2" in listed.stdout
    run = _remote(server, "run", "cli")
    assert run.returncode == 0 and f"best by map50_95: {job_id}" in run.stdout and "<- best" in run.stdout
    as_json = _remote(server, "job", job_id, "--json")
    assert as_json.returncode == 0 and f'"id": "{job_id}"' in as_json.stdout
    missing = _remote(
        server, "validate", "--checkpoint", "gone.safetensors", "--dataset", synthetic_dataset.name
    )
    assert missing.returncode == 2 and "error: not_found" in missing.stderr and "fix: " in missing.stderr
