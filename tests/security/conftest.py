"""The service fixtures (checkpoint root, app factory) for the adversarial tests, and one real server with
small limits shared by the request-level attacks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.service.conftest import (  # noqa: F401 (pytest finds fixtures by name in this namespace)
    checkpoint_root,
    client_for,
    data_root,
    gated,
    settings_for,
)
from tests.service.servers import ServerProcess

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
