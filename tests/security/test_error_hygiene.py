"""Issue 11 item 13 over real HTTP: errors name paths relative to the data and checkpoint roots (never the
server's absolute paths), and an upload the client aborts mid-body is logged, not counted as a 500."""

from __future__ import annotations

import json
import logging
import re
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.security.threaded_server import ThreadedServer
from tests.service.conftest import FAST_PARAMS, GatedRunner, load_tiny, wait_final
from tests.service.servers import HEADERS


@pytest.fixture()
def roots(tmp_path: Path, checkpoint_root: Path, synthetic_dataset: Path) -> tuple[Path, Path]:
    """A data root with broken datasets, and a checkpoint root (a symlinked path: both spellings count)."""
    data = tmp_path / "data"
    shared = data / "shared"  # images of "elsewhere", outside its folder: reports name them from the root
    for kind in ("images", "labels"):
        shutil.copytree(synthetic_dataset / kind / "val", shared / kind / "val")
    (shared / "images" / "val" / "corrupt.jpg").write_bytes(b"not an image")
    (data / "elsewhere").mkdir()
    (data / "elsewhere" / "data.yaml").write_text("path: .\nval: ../shared/images/val\nnames: [a]\n")
    (data / "empty" / "images" / "val").mkdir(parents=True)
    (data / "badsplit").mkdir()
    (data / "badsplit" / "data.yaml").write_text("path: .\nval: nowhere/images\nnames: [a]\n")
    (data / "unreadable").mkdir()
    (data / "unreadable" / "data.yaml").write_text("val: [")
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    for name in ("tiny.safetensors", "broken.safetensors"):
        (checkpoints / name).write_bytes((checkpoint_root / name).read_bytes())
    truncated = (checkpoint_root / "tiny.safetensors").read_bytes()[:5000]
    (checkpoints / "truncated.safetensors").write_bytes(truncated)
    link = tmp_path / "linked-data"
    link.symlink_to(data)
    return link, checkpoints


def _assert_no_server_path(text: str, *roots: Path) -> None:
    for root in roots:
        for form in {str(root), str(root.resolve())}:
            assert form not in text, text


def test_errors_name_paths_relative_to_their_root(
    threaded_server_for: Callable[..., ThreadedServer], gated: GatedRunner, roots: tuple[Path, Path]
) -> None:
    gated.gate.set()
    data, checkpoints = roots
    server = threaded_server_for(data_root=data, checkpoint_root=checkpoints)
    with server.client() as client:
        load_tiny(client)
        errors = []
        for dataset in ("empty", "badsplit", "unreadable"):
            body = {"model": "tiny", "dataset": dataset, "params": FAST_PARAMS}
            submitted = client.post("/v1/validations", json=body)
            if submitted.status_code != 202:
                errors.append(submitted.json()["error"]["message"])
                continue
            final = wait_final(client, submitted.json()["id"])
            assert final["status"] == "failed", final
            errors.append(final["error"]["message"])
        for checkpoint in ("broken.safetensors", "truncated.safetensors", "missing.safetensors"):
            loaded = client.post("/v1/models", json={"name": "x", "checkpoint": checkpoint})
            assert loaded.status_code in {404, 422}, loaded.text
            errors.append(loaded.json()["error"]["message"])
        body = {"model": "tiny", "dataset": "elsewhere", "params": FAST_PARAMS}
        job = wait_final(client, client.post("/v1/validations", json=body).json()["id"])
    assert job["status"] == "succeeded" and job["result"]["dataset"]["skipped"], job
    assert "corrupt.jpg" in str(job["result"]["dataset"]["skipped"])
    assert len(errors) == 6
    for message in [*errors, json.dumps(job["result"])]:
        _assert_no_server_path(message, data, checkpoints, data.parent)
    assert re.search(r"\bempty\b", errors[0]) and "badsplit" in errors[1], errors


def test_an_aborted_upload_is_logged_and_not_a_server_error(
    threaded_server_for: Callable[..., ThreadedServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = threaded_server_for()
    head = (
        f"POST /v1/validations/upload HTTP/1.1\r\nHost: x\r\nX-API-Key: {HEADERS['X-API-Key']}\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n"
    ).encode()
    with caplog.at_level(logging.INFO, logger="smartcash"):
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", server.port)) as sock:
                sock.sendall(head + b"--b\r\n" + b"x" * 500)
                time.sleep(0.2)  # the upload has begun; now the client goes away
        time.sleep(0.5)
        metrics = httpx.get(f"{server.url}/metrics", headers=HEADERS).text
    upload = [line for line in metrics.splitlines()
              if line.startswith("smartcash_http_request_duration_seconds_count") and "/upload" in line]
    assert upload and all('status="499"' in line for line in upload), upload  # before: status="500"
    assert 'status="500"' not in metrics
    aborted = [r for r in caplog.records if "disconnected before its request body was complete" in r.message]
    assert len(aborted) == 3 and all(r.levelno == logging.INFO for r in aborted)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
