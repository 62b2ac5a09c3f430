"""The job store contract, on both backends: records, the queue bound, claims, leases, cancel, recovery."""

from __future__ import annotations

import threading
import time
from typing import Any

from service.store import CancelOutcome, JobStore
from tests.store.conftest import StoreEnv, new_job

MANY = 100


def test_finished_result_survives_reopen_and_unshared_start_interrupts_the_rest(store_env: StoreEnv) -> None:
    store = store_env.open()
    for job_id in ("done", "running", "queued"):
        assert store.create(new_job(job_id), max_queued=10)
    assert store.claim("r1", ["sha-a"]).id == "done"
    assert store.claim("r1", ["sha-a"]).id == "running"
    result = {"metrics": {"map50": 0.5}, "per_image": [{"file": "a.jpg", "fp": 1}]}
    assert store.finish("done", "r1", "succeeded", result=result)
    store.close()

    reopened = store_env.open()
    assert reopened.interrupt_unfinished() == 2
    done = reopened.get("done")
    assert done is not None and done.status == "succeeded" and done.owner == "r1"
    assert done.result == {"metrics": {"map50": 0.5}}  # per_image lives in its own table, served paged
    assert reopened.per_image_all("done") == [{"file": "a.jpg", "fp": 1}]
    for job_id in ("running", "queued"):
        record = reopened.get(job_id)
        assert record is not None and record.status == "interrupted" and record.finished_at is not None
        assert record.error is not None and record.error["code"] == "interrupted"
    assert reopened.interrupt_unfinished() == 0


def test_a_final_status_is_never_overwritten(store: JobStore) -> None:
    store.create(new_job("a"), max_queued=10)
    assert store.cancel("a") == CancelOutcome(before="queued", after="cancelled")
    assert store.claim("r1", ["sha-a"]) is None  # a cancelled job is never claimed
    assert store.report_progress("a", "r1", 1, 2, "batch") is None
    assert not store.finish("a", "r1", "succeeded", result={"x": 1})
    assert store.cancel("a") == CancelOutcome(before="cancelled", after="cancelled")
    assert store.expire_leases() == 0 and store.interrupt_unfinished() == 0
    record = store.get("a")
    assert record is not None and record.status == "cancelled" and record.result is None
    assert record.error == {"code": "cancelled", "message": "cancelled before it started"}
    assert store.cancel("f" * 32) is None and store.get("f" * 32) is None


def test_list_is_newest_first_paged_and_filtered(store: JobStore) -> None:
    for index in range(5):
        store.create(new_job(f"j{index}"), max_queued=10)
    store.claim("r1", ["sha-a"])  # j0
    store.finish("j0", "r1", "failed", error={"code": "x"})
    page, total = store.list(offset=1, limit=2)
    assert total == 5 and [r.id for r in page] == ["j3", "j2"] and page[0].result is None
    failed, failed_total = store.list(offset=0, limit=10, status="failed")
    assert failed_total == 1 and failed[0].id == "j0" and failed[0].error == {"code": "x"}
    assert store.list(offset=10, limit=5) == ([], 5)
    assert store.queued_count() == 4


def test_the_queue_bound_counts_queued_jobs_only(store: JobStore) -> None:
    assert store.create(new_job("a"), max_queued=2) and store.create(new_job("b"), max_queued=2)
    assert not store.create(new_job("c"), max_queued=2)
    assert store.get("c") is None  # a refused job leaves no row
    store.claim("r1", ["sha-a"])
    assert store.create(new_job("c"), max_queued=2)  # a running job does not count
    assert store.queued_count() == 2


def test_claims_take_the_oldest_job_of_a_loaded_checkpoint_and_respect_pins(store: JobStore) -> None:
    store.create(new_job("x1", "sha-x"), max_queued=10)
    store.create(new_job("y1", "sha-y"), max_queued=10)
    store.create(new_job("x2", "sha-x", pinned_to="r2"), max_queued=10)
    store.create(new_job("x3", "sha-x"), max_queued=10)
    assert store.claim("r1", []) is None  # no model loaded: nothing to run
    first = store.claim("r1", ["sha-x"])
    assert first is not None and (first.id, first.status, first.owner, first.attempts) == (
        "x1",
        "running",
        "r1",
        1,
    )
    assert first.started_at is not None and first.lease_expires_at is not None
    assert store.claim("r1", ["sha-x"]).id == "x3"  # x2 is pinned to r2
    assert store.claim("r1", ["sha-x"]) is None
    assert store.claim("r2", ["sha-y", "sha-x"]).id == "y1"  # oldest first, whatever the model
    assert store.claim("r2", ["sha-x"]).id == "x2"


def test_concurrent_claimers_on_separate_connections_take_each_job_exactly_once(store_env: StoreEnv) -> None:
    stores = [store_env.open() for _ in range(3)]
    for index in range(MANY):
        stores[index % 3].create(new_job(f"job{index:03d}"), max_queued=MANY)
    claimed: list[str] = []
    lock = threading.Lock()

    def claim_all(store: Any, owner: str) -> None:
        while (record := store.claim(owner, ["sha-a"])) is not None:
            with lock:
                claimed.append(record.id)

    threads = [
        threading.Thread(target=claim_all, args=(store, f"r{index}-{n}"))
        for index, store in enumerate(stores)
        for n in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(claimed) == [f"job{index:03d}" for index in range(MANY)]
    rows = store_env.raw("SELECT COUNT(*), MIN(attempts), MAX(attempts) FROM jobs WHERE status = 'running'")
    assert rows == [(MANY, 1, 1)]
    assert len({owner for (owner,) in store_env.raw("SELECT owner FROM jobs")}) > 1


def test_cancel_from_another_connection_reaches_the_owner(store_env: StoreEnv) -> None:
    owner, other = store_env.open(), store_env.open()
    owner.create(new_job("a"), max_queued=10)
    owner.claim("r1", ["sha-a"])
    assert owner.report_progress("a", "r1", 1, 4, "batch") == "running"
    assert other.cancel("a") == CancelOutcome(before="running", after="cancelling")
    assert owner.renew_leases("r1") == {"a": "cancelling"}
    assert owner.report_progress("a", "r1", 2, 4, "batch") == "cancelling"
    assert other.cancel("a") == CancelOutcome(before="cancelling", after="cancelling")
    assert owner.finish("a", "r1", "cancelled", error={"code": "cancelled"})
    record = other.get("a")
    assert record is not None and (record.status, record.done, record.total) == ("cancelled", 2, 4)
    assert record.lease_expires_at is None and owner.renew_leases("r1") == {}


def test_an_expired_lease_interrupts_the_job_and_its_owner_can_no_longer_write(store_env: StoreEnv) -> None:
    owner, sweeper = store_env.open(lease_s=0.5), store_env.open(lease_s=0.5)
    for job_id in ("stale", "renewed"):
        owner.create(new_job(job_id), max_queued=10)
    owner.create(new_job("held", pinned_to="r1"), max_queued=10)  # an upload held by r1, not started
    owner.create(new_job("free"), max_queued=10)  # unpinned queued jobs have no lease: nobody's to lose
    owner.claim("r1", ["sha-a"])  # stale
    sweeper.claim("r2", ["sha-a"])  # renewed
    assert sweeper.expire_leases() == 0
    time.sleep(0.35)
    assert sweeper.renew_leases("r2") == {"renewed": "running"}
    time.sleep(0.35)
    assert sweeper.expire_leases() == 2  # stale and held: r1 stopped renewing
    statuses = {job_id: sweeper.get(job_id).status for job_id in ("stale", "renewed", "held", "free")}
    assert statuses == {"stale": "interrupted", "renewed": "running", "held": "interrupted", "free": "queued"}
    assert "lease" in sweeper.get("stale").error["message"]
    assert owner.report_progress("stale", "r1", 3, 4, "batch") is None
    assert not owner.finish("stale", "r1", "succeeded", result={"per_image": [{"file": "a"}]})
    assert owner.renew_leases("r1") == {} and owner.per_image_all("stale") == []
    assert sweeper.get("stale").done == 0


def test_release_interrupts_only_that_replicas_jobs(store: JobStore) -> None:
    store.create(new_job("mine"), max_queued=10)
    store.create(new_job("theirs"), max_queued=10)
    store.create(new_job("held", pinned_to="r1"), max_queued=10)
    store.create(new_job("queued"), max_queued=10)
    store.claim("r1", ["sha-a"])
    store.claim("r2", ["sha-a"])
    assert store.release("r1", "r1 stopped") == 2
    statuses = {job_id: store.get(job_id).status for job_id in ("mine", "theirs", "held", "queued")}
    assert statuses == {"mine": "interrupted", "theirs": "running", "held": "interrupted", "queued": "queued"}
    assert store.get("mine").error == {"code": "interrupted", "message": "r1 stopped"}


def test_artifacts_are_written_with_the_result_or_not_at_all(store: JobStore) -> None:
    for job_id in ("a", "b"):
        store.create(new_job(job_id), max_queued=10)
        store.claim("r1", ["sha-a"])
    blob = bytes(range(256)) * 40  # binary, with NUL bytes
    assert store.finish("a", "r1", "succeeded", result={}, artifacts={"plot_data.npz": blob})
    assert store.get_artifact("a", "plot_data.npz") == blob
    assert store.get_artifact("a", "other") is None
    store.put_artifact("a", "plot_data.npz", b"new")  # an upsert, not a duplicate key
    assert store.get_artifact("a", "plot_data.npz") == b"new"
    assert not store.finish("b", "r2", "succeeded", artifacts={"plot_data.npz": blob})  # r2 is not the owner
    assert store.get_artifact("b", "plot_data.npz") is None


def test_unknown_parameters_and_odd_text_round_trip(store: JobStore) -> None:
    record = new_job("a")
    record.source = "ds/\u00e9t\u00e9 'quoted' \"double\" ? %s %% --"
    record.params = {"imgsz": 64, "nested": {"list": [1, 2.5, None, True]}, "text": "\u0000-free \u2603"}
    store.create(record, max_queued=1)
    stored = store.get("a")
    assert stored is not None and stored.source == record.source and stored.params == record.params
    assert stored.model_sha256 == "sha-a" and stored.pinned_to is None and stored.attempts == 0
