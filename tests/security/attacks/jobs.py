"""Attacks on the job lifecycle and the state directory: queue slots, a second server, deletion, and what
the server leaves under ``$HOME`` and the temp dir (run last: it checks what all the others left)."""

from __future__ import annotations

import subprocess
import time

import httpx

from tests.security.attacks.files import job_outcome
from tests.security.attacks.registry import Outcome, Target, attack, error_code, timed
from tests.service.servers import ServerProcess

SLOW = {"imgsz": 320, "batch_size": 1, "workers": 0}  # 48 batches: long enough to act while it runs


def _submit(client: httpx.Client, dataset: str = "slow") -> httpx.Response:
    return client.post("/v1/validations", json={"model": "tiny", "dataset": dataset, "params": SLOW})


def _cancel_all(client: httpx.Client, responses: list[httpx.Response]) -> None:
    for response in responses:
        if response.status_code == 202:
            client.post(f"/v1/validations/{response.json()['id']}/cancel")
    for response in responses:
        if response.status_code == 202:
            job_outcome(client, response, timeout_s=60)


@attack("11", "cancel a queued job, submit again (queue full)", r"^429, cancel, then 202$")
def cancelled_job_frees_its_slot(target: Target) -> Outcome:
    queue = int(target.setting("max_queue"))
    with target.client() as client, timed() as took:
        submitted = [_submit(client)]  # runs
        time.sleep(0.5)
        submitted += [_submit(client) for _ in range(queue)]  # fill the queue
        full = _submit(client)
        client.post(f"/v1/validations/{submitted[-1].json()['id']}/cancel")
        again = _submit(client)
        _cancel_all(client, [*submitted, again])
    return Outcome(f"{full.status_code}, cancel, then {again.status_code}", took[0])


@attack("12a", "a second server on the same state dir", r"^exit 2: .*in use by another SmartCash server")
def second_server(target: Target) -> Outcome:
    root = target.root
    second = ServerProcess(root / "state", root / "checkpoints", root / "data", **target.env)
    with timed() as took:
        second.launch()
        assert second.process is not None
        try:
            code: int | None = second.process.wait(60)
        except subprocess.TimeoutExpired:
            code = None
    second.stop()
    log = second.log_path.read_text()
    reason = next((line.strip() for line in log.splitlines() if "in use" in line), log[-200:].strip())
    answer = f"exit {code}: {reason}" if code is not None else "started: both servers share the state dir"
    return Outcome(answer, took[0])


@attack("12d", "delete a running job, then the finished one", r"^409 conflict, then 204; 404 after$")
def delete_jobs(target: Target) -> Outcome:
    with target.client() as client, timed() as took:
        running = _submit(client)
        job_id = running.json()["id"]
        time.sleep(0.5)
        refused = client.delete(f"/v1/validations/{job_id}")
        client.post(f"/v1/validations/{job_id}/cancel")
        job_outcome(client, running)
        deleted = client.delete(f"/v1/validations/{job_id}")
        after = client.get(f"/v1/validations/{job_id}").status_code
    return Outcome(f"{error_code(refused)}, then {deleted.status_code}; {after} after", took[0])


@attack("13", "files left under $HOME and $TMPDIR (after every attack)", r"^none$", last=True)
def stray_files(target: Target) -> Outcome:
    with timed() as took:
        left = sorted(str(path.relative_to(target.root)) for folder in ("home", "tmp")
                      for path in (target.root / folder).rglob("*"))
    return Outcome(", ".join(left[:4]) + (" ..." if len(left) > 4 else "") if left else "none", took[0])
