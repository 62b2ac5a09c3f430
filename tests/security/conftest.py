"""The service fixtures (checkpoint root, app factory) for the adversarial tests, one real server with small
limits shared by the request-level attacks, and threaded servers over apps with a gated runner."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from service.settings import Settings
from tests.security.threaded_server import ThreadedServer
from tests.service.conftest import (  # noqa: F401 (pytest finds fixtures by name in this namespace)
    GatedRunner,
    checkpoint_root,
    client_for,
    data_root,
    gated,
    settings_for,
)
from tests.service.servers import HEADERS, ServerProcess

# Small limits, so each attack on them takes about a second: body deadline 1 s, 2 upload slots, 2 streams.
HARDENED_ENV = {
    "SMARTCASH_BODY_TIMEOUT_S": "1",
    "SMARTCASH_MAX_CONCURRENT_UPLOADS": "2",
    "SMARTCASH_MAX_UPLOAD_BYTES": str(8 << 20),
    "SMARTCASH_MAX_SSE_CONNECTIONS": "2",
    "SMARTCASH_RETRY_AFTER_S": "2",
}


@pytest.fixture(scope="session")
def hardened_server(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
                    ) -> Iterator[ServerProcess]:
    """One real server (uvicorn on loopback, API key set) shared by the request-level attack tests."""
    roots = request.getfixturevalue("checkpoint_root"), request.getfixturevalue("data_root")
    process = ServerProcess(tmp_path_factory.mktemp("hardened_state"), *roots, **HARDENED_ENV)
    yield process.start()
    process.stop()


def server_pid(server: ServerProcess) -> int:
    assert server.process is not None and server.process.poll() is None
    return server.process.pid


@pytest.fixture()
def threaded_server_for(request: pytest.FixtureRequest) -> Iterator[Callable[..., ThreadedServer]]:
    """Start real uvicorn servers in threads over apps with the gated runner (``gated`` holds their jobs at
    the first batch until the test opens its gate); settings overrides as keyword arguments."""
    build: Callable[..., Settings] = request.getfixturevalue("settings_for")
    runner: GatedRunner = request.getfixturevalue("gated")
    servers: list[ThreadedServer] = []

    def start(**overrides: Any) -> ThreadedServer:
        settings = build(api_key=HEADERS["X-API-Key"], log_level="warning", **overrides)
        servers.append(ThreadedServer(settings, runner=runner).start())
        return servers[-1]

    yield start
    runner.gate.set()
    for server in servers:
        server.stop()
