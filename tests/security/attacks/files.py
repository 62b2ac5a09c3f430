"""Attacks through what the server reads: checkpoints, datasets, uploaded images and archives."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import httpx

from tests.security.attacks.inputs import BAD_METADATA, png_bomb
from tests.security.attacks.registry import Outcome, Target, attack, error_code, timed
from tests.security.hostile_archives import record_bomb_targz

_FINAL = {"succeeded", "failed", "cancelled", "interrupted"}


def _load(target: Target, name: str, checkpoint: str) -> Outcome:
    with target.client() as client, timed() as took:
        response = client.post("/v1/models", json={"name": name, "checkpoint": checkpoint})
    if response.status_code == 201:
        with target.client() as client:
            client.delete(f"/v1/models/{name}")
    return Outcome(error_code(response), took[0])


def job_outcome(client: httpx.Client, response: httpx.Response, timeout_s: float = 120.0) -> str:
    """``"<submit status>"`` for a refused submission, else ``"job <final status> [<error code>]"``."""
    if response.status_code not in (200, 202):
        return error_code(response)
    job_id = response.json()["id"]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/v1/validations/{job_id}").json()
        if job["status"] in _FINAL:
            error = (job.get("error") or {}).get("code", "")
            return f"job {job['status']} {error}".strip()
        time.sleep(0.1)
    client.post(f"/v1/validations/{job_id}/cancel")
    return "job still running"


def _submit_and_wait(target: Target, body: dict[str, Any]) -> Outcome:
    with target.client() as client, timed() as took:
        answer = job_outcome(client, client.post("/v1/validations", json=body))
    return Outcome(answer, took[0])


def _upload_and_wait(target: Target, files: list[tuple[str, tuple[str, bytes, str]]]) -> Outcome:
    form = {"model": "tiny", "params": json.dumps({"imgsz": 64})}
    with target.client() as client, timed() as took:
        answer = job_outcome(client, client.post("/v1/validations/upload", data=form, files=files))
    return Outcome(answer, took[0])


for _name in BAD_METADATA:  # item 1: one attack each
    attack("1", f"checkpoint metadata {_name}", r"^422 (bad_checkpoint_metadata|checkpoint_too_large)$")(
        lambda target, name=_name: _load(target, name.replace("_", "-"), f"{name}.safetensors")
    )


@attack("2", "poisoning pickle, then a real YOLOv5 .pt", r"^422 unsafe_checkpoint, then 201$")
def poison_then_load(target: Target) -> Outcome:
    refused = _load(target, "poison", "poison.pt")
    loaded = _load(target, "v5", "yolov5n_rezipped.pt")
    return Outcome(f"{refused.answer}, then {loaded.answer}", refused.seconds + loaded.seconds)


@attack("3", "load a big model (health probes meanwhile)", r"^201$")
def big_model_load(target: Target) -> Outcome:
    return _load(target, "big", "big.safetensors")


@attack("6", "dataset without labels/ (background images)", r"^job succeeded")
def dataset_without_labels(target: Target) -> Outcome:
    return _submit_and_wait(target, {"model": "tiny", "dataset": "nolabels", "params": {"imgsz": 64}})


@attack("6", "upload of images without label files", r"^job succeeded")
def upload_without_labels(target: Target) -> Outcome:
    images = sorted((target.root / "data" / "ds" / "images" / "val").iterdir())[:4]
    files = [("files", (path.name, path.read_bytes(), "image/jpeg")) for path in images]
    return _upload_and_wait(target, files)


@attack("7", "48 KB PNG of 19999x19999 pixels (decompression bomb)", r"^job (succeeded|failed)|^4\d\d")
def png_decompression_bomb(target: Target) -> Outcome:
    ok = next((target.root / "data" / "ds" / "images" / "val").iterdir())
    files = [
        ("files", ("bomb.png", png_bomb(), "image/png")),
        ("files", ("bomb.txt", b"0 0.5 0.5 0.1 0.1\n", "text/plain")),
        ("files", (ok.name, ok.read_bytes(), "image/jpeg")),
    ]
    return _upload_and_wait(target, files)


@attack("8", "imgsz 4096 with batch_size 512 (memory budget)", r"^400")
def huge_batch(target: Target) -> Outcome:
    params = {"imgsz": 4096, "batch_size": 512}
    return _submit_and_wait(target, {"model": "tiny", "dataset": "ds", "params": params})


@attack("9", "data.yaml alias bomb (9^8 names)", r"^4\d\d|^job failed")
def yaml_alias_bomb(target: Target) -> Outcome:
    with target.client() as client, timed() as took:
        response = client.post("/v1/validations", json={"model": "tiny", "dataset": "yamlbomb"})
        answer = job_outcome(client, response)
    size = len(response.content)
    return Outcome(f"{answer} ({size} B body)", took[0])


@attack("10", "0.6 MB tar.gz with a 600 MB pax header", r"^413 payload_too_large$")
def pax_header_bomb(target: Target) -> Outcome:
    bomb = record_bomb_targz(600)
    with target.client() as client, timed() as took:
        response = client.post("/v1/validations/upload", data={"model": "tiny"},
                               files=[("files", ("bomb.tar.gz", io.BytesIO(bomb), "application/gzip"))])
    return Outcome(error_code(response), took[0])


@attack("10", "306 KB .pt zip bomb (300 MB pickle)", r"^422 checkpoint_too_large$")
def pt_zip_bomb(target: Target) -> Outcome:
    return _load(target, "bomb", "bomb.pt")
