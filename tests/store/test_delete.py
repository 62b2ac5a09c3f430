"""Deleting jobs (``DELETE /v1/validations/{id}``) and retention, on both backends: a finished job goes
with its per-image rows and artifacts; active jobs are never touched."""

from __future__ import annotations

from service.store import JobStore
from tests.store.conftest import StoreEnv, new_job

RESULT = {"metrics": {"map50": 0.5}, "per_image": [{"file": "a.jpg", "fp": 1}, {"file": "b.jpg", "fn": 2}]}


def _finished(store: JobStore, job_id: str) -> None:
    assert store.create(new_job(job_id), max_queued=100)
    assert store.claim("r1", ["sha-a"]) is not None
    assert store.finish(job_id, "r1", "succeeded", result=RESULT, artifacts={"plot_data.npz": b"\x00" * 64})


def _rows(store_env: StoreEnv, job_id: str) -> tuple[int, int]:
    images = store_env.raw("SELECT COUNT(*) FROM job_images WHERE job_id = ?", (job_id,))[0][0]
    artifacts = store_env.raw("SELECT COUNT(*) FROM job_artifacts WHERE job_id = ?", (job_id,))[0][0]
    return int(images), int(artifacts)


def test_delete_removes_a_finished_job_with_its_rows_and_artifacts(store_env: StoreEnv) -> None:
    store = store_env.open()
    _finished(store, "done")
    _finished(store, "kept")
    assert _rows(store_env, "done") == (2, 1)
    assert store.delete("done") == "succeeded"
    assert store.get("done") is None and _rows(store_env, "done") == (0, 0)
    assert store.delete("done") is None  # gone: the route answers 404
    assert store.get("kept") is not None and _rows(store_env, "kept") == (2, 1)


def test_delete_leaves_active_jobs_alone(store: JobStore) -> None:
    assert store.create(new_job("running"), max_queued=10) and store.create(new_job("queued"), max_queued=10)
    assert store.claim("r1", ["sha-a"]).id == "running"
    assert store.delete("running") == "running" and store.delete("queued") == "queued"
    assert store.get("running").status == "running" and store.get("queued").status == "queued"
    assert store.cancel("queued").after == "cancelled"
    assert store.delete("queued") == "cancelled" and store.get("queued") is None


def test_retention_by_count_keeps_the_newest_finished_jobs(store_env: StoreEnv) -> None:
    store = store_env.open()
    for index in range(5):
        _finished(store, f"j{index}")
    assert store.create(new_job("waiting"), max_queued=10)
    assert sorted(store.delete_finished(None, keep_newest=2)) == ["j0", "j1", "j2"]
    assert {record.id for record in store.list(0, 10)[0]} == {"j3", "j4", "waiting"}
    assert _rows(store_env, "j0") == (0, 0) and _rows(store_env, "j4") == (2, 1)
    assert store.delete_finished(None, keep_newest=2) == []


def test_retention_by_age_and_by_count_whichever_comes_first(store_env: StoreEnv) -> None:
    store = store_env.open()
    for index in range(4):
        _finished(store, f"j{index}")
    store_env.raw("UPDATE jobs SET finished_at = finished_at - 7200 WHERE id IN ('j2', 'j0')")
    assert sorted(store.delete_finished(3600, keep_newest=None)) == ["j0", "j2"]
    assert store.delete_finished(3600, keep_newest=1) == ["j1"]
    assert [record.id for record in store.list(0, 10)[0]] == ["j3"]
    assert store.delete_finished(None, None) == []
