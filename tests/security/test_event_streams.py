"""Issue 11 item 12b, over real HTTP connections: event streams beyond ``SMARTCASH_MAX_SSE_CONNECTIONS``
answer 429 with ``Retry-After``; a stream that ends (the client left) gives its slot back."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import httpx

from tests.security.threaded_server import ThreadedServer
from tests.service.conftest import FAST_PARAMS, GatedRunner, load_tiny, wait_final


def _events(client: httpx.Client, job_id: str) -> httpx.Response:
    return client.send(client.build_request("GET", f"/v1/validations/{job_id}/events"), stream=True)


def test_event_streams_are_capped_and_free_their_slot(
    threaded_server_for: Callable[..., ThreadedServer], gated: GatedRunner, synthetic_dataset: Path
) -> None:
    server = threaded_server_for(max_sse_connections=2, retry_after_s=3)
    with ExitStack() as streams, server.client() as client:
        load_tiny(client)
        body = {"model": "tiny", "dataset": synthetic_dataset.name, "params": FAST_PARAMS}
        job_id = client.post("/v1/validations", json=body).json()["id"]
        assert gated.started.wait(30)  # the job runs, held at its first batch: its streams stay open
        opened = [_events(streams.enter_context(server.client()), job_id) for _ in range(2)]
        assert all(stream.status_code == 200 for stream in opened)
        refused = client.get(f"/v1/validations/{job_id}/events")
        assert refused.status_code == 429 and refused.headers["retry-after"] == "3"
        assert refused.json()["error"]["code"] == "too_many_streams"
        opened[0].close()  # the client goes away: the server notices and the slot is free again
        deadline = time.monotonic() + 10
        while (again := _events(streams.enter_context(server.client()), job_id)).status_code == 429:
            again.close()
            assert time.monotonic() < deadline, "the closed stream kept its slot"
            time.sleep(0.1)
        assert again.status_code == 200
        gated.gate.set()
        assert wait_final(client, job_id)["status"] == "succeeded"
        assert any(line.startswith("event: status") for line in again.iter_lines())
