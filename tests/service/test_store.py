"""SQLite job store: records, results, paging, and restart semantics."""

from __future__ import annotations

import time
from pathlib import Path

from service.store import JobRecord, JobStore


def _record(job_id: str, status: str = "queued") -> JobRecord:
    return JobRecord(
        id=job_id,
        status=status,
        model="m",
        source_kind="dataset",
        source="ds",
        params={"imgsz": 64},
        created_at=time.time(),
    )


def test_finished_result_survives_reopen_and_active_jobs_become_interrupted(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3")
    for job_id in ("done", "running", "queued"):
        store.create(_record(job_id))
    store.set_running("running")
    store.finish("done", "succeeded", result={"metrics": {"map50": 0.5}, "per_image": [{"file": "a.jpg"}]})
    store.close()

    reopened = JobStore(tmp_path / "jobs.sqlite3")
    assert reopened.mark_interrupted() == 2
    done = reopened.get("done")
    assert done is not None and done.status == "succeeded"
    assert done.result == {"metrics": {"map50": 0.5}}  # per_image is stored apart, served paged
    assert reopened.per_image("done") == [{"file": "a.jpg"}]
    for job_id in ("running", "queued"):
        record = reopened.get(job_id)
        assert record is not None and record.status == "interrupted"
        assert record.error is not None and record.error["code"] == "interrupted"
    assert reopened.mark_interrupted() == 0


def test_final_status_is_never_overwritten_by_late_transitions(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3")
    store.create(_record("a"))
    store.finish("a", "cancelled", error={"code": "cancelled"})
    store.set_running("a")
    store.set_status("a", "cancelling")
    record = store.get("a")
    assert record is not None and record.status == "cancelled"


def test_list_is_newest_first_paged_and_filtered(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3")
    for index in range(5):
        store.create(_record(f"j{index}"))
    store.finish("j1", "failed", error={"code": "x"})
    page, total = store.list(offset=1, limit=2)
    assert total == 5 and [r.id for r in page] == ["j3", "j2"]
    failed, failed_total = store.list(offset=0, limit=10, status="failed")
    assert failed_total == 1 and failed[0].id == "j1" and failed[0].error == {"code": "x"}
    assert store.get("missing") is None and store.per_image("j0") is None


def test_a_job_cancelled_as_it_starts_keeps_its_start_time_and_cancelling_status(tmp_path: Path) -> None:
    # cancel() may write 'cancelling' between the worker's in-memory start and its set_running()
    store = JobStore(tmp_path / "jobs.sqlite3")
    store.create(_record("raced"))
    store.set_status("raced", "cancelling")
    store.set_running("raced")
    record = store.get("raced")
    assert record is not None and record.status == "cancelling" and record.started_at is not None
    store.close()
