"""Real servers for end-to-end tests: `python -m service.cli serve` in a subprocess on a free port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

API_KEY = "e2e-key"
HEADERS = {"X-API-Key": API_KEY}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServerProcess:
    """``python -m service.cli serve`` with ``SMARTCASH_*`` settings, on a free port."""

    def __init__(
        self,
        state_dir: Path,
        checkpoint_root: Path,
        data_root: Path,
        ready_path: str = "/v2/health/ready",
        **env: str,
    ) -> None:
        self.port = _free_port()
        self.ready_path = ready_path  # /v2/health/live for a server without preloaded models
        self.log_path = state_dir.parent / f"server-{state_dir.name}-{self.port}.log"
        self.env = {
            **os.environ,
            "SMARTCASH_STATE_DIR": str(state_dir),
            "SMARTCASH_CHECKPOINT_ROOT": str(checkpoint_root),
            "SMARTCASH_DATA_ROOT": str(data_root),
            "SMARTCASH_PRELOAD": "tiny=tiny.safetensors",
            "SMARTCASH_API_KEY": API_KEY,
            "SMARTCASH_LOG_LEVEL": "warning",
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> ServerProcess:
        return self.launch().wait_ready(timeout)

    def launch(self) -> ServerProcess:
        """Start the process without waiting (start several, then ``wait_ready`` each)."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service.cli", "serve", "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def wait_ready(self, timeout: float = 90.0) -> ServerProcess:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}{self.ready_path}", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not ready in {timeout} s: {self.log_path.read_text()[-2000:]}")

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=HEADERS, timeout=30.0, **kwargs)

    def kill9(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def sse_events(client: httpx.Client, job_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Parsed SSE events (kind, data) of a job, until the server ends the stream."""
    kind = ""
    with client.stream("GET", f"/v1/validations/{job_id}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                yield kind, json.loads(line.removeprefix("data: "))
