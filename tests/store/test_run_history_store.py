"""Tags, headline metrics, checkpoint jobs and completion notifications in the store, on both backends."""

from __future__ import annotations

import math
import threading
import time

from service.store import JobStore
from tests.store.conftest import StoreEnv, new_job


def _finish(store: JobStore, job_id: str, map50: float, map50_95: float) -> None:
    claimed = store.claim("r1", ["sha-a"], checkpoints=True)
    assert claimed is not None and claimed.id == job_id
    result = {"metrics": {"map50": map50, "map50_95": map50_95}, "per_image": []}
    assert store.finish(job_id, "r1", "succeeded", result=result)


def test_tags_round_trip_and_filter_as_an_and(store: JobStore) -> None:
    store.create(new_job("a", tags={"run": "exp7", "epoch": "1"}), max_queued=10)
    store.create(new_job("b", tags={"run": "exp7", "epoch": "2"}), max_queued=10)
    store.create(new_job("c", tags={"run": "exp8", "epoch": "1"}), max_queued=10)
    store.create(new_job("d"), max_queued=10)
    record = store.get("a")
    assert record is not None and record.tags == {"run": "exp7", "epoch": "1"}
    assert store.get("d").tags == {}  # type: ignore[union-attr]
    page, total = store.list(0, 10, tag_filter={"run": "exp7"})
    assert total == 2 and [r.id for r in page] == ["b", "a"]
    page, total = store.list(0, 10, tag_filter={"run": "exp7", "epoch": "1"})
    assert total == 1 and page[0].id == "a" and page[0].tags["epoch"] == "1"
    assert store.list(0, 10, tag_filter={"epoch": "1"})[1] == 2
    assert store.list(0, 10, tag_filter={"run": "exp9"}) == ([], 0)
    assert store.list(0, 10, status="queued", tag_filter={"run": "exp8"})[1] == 1
    assert store.list(0, 10, status="failed", tag_filter={"run": "exp8"})[1] == 0


def test_tag_text_is_data_not_sql(store: JobStore) -> None:
    hostile = {"run": "x' OR '1'='1", "k%_": "100% ?"}
    store.create(new_job("a", tags=hostile), max_queued=10)
    store.create(new_job("b", tags={"run": "other"}), max_queued=10)
    assert store.get("a").tags == hostile  # type: ignore[union-attr]
    assert [r.id for r in store.list(0, 10, tag_filter={"run": "x' OR '1'='1"})[0]] == ["a"]
    assert [r.id for r in store.list(0, 10, tag_filter={"k%_": "100% ?"})[0]] == ["a"]
    assert store.list(0, 10, tag_filter={"k%_": "100%"})[1] == 0  # exact match: no LIKE wildcards


def test_finish_copies_the_headline_and_ignores_non_numbers(store: JobStore) -> None:
    store.create(new_job("a"), max_queued=10)
    _finish(store, "a", 0.5, 0.25)
    record = store.get("a", with_result=False)
    assert record is not None and (record.map50, record.map50_95) == (0.5, 0.25)
    store.create(new_job("b"), max_queued=10)
    assert store.claim("r1", ["sha-a"]).id == "b"  # type: ignore[union-attr]
    store.finish("b", "r1", "succeeded", result={"metrics": {"map50": math.nan, "map50_95": "0.3"}})
    odd = store.get("b", with_result=False)
    assert odd is not None and odd.map50 is None and odd.map50_95 is None
    store.create(new_job("c"), max_queued=10)
    store.claim("r1", ["sha-a"])
    store.finish("c", "r1", "failed", error={"code": "x"})
    assert store.get("c").map50 is None  # type: ignore[union-attr]


def test_checkpoint_jobs_are_claimed_by_any_replica_that_asks_for_them(store: JobStore) -> None:
    store.create(new_job("named", model_sha256="sha-named"), max_queued=10)
    store.create(new_job("file", model_sha256="sha-file", checkpoint="runs/e1.safetensors"), max_queued=10)
    assert store.claim("r1", []) is None
    assert store.claim("r1", ["sha-other"]) is None  # neither its model nor checkpoints
    claimed = store.claim("r1", [], checkpoints=True)
    assert claimed is not None and claimed.id == "file" and claimed.checkpoint == "runs/e1.safetensors"
    assert claimed.model_sha256 == "sha-file"
    assert store.claim("r2", [], checkpoints=True) is None  # a named-model job needs its model
    assert store.claim("r2", ["sha-named"], checkpoints=True).id == "named"  # type: ignore[union-attr]


def test_a_notification_waits_for_the_final_status_then_one_claimer_gets_it(store_env: StoreEnv) -> None:
    first, second = store_env.open(), store_env.open()
    first.create(new_job("a", callback_url="http://127.0.0.1:9/hook"), max_queued=10)
    first.create(new_job("b"), max_queued=10)
    assert first.notification("b") is None
    pending = first.notification("a")
    assert pending is not None and (pending.state, pending.attempts, pending.url) == (
        "pending",
        0,
        "http://127.0.0.1:9/hook",
    )
    assert first.claim_notification("r1", 30) is None  # the job is still queued
    first.cancel("a")  # any final status counts
    claimed: list[object] = []
    threads = [
        threading.Thread(target=lambda s=s: claimed.append(s.claim_notification(f"r{id(s)}", 30)))
        for s in (first, second)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    winners = [item for item in claimed if item is not None]
    assert len(winners) == 1 and winners[0].job_id == "a"  # type: ignore[attr-defined]
    assert first.claim_notification("r3", 30) is None  # leased


def test_attempts_back_off_then_deliver_and_only_the_owner_records(store: JobStore) -> None:
    store.create(new_job("a", callback_url="http://127.0.0.1:9/hook"), max_queued=10)
    store.cancel("a")
    assert store.claim_notification("r1", 30) is not None
    assert not store.notification_attempted("a", "r2", delivered=True)  # not r2's lease
    assert store.notification_attempted("a", "r1", False, 500, "HTTP 500", retry_in_s=0.3)
    failed_once = store.notification("a")
    assert failed_once is not None and failed_once.attempts == 1 and failed_once.state == "pending"
    assert failed_once.last_status_code == 500 and failed_once.owner is None
    assert store.claim_notification("r1", 30) is None  # not due yet
    time.sleep(0.4)
    assert store.claim_notification("r2", 30) is not None
    assert store.notification_attempted("a", "r2", delivered=True, status_code=204)
    done = store.notification("a")
    assert done is not None and done.state == "delivered" and done.attempts == 2
    assert done.delivered_at is not None and store.claim_notification("r1", 30) is None


def test_out_of_attempts_fails_for_good_and_leases_expire_or_are_released(store: JobStore) -> None:
    for job_id in ("a", "b"):
        store.create(new_job(job_id, callback_url="https://hooks.example/x"), max_queued=10)
        store.cancel(job_id)
    first = store.claim_notification("r1", 30)
    assert first is not None
    assert store.notification_attempted(first.job_id, "r1", False, None, "refused", retry_in_s=None)
    assert store.notification(first.job_id).state == "failed"  # type: ignore[union-attr]
    second = store.claim_notification("r1", 0.2)
    assert second is not None and second.job_id != first.job_id
    time.sleep(0.3)
    again = store.claim_notification("r2", 30)  # r1's lease ran out (it died mid-delivery)
    assert again is not None and again.job_id == second.job_id and again.owner == "r2"
    assert store.release_notifications("r1") == 0 and store.release_notifications("r2") == 1
    assert store.claim_notification("r3", 30) is not None
    assert store.release_notifications(None) == 1
