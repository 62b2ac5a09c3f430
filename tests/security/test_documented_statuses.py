"""The OpenAPI document lists the refusals the service really gives: each one here is provoked over real
HTTP (401 without the key on every protected operation; 408 and 413 on every operation with a body; 429
for a full queue, busy upload slots and too many streams; 409 and 404) and must be documented for its
operation. The schemathesis fuzz (tests/service/test_fuzz.py) checks the same for what it generates."""

from __future__ import annotations

import socket
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from tests.security.threaded_server import ThreadedServer
from tests.service.conftest import FAST_PARAMS, GatedRunner, load_tiny, upload_files
from tests.service.servers import HEADERS

Seen = set[tuple[str, str, int]]  # (method, path template, status)


def _raw_status(port: int, method: str, path: str, headers: str, body: bytes) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode() + body)
        return int(sock.recv(64).split()[1])


def _fill(template: str, job_id: str) -> str:
    path = template.replace("{job_id}", job_id).replace("{name}", "tiny")
    return path.replace("/plots/tiny", "/plots/pr_curve.png")


def _guard_refusals(server: ThreadedServer, schema: dict[str, Any], job_id: str) -> Seen:
    seen: Seen = set()
    key = f"X-API-Key: {HEADERS['X-API-Key']}\r\n"
    for template, operations in schema["paths"].items():
        for method, operation in operations.items():
            path = _fill(template, job_id)
            if template.startswith(("/v1", "/metrics")):
                seen.add((method, template, httpx.request(method, server.url + path).status_code))
            if "requestBody" in operation:
                kind = "multipart/form-data; boundary=b" if "upload" in path else "application/json"
                big = f"{key}Content-Type: {kind}\r\nContent-Length: {1 << 30}\r\n"
                seen.add((method, template, _raw_status(server.port, method.upper(), path, big, b"")))
                slow = f"{key}Content-Type: {kind}\r\nContent-Length: 100\r\n"
                seen.add((method, template, _raw_status(server.port, method.upper(), path, slow, b"--b")))
    return seen


def test_every_refusal_the_service_gives_is_documented(
    threaded_server_for: Callable[..., ThreadedServer], gated: GatedRunner, synthetic_dataset: Path
) -> None:
    server = threaded_server_for(max_queue=1, max_sse_connections=1, body_timeout_s=0.3, retry_after_s=1)
    schema = httpx.get(f"{server.url}/openapi.json").json()
    seen: Seen = set()
    with server.client() as client, ExitStack() as streams:
        load_tiny(client)
        submit = {"model": "tiny", "dataset": synthetic_dataset.name, "params": FAST_PARAMS}
        running = client.post("/v1/validations", json=submit).json()["id"]
        assert gated.started.wait(30)
        assert client.post("/v1/validations", json=submit).status_code == 202  # queued: the queue is full
        seen.add(("post", "/v1/validations", client.post("/v1/validations", json=submit).status_code))
        files = upload_files(synthetic_dataset, 1)
        upload = client.post("/v1/validations/upload", data={"model": "tiny"}, files=files)
        seen.add(("post", "/v1/validations/upload", upload.status_code))
        events = f"/v1/validations/{running}/events"
        first = streams.enter_context(server.client()).send(client.build_request("GET", events), stream=True)
        assert first.status_code == 200
        seen.add(("get", "/v1/validations/{job_id}/events", client.get(events).status_code))
        deleted = client.delete(f"/v1/validations/{running}")
        seen.add(("delete", "/v1/validations/{job_id}", deleted.status_code))
        seen.add(("get", "/v1/validations/{job_id}", client.get(f"/v1/validations/{'0' * 32}").status_code))
        seen |= _guard_refusals(server, schema, running)
        first.close()
    assert {status for _, _, status in seen} >= {401, 404, 408, 409, 413, 429}, seen
    undocumented = {
        (method, path, status) for method, path, status in seen
        if str(status) not in schema["paths"][path][method]["responses"]
    }
    assert not undocumented, undocumented
