"""Issue 11 item 5, with raw sockets against the real server: uploads that send their headers and 100 bytes,
then stall, no longer keep every upload slot. After ``SMARTCASH_BODY_TIMEOUT_S`` (1 s here) each gets 408
and its connection is closed; the next honest upload is accepted.

Before: the stalled connections held all ``SMARTCASH_MAX_CONCURRENT_UPLOADS`` slots for as long as they
stayed open, and every other upload answered 429.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

from tests.security.conftest import HARDENED_ENV
from tests.service.conftest import FAST_PARAMS, upload_files, wait_final
from tests.service.servers import HEADERS, ServerProcess

SLOTS = int(HARDENED_ENV["SMARTCASH_MAX_CONCURRENT_UPLOADS"])


def stalled_upload(port: int) -> socket.socket:
    """Headers of a 1 MB multipart upload and its first 100 bytes; then nothing."""
    head = (
        "POST /v1/validations/upload HTTP/1.1\r\nHost: x\r\n"
        f"X-API-Key: {HEADERS['X-API-Key']}\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 1000000\r\n\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=15)
    sock.sendall(head + b"--b\r\n" + b"x" * 95)
    return sock


def answer_and_close(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    sock.close()
    return received


def _upload(server: ServerProcess, dataset: Path) -> int:
    with server.client() as client:
        form = {"model": "tiny", "params": json.dumps(FAST_PARAMS)}
        response = client.post("/v1/validations/upload", data=form, files=upload_files(dataset, 2))
        if response.status_code == 202:
            assert wait_final(client, response.json()["id"])["status"] == "succeeded"
        return response.status_code


def test_stalled_uploads_free_their_slots_with_408(hardened_server: ServerProcess, synthetic_dataset: Path
                                                   ) -> None:
    stalled = [stalled_upload(hardened_server.port) for _ in range(SLOTS)]
    time.sleep(0.3)  # the server has read their headers and handed each a slot
    started = time.monotonic()
    assert _upload(hardened_server, synthetic_dataset) == 429  # every slot is held
    answers = [answer_and_close(sock) for sock in stalled]
    waited = time.monotonic() - started
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
        assert b'"request_timeout"' in answer and b"connection: close" in answer.lower()
    assert waited < 5, waited
    assert _upload(hardened_server, synthetic_dataset) == 202


def test_a_trickle_slower_than_the_minimum_rate_is_cut(hardened_server: ServerProcess) -> None:
    """10 bytes every 0.2 s never stalls for a second, but falls behind 16 KiB/s after the grace."""
    sock = stalled_upload(hardened_server.port)
    started = time.monotonic()
    sock.settimeout(0.2)
    answer = b""
    while time.monotonic() - started < 10:
        try:
            sock.sendall(b"y" * 10)
            answer += sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
        if answer:
            break
    sock.settimeout(10)
    answer += answer_and_close(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
    assert time.monotonic() - started < 5
