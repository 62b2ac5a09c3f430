"""Tags on jobs, filters, run history, and SSE resume with Last-Event-ID, through the real app."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.store import JobRecord
from tests.service.conftest import FAST_PARAMS, GatedRunner, load_tiny, wait_final

Client = Callable[..., TestClient]


def _submit(client: TestClient, dataset: str, tags: dict[str, Any]) -> Any:
    body = {"model": "tiny", "dataset": dataset, "params": FAST_PARAMS, "tags": tags}
    return client.post("/v1/validations", json=body)


def _finished(client: TestClient, tags: dict[str, str], status: str, map50_95: float | None) -> str:
    """A job written to the app's store as a replica would: created, claimed, finished with these numbers."""
    store = client.app.state.smartcash.jobs.store  # type: ignore[attr-defined]
    job_id = uuid.uuid4().hex
    record = JobRecord(
        job_id, "queued", "m", "dataset", "ds", {}, time.time(), model_sha256=job_id, tags=tags
    )
    assert store.create(record, max_queued=100)
    assert store.claim("writer", [job_id]).id == job_id
    result = None if map50_95 is None else {"metrics": {"map50": map50_95 + 0.2, "map50_95": map50_95}}
    assert store.finish(job_id, "writer", status, result=result, error=None if result else {"code": "x"})
    return job_id


def test_tags_are_stored_returned_and_filter_as_an_and(client_for: Client, synthetic_dataset: Path) -> None:
    client = client_for()
    load_tiny(client)
    first = _submit(client, synthetic_dataset.name, {"run": "exp7", "epoch": "1"}).json()
    second = _submit(client, synthetic_dataset.name, {"run": "exp7", "epoch": "2", "lr": "0.01"}).json()
    other = _submit(client, synthetic_dataset.name, {"run": "exp8"}).json()
    assert first["tags"] == {"run": "exp7", "epoch": "1"}
    done = wait_final(client, second["id"])
    assert done["tags"]["lr"] == "0.01"
    assert done["headline"]["map50_95"] == done["result"]["metrics"]["map50_95"]

    def ids(*tags: str) -> list[str]:
        page = client.get("/v1/validations", params={"tag": list(tags)})
        assert page.status_code == 200, page.text
        return [item["id"] for item in page.json()["items"]]

    assert ids("run:exp7") == [second["id"], first["id"]]
    assert ids("run:exp7", "epoch:1") == [first["id"]]
    assert ids("run:exp8") == [other["id"]] and ids("run:nope") == []
    assert ids("run:exp7", "run:exp8") == []  # one key, two values: nothing carries both
    assert ids("lr:0.01") == [second["id"]]  # a value may hold ':' '.' and the like
    for bad in ("run", ":exp7", "r un:x", "run:"):
        refused = client.get("/v1/validations", params={"tag": bad})
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "unprocessable", bad


@pytest.mark.parametrize(
    "tags",
    [
        {f"k{index}": "v" for index in range(17)},  # more than 16
        {"bad key": "v"},
        {"k" * 65: "v"},
        {"run": ""},
        {"run": "x" * 257},
        {"run": "line\nbreak"},
        {"run": 7},
        ["run", "exp7"],
    ],
)
def test_hostile_tags_are_refused_before_anything_is_queued(
    client_for: Client, synthetic_dataset: Path, tags: Any
) -> None:
    client = client_for()
    load_tiny(client)
    response = _submit(client, synthetic_dataset.name, tags)
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request"
    assert client.get("/v1/validations").json()["total"] == 0


def test_run_history_orders_by_epoch_and_names_the_best_by_map50_95(client_for: Client) -> None:
    client = client_for()
    ten = _finished(client, {"run": "exp7", "epoch": "10"}, "succeeded", 0.61)
    two = _finished(client, {"run": "exp7", "epoch": "2"}, "succeeded", 0.65)
    failed = _finished(client, {"run": "exp7", "epoch": "3"}, "failed", None)
    loose = _finished(client, {"run": "exp7"}, "succeeded", 0.64)
    tie = _finished(client, {"run": "exp7", "epoch": "11"}, "succeeded", 0.65)
    _finished(client, {"run": "exp8", "epoch": "1"}, "succeeded", 0.99)
    history = client.get("/v1/runs/exp7").json()
    assert [job["id"] for job in history["jobs"]] == [two, failed, ten, tie, loose]
    assert [job["epoch"] for job in history["jobs"]] == ["2", "3", "10", "11", None]
    assert [job["map50_95"] for job in history["jobs"]] == [0.65, None, 0.61, 0.65, 0.64]
    assert history["jobs"][0]["map50"] == pytest.approx(0.85) and history["jobs"][1]["status"] == "failed"
    assert history["best"]["id"] == two and history["best_by"] == "map50_95"  # the earlier of a tie
    assert history["total"] == 5 and not history["truncated"]
    assert client.get("/v1/runs/exp7", params={"limit": 2}).json()["truncated"] is True
    empty = client.get("/v1/runs/never-tagged").json()
    assert empty["jobs"] == [] and empty["best"] is None and empty["total"] == 0


def test_run_history_reads_the_result_of_jobs_finished_before_the_headline_columns(
    client_for: Client,
) -> None:
    client = client_for()
    job_id = _finished(client, {"run": "old", "epoch": "1"}, "succeeded", 0.5)
    store = client.app.state.smartcash.jobs.store  # type: ignore[attr-defined]
    with store._transaction(write=True) as tx:  # as a row written by the previous release looks
        tx.execute("UPDATE jobs SET map50 = NULL, map50_95 = NULL WHERE id = ?", (job_id,))
    assert store.get(job_id).map50_95 is None
    history = client.get("/v1/runs/old").json()
    assert history["jobs"][0]["map50_95"] == 0.5 and history["best"]["id"] == job_id


def _events(client: TestClient, job_id: str, last_event_id: str | None = None) -> list[tuple[str, str, dict]]:
    """(event, id, data) of each event: fields gathered until the blank line that ends an event."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
    events: list[tuple[str, str, dict]] = []
    fields: dict[str, str] = {}
    with client.stream("GET", f"/v1/validations/{job_id}/events", headers=headers) as stream:
        for line in stream.iter_lines():
            if not line and "data" in fields:
                events.append((fields.get("event", ""), fields.get("id", ""), json.loads(fields["data"])))
                fields = {}
            elif ": " in line:
                name, _, value = line.partition(": ")
                fields[name] = value
    return events


def test_sse_events_have_ids_and_a_reconnect_resumes_after_the_last_one(
    client_for: Client, gated: GatedRunner, synthetic_dataset: Path
) -> None:
    client = client_for(runner=gated)
    load_tiny(client)
    job_id = _submit(client, synthetic_dataset.name, {}).json()["id"]
    assert gated.started.wait(30)
    gated.gate.set()
    everything = _events(client, job_id)
    assert everything[-1][:2] == ("status", "final") and everything[-1][2]["metrics"] is not None
    progress_ids = [event_id for kind, event_id, _ in everything if kind == "progress"]
    assert progress_ids and all(event_id.count(".") == 1 for event_id in progress_ids)
    # the job has ended: a client that saw some progress gets only the final event, once
    resumed = _events(client, job_id, last_event_id=progress_ids[0])
    assert [kind for kind, _, _ in resumed] == ["status"] and resumed[0][2] == everything[-1][2]
    for odd in ("garbage", "final", "99999999999999999999.1", ""):
        assert _events(client, job_id, last_event_id=odd)[-1][2] == everything[-1][2]


def test_sse_resume_skips_progress_already_seen(
    client_for: Client, gated: GatedRunner, synthetic_dataset: Path
) -> None:
    client = client_for(runner=gated)
    load_tiny(client)
    running = _submit(client, synthetic_dataset.name, {}).json()["id"]
    assert gated.started.wait(30)  # held at its first batch: 8 of 24 images done
    queued = _submit(client, synthetic_dataset.name, {}).json()["id"]
    with client.stream("GET", f"/v1/validations/{queued}/events", headers={"Last-Event-ID": "0.0"}) as stream:
        gated.gate.set()
        ids = [line for line in stream.iter_lines() if line.startswith("id: ")]
    assert "id: 0.0" not in ids and ids[-1] == "id: final"  # queued at 0 was seen: not sent again
    assert wait_final(client, running)["status"] == wait_final(client, queued)["status"] == "succeeded"
