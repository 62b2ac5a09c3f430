"""The container health probe (docker/healthcheck.py) against a real HTTP server on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

PROBE = Path(__file__).resolve().parents[2] / "docker" / "healthcheck.py"


class HealthHandler(BaseHTTPRequestHandler):
    """Live always answers 200; ready answers 503, like the service before a model is loaded."""

    def do_GET(self) -> None:
        status = {"/v2/health/live": 200, "/v2/health/ready": 503}.get(self.path, 404)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        return


@pytest.fixture
def server_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), HealthHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def run_probe(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SMARTCASH_PORT=str(port))
    return subprocess.run(
        [sys.executable, str(PROBE), *args], env=env, capture_output=True, text=True, timeout=30, check=False
    )


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_healthy_when_live_answers_200(server_port: int) -> None:
    result = run_probe(server_port)
    assert result.returncode == 0, result.stderr


def test_unhealthy_when_the_route_answers_503(server_port: int) -> None:
    result = run_probe(server_port, "/v2/health/ready")
    assert result.returncode == 1
    assert f"127.0.0.1:{server_port}/v2/health/ready" in result.stderr


def test_unhealthy_when_nothing_listens() -> None:
    result = run_probe(unused_port())
    assert result.returncode == 1
    assert "did not answer 200" in result.stderr
