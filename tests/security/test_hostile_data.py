"""Hostile and careless data against the real server (``smartcash serve`` on loopback): images without labels,
a decompression bomb, a YAML alias bomb and a request whose tensors would not fit in memory.

Before: no labels -> ``internal_error`` (a reshape of an empty array); the 48 KB bomb PNG -> +4.2 GB RSS and
52 s of CPU; the 442-byte alias bomb -> 9.5 s, ~1 GB and a 122 MB 400 body; ``imgsz 4096`` with
``batch_size 512`` -> accepted (hundreds of GB of tensors).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import torch
from fastapi.testclient import TestClient

from smartcash_core.validation.memory import default_memory_budget
from tests.security.hostile_data import png_bomb, yaml_alias_bomb
from tests.service.conftest import load_tiny, wait_final
from tests.service.servers import ServerProcess

FIXTURE_VAL = Path(__file__).resolve().parents[1] / "fixtures" / "yolov5" / "val"
PHOTOS = sorted((FIXTURE_VAL / "images" / "val").glob("*.jpg"))[:4]
PARAMS = {"imgsz": 128, "batch_size": 4, "workers": 0}
BUDGET = 5 * 2**30  # the server's memory budget in this module: deterministic suggestions
ISSUE_BATCH = 512
ISSUE_REQUEST = {"model": "tiny", "dataset": "many", "params": {"imgsz": 4096, "batch_size": ISSUE_BATCH}}


def _photos(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True)
    for photo in PHOTOS[:count]:
        shutil.copyfile(photo, folder / photo.name)
    return folder


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hostile_data")
    _photos(root / "no_labels" / "images" / "val", 4)  # a dataset folder without labels/
    bomb_images = _photos(root / "bomb_set" / "images" / "val", 1)
    (bomb_images / "bomb.png").write_bytes(png_bomb())
    _photos(root / "yaml_bomb" / "images" / "val", 1)
    (root / "yaml_bomb" / "data.yaml").write_text(yaml_alias_bomb())
    _photos(root / "one" / "images" / "val", 1)
    many = _photos(root / "many" / "images" / "val", 1)
    for number in range(ISSUE_BATCH):  # enough images for full batches of 512 (hard links: no copies)
        os.link(many / PHOTOS[0].name, many / f"copy{number:03d}.jpg")
    return root


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, checkpoint_root: Path, data_root: Path
) -> Iterator[ServerProcess]:
    state = tmp_path_factory.mktemp("hostile_data_state")
    process = ServerProcess(state, checkpoint_root, data_root, SMARTCASH_MEMORY_BUDGET_BYTES=str(BUDGET))
    yield process.start()
    process.stop()


def _submit(client: httpx.Client, dataset: str) -> httpx.Response:
    return client.post("/v1/validations", json={"model": "tiny", "dataset": dataset, "params": PARAMS})


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


def _assert_no_label_result(result: dict[str, object], images: int, where: str) -> None:
    metrics = result["metrics"]
    assert isinstance(metrics, dict)
    for view in (metrics, metrics["fine"]):
        assert [view[key] for key in ("map50", "map50_95", "precision", "recall")] == [None] * 4
        assert view["per_class"] == []
    assert result["dataset"] == {"images": images, "instances": 0, "skipped": []}
    warnings = result["warnings"]
    assert isinstance(warnings, list) and [w["code"] for w in warnings] == ["no_labels"]
    assert where in warnings[0]["message"]


def test_upload_without_labels_succeeds_with_null_metrics(server: ServerProcess) -> None:
    files = [("files", (photo.name, photo.read_bytes(), "image/jpeg")) for photo in PHOTOS[:3]]
    with server.client() as client:
        response = client.post(
            "/v1/validations/upload?wait=true",
            data={"model": "tiny", "params": json.dumps(PARAMS)},
            files=files,
        )
        assert response.status_code == 200, response.text
        job = response.json()
        assert job["status"] == "succeeded"
        _assert_no_label_result(job["result"], 3, "same-stem .txt files in the upload")
        rows = client.get(f"/v1/validations/{job['id']}/images").json()["items"]
    assert len(rows) == 3 and all(row["instances"] == 0 and row["fp"] == row["predictions"] for row in rows)


def test_dataset_folder_without_labels_succeeds_with_null_metrics(
    server: ServerProcess, data_root: Path
) -> None:
    with server.client() as client:
        submitted = _submit(client, "no_labels")
        assert submitted.status_code == 202, submitted.text
        job = wait_final(client, submitted.json()["id"])
    assert job["status"] == "succeeded", job
    _assert_no_label_result(job["result"], 4, "label files were looked for in labels/val/")
    assert str(data_root) not in json.dumps(job["result"]["warnings"])


def test_bomb_upload_is_skipped_with_bounded_memory(server: ServerProcess) -> None:
    assert server.process is not None
    pid = server.process.pid
    files = [
        ("files", ("bomb.png", png_bomb(), "image/png")),
        ("files", (PHOTOS[0].name, PHOTOS[0].read_bytes(), "image/jpeg")),
    ]
    before = _status_kib(pid, "VmRSS")
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset the server's peak RSS (VmHWM)
    with server.client() as client:
        response = client.post(
            "/v1/validations/upload?wait=true",
            data={"model": "tiny", "params": json.dumps(PARAMS)},
            files=files,
        )
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["dataset"]["images"] == 1
    assert result["dataset"]["skipped"] == [{
        "file": "bomb.png",
        "line": None,
        "reason": "image is 19999x19999 = 400.0 MP, over the cap of 40 MP (max_image_pixels); not decoded",
    }]
    grown_mib = (_status_kib(pid, "VmHWM") - before) / 1024
    assert grown_mib < 500, f"server peak RSS grew by {grown_mib:.0f} MiB"  # before the cap: +4200 MiB


def test_bomb_in_a_dataset_folder_is_skipped(server: ServerProcess) -> None:
    with server.client() as client:
        submitted = _submit(client, "bomb_set")
        assert submitted.status_code == 202, submitted.text
        job = wait_final(client, submitted.json()["id"])
    assert job["status"] == "succeeded", job
    skipped = job["result"]["dataset"]["skipped"]
    assert [entry["file"] for entry in skipped] == ["images/val/bomb.png"]


def test_yaml_alias_bomb_is_a_fast_small_400(server: ServerProcess, data_root: Path) -> None:
    with server.client() as client:
        started = time.perf_counter()
        response = _submit(client, "yaml_bomb")
        elapsed = time.perf_counter() - started
    assert response.status_code == 400, response.text[:500]
    assert len(response.content) < 2048
    error = response.json()["error"]
    assert error["code"] == "unsafe_dataset_file"
    assert error["message"] == (
        "dataset 'yaml_bomb': yaml_bomb/data.yaml: YAML alias *a0 on line 2: aliases are not allowed in a "
        "dataset file"
    )
    assert str(data_root) not in response.text
    assert elapsed < 5.0  # before: 9.5 s and a 122 MB body; now milliseconds (generous under load)


def test_a_small_set_is_estimated_with_its_own_image_count(server: ServerProcess) -> None:
    """batch_size 512 over one image forms one batch of 1: at imgsz 1024 that fits the budget, uploaded or as
    a dataset (512 images at 1024 would not: ~200 GiB estimated)."""
    params = {"imgsz": 1024, "batch_size": ISSUE_BATCH}
    files = [("files", (PHOTOS[0].name, PHOTOS[0].read_bytes(), "image/jpeg"))]
    with server.client() as client:
        uploaded = client.post(
            "/v1/validations/upload", data={"model": "tiny", "params": json.dumps(params)}, files=files
        )
        assert uploaded.status_code == 202, uploaded.text
        submitted = client.post("/v1/validations", json={"model": "tiny", "dataset": "one", "params": params})
        assert submitted.status_code == 202, submitted.text
        for job_id in (uploaded.json()["id"], submitted.json()["id"]):
            assert wait_final(client, job_id)["status"] == "succeeded"
        refused = client.post("/v1/validations", json={"model": "tiny", "dataset": "many", "params": params})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "memory_budget_exceeded"



def test_the_default_budget_comes_from_the_device(client_for: Callable[..., TestClient]) -> None:
    """Without SMARTCASH_MEMORY_BUDGET_BYTES the budget is half this machine's memory (CPU)."""
    client = client_for()
    load_tiny(client)
    error = client.post("/v1/validations", json=ISSUE_REQUEST).json()["error"]
    assert error["code"] == "memory_budget_exceeded"
    assert error["budget_bytes"] == default_memory_budget(torch.device("cpu"))


def test_the_issue_memory_request_is_refused_and_the_suggested_batch_is_accepted(
    server: ServerProcess,
) -> None:
    request = json.loads(json.dumps(ISSUE_REQUEST))
    with server.client() as client:
        started = time.perf_counter()
        refused = client.post("/v1/validations", json=request)
        elapsed = time.perf_counter() - started
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        assert error["code"] == "memory_budget_exceeded"
        assert error["budget_bytes"] == BUDGET and error["estimate_bytes"] > 100 * BUDGET
        assert "over the memory budget of 5.00 GiB" in error["message"]
        suggested = error["suggested_batch_size"]
        assert suggested >= 1 and f"batch_size {suggested} fits" in error["message"]
        assert error["fix"] == f"send batch_size {suggested} (or smaller)"
        assert elapsed < 5.0  # refused before anything is queued or read
        request["params"]["batch_size"] = suggested
        accepted = client.post("/v1/validations", json=request)
        assert accepted.status_code == 202, accepted.text
        client.post(f"/v1/validations/{accepted.json()['id']}/cancel")
