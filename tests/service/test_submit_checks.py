"""What a validation request learns at submit (issue 13): dataset problems as 400s with stable codes and
relative paths, the image size taken from the checkpoint, ``?wait=true`` on dataset jobs, the job's own
cache use beside the process totals, and a 202 that never says ``running`` without a start time."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.jobs import JobManager
from service.live import Job
from service.store import JobRecord
from tests.service.conftest import FAST_PARAMS, load_tiny, wait_final

Client = Callable[..., TestClient]


@pytest.fixture()
def broken_sets(data_root: Path, synthetic_dataset: Path) -> Iterator[dict[str, str]]:
    """Datasets under the data root that the reader would stop on, by the code the API must answer."""
    made: list[Path] = []

    def dataset(name: str, yaml_text: str | None = None, image: bool = True) -> str:
        root = data_root / f"bad_{name}"
        (root / "images" / "val").mkdir(parents=True)
        if image:
            shutil.copy(next((synthetic_dataset / "images" / "val").glob("*.jpg")), root / "images" / "val")
        if yaml_text is not None:
            (root / "data.yaml").write_text(yaml_text)
        made.append(root)
        return root.name

    yield {
        "dataset_split_missing": dataset("no_val", "path: .\ntrain: images/val\n"),
        "dataset_split_entry_missing": dataset("entry", "path: .\nval: images/nowhere\n"),
        "dataset_unreadable": dataset("yaml", "val: [unclosed\n"),
        "dataset_empty": dataset("empty", None, image=False),
    }
    for root in made:
        shutil.rmtree(root)


def test_datasets_the_reader_would_stop_on_are_refused_at_submit(
    client_for: Client, broken_sets: dict[str, str], data_root: Path
) -> None:
    client = client_for()
    load_tiny(client)
    for code, name in broken_sets.items():
        body = {"model": "tiny", "dataset": name, "params": FAST_PARAMS}
        response = client.post("/v1/validations", json=body)
        error = response.json()["error"]
        assert (response.status_code, error["code"]) == (400, code), (name, error)
        assert error["fix"] and str(data_root) not in error["message"] and name in error["message"]
    assert client.get("/v1/validations").json()["total"] == 0  # nothing was queued


def test_a_missing_split_and_a_missing_dataset_name_what_exists(
    client_for: Client, synthetic_dataset: Path, data_root: Path
) -> None:
    client = client_for()
    load_tiny(client)
    body = {"model": "tiny", "dataset": synthetic_dataset.name, "split": "test", "params": FAST_PARAMS}
    split = client.post("/v1/validations", json=body).json()["error"]
    assert split["code"] == "dataset_split_missing" and "'val'" in split["message"]
    assert str(data_root) not in split["message"]
    misspelt = {**body, "split": "val", "dataset": synthetic_dataset.name[:-1]}
    typo = client.post("/v1/validations", json=misspelt)
    error = typo.json()["error"]
    assert (typo.status_code, error["code"]) == (400, "dataset_not_found")
    assert f"did you mean {synthetic_dataset.name}" in error["message"]
    assert str(data_root) not in error["message"]


def test_the_image_size_defaults_to_the_checkpoints_and_odd_sizes_are_rounded_with_a_warning(
    client_for: Client, synthetic_dataset: Path
) -> None:
    client = client_for()
    load_tiny(client)  # tiny.safetensors records imgsz 64
    body = {"model": "tiny", "dataset": synthetic_dataset.name, "params": {"batch_size": 8}}
    accepted = client.post("/v1/validations", json=body).json()
    assert accepted["params"]["imgsz"] == 64  # shown at submit, not null
    final = wait_final(client, accepted["id"])
    assert final["result"]["params"]["imgsz"] == 64 and final["result"]["warnings"] == []
    odd_id = client.post("/v1/validations", json={**body, "params": {"imgsz": 70}}).json()["id"]
    odd = wait_final(client, odd_id)
    assert odd["params"]["imgsz"] == 70 and odd["result"]["params"]["imgsz"] == 96
    assert [warning["code"] for warning in odd["result"]["warnings"]] == ["imgsz_rounded"]
    assert "96" in odd["result"]["warnings"][0]["message"]


def test_wait_true_on_a_dataset_answers_with_the_result_or_refuses_big_sets(
    client_for: Client, synthetic_dataset: Path
) -> None:
    body = {"model": "tiny", "dataset": synthetic_dataset.name, "params": FAST_PARAMS}
    client = client_for()
    load_tiny(client)
    done = client.post("/v1/validations?wait=true", json=body)
    assert done.status_code == 200 and done.json()["status"] == "succeeded"
    assert done.json()["result"]["dataset"]["images"] == 24
    small = client_for(wait_max_images=10)
    load_tiny(small)
    refused = small.post("/v1/validations?wait=true", json=body)
    assert refused.status_code == 422 and "at most 10 images" in refused.json()["error"]["message"]


def test_each_job_reports_its_own_cache_use_beside_the_process_totals(
    client_for: Client, synthetic_dataset: Path
) -> None:
    client = client_for()
    load_tiny(client)
    body = {"model": "tiny", "dataset": synthetic_dataset.name, "params": FAST_PARAMS}
    first = wait_final(client, client.post("/v1/validations", json=body).json()["id"])["result"]
    second = wait_final(client, client.post("/v1/validations", json=body).json()["id"])["result"]
    assert first["cache_job"]["image"]["misses"] == 24 and first["cache_job"]["image"]["hits"] == 0
    assert first["cache_job"]["image"]["stored_bytes"] > 0
    assert second["cache_job"]["image"] == {
        "hits": 24, "misses": 0, "hit_bytes": first["cache_job"]["image"]["stored_bytes"], "stored_bytes": 0
    }
    # the process totals keep counting across jobs: the second job's totals include the first job's
    assert second["cache"]["image"]["misses"] == 24 and second["cache"]["image"]["hits"] == 24


def test_a_record_read_before_the_claim_stays_queued(client_for: Client) -> None:
    """The 202 of a job claimed while it was being read showed ``running`` with ``started_at: null``."""
    jobs: JobManager = client_for().app.state.smartcash.jobs  # type: ignore[attr-defined]
    read_before_claim = JobRecord(
        id="f" * 32, status="queued", model="tiny", model_sha256="x", source_kind="dataset", source="d",
        params={}, created_at=0.0,
    )
    running_here = Job(id="f" * 32, model="tiny")
    running_here.update(status="running", running=True, done=3, total=9)
    jobs._live.add(running_here)
    try:
        record = jobs.with_live_progress(read_before_claim)
        assert (record.status, record.started_at) == ("queued", None)
        read_before_claim.status, read_before_claim.started_at = "running", 1.0
        assert jobs.with_live_progress(read_before_claim).done == 3  # once started: memory's progress
    finally:
        jobs._live.pop("f" * 32)


def test_liveness_says_nothing_about_models(client_for: Client) -> None:
    client = client_for(preload="tiny=tiny.safetensors")
    assert client.get("/v2/health/live").json() == {"status": "ok"}
