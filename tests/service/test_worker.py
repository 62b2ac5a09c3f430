"""Device workers and the lease keeper: they survive a failing store, and a wake-up claims at once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from service.main import create_app
from service.settings import Settings
from service.store import StoreConfigError, StoreUnavailable, open_store
from service.worker import DeviceWorker, LeaseKeeper


def test_a_failing_claim_does_not_kill_the_worker_and_a_wake_claims_at_once() -> None:
    calls: list[float] = []
    ran = threading.Event()
    jobs: list[str] = []

    def claim(_device: str) -> str | None:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise StoreUnavailable("database down")
        return jobs.pop() if jobs else None

    worker = DeviceWorker("cpu", claim=claim, run_job=lambda job: ran.set(), poll_s=0.05)
    try:
        deadline = time.monotonic() + 10
        while len(calls) < 3 and time.monotonic() < deadline:  # kept polling after the failure
            time.sleep(0.01)
        assert worker.thread.is_alive() and len(calls) >= 3
        slow = DeviceWorker("cpu", claim=claim, run_job=lambda job: ran.set(), poll_s=30)
        time.sleep(0.1)  # its first look found nothing; it now sleeps for 30 s unless woken
        jobs.append("job")
        woken = time.monotonic()
        slow.wake()
        slow.wait_for_claim(5)
        assert ran.wait(5) and time.monotonic() - woken < 5
        slow.stop(5)
        assert not slow.thread.is_alive()
    finally:
        worker.stop(5)


def test_wait_for_claim_waits_for_an_attempt_that_began_after_the_wake() -> None:
    entered, release = threading.Event(), threading.Event()
    attempts: list[int] = []

    def claim(_device: str) -> None:
        attempts.append(1)
        if len(attempts) == 1:  # the first attempt is already under way when the job is submitted
            entered.set()
            release.wait(5)

    worker = DeviceWorker("cpu", claim=claim, run_job=lambda job: None, poll_s=30)
    try:
        assert entered.wait(5)
        worker.wake()
        waiter = threading.Thread(target=worker.wait_for_claim, args=(10,))
        waiter.start()
        time.sleep(0.1)
        assert waiter.is_alive()  # the attempt in progress may have missed the job: not enough
        release.set()
        waiter.join(5)
        assert not waiter.is_alive() and len(attempts) == 2
    finally:
        release.set()
        worker.stop(5)


def test_the_lease_keeper_keeps_ticking_through_errors() -> None:
    ticks: list[int] = []

    def tick() -> None:
        ticks.append(1)
        if len(ticks) % 2:
            raise StoreUnavailable("blip")

    keeper = LeaseKeeper(tick, interval_s=0.02)
    keeper.start()
    deadline = time.monotonic() + 10
    while len(ticks) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    keeper.stop(5)
    assert len(ticks) >= 4 and not keeper.thread.is_alive()


@pytest.mark.parametrize("url", ["mysql://u:p@h/db", "sqlite:///x.db", "http://example.com"])
def test_an_unsupported_database_url_is_refused_at_start_up(tmp_path: Path, url: str) -> None:
    settings = Settings(state_dir=tmp_path / "state", database_url=url)
    with pytest.raises(StoreConfigError, match="only PostgreSQL"):
        create_app(settings)


def test_an_unreachable_database_fails_fast_without_printing_its_password(tmp_path: Path) -> None:
    from service.store.postgres import PostgresJobStore

    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        PostgresJobStore("postgresql://smartcash:hunter2@127.0.0.1:1/jobs", connect_timeout_s=1)
    assert time.monotonic() - started < 30
    assert "hunter2" not in caught.value.message and "smartcash:***@127.0.0.1:1" in caught.value.message
    assert caught.value.status_code == 503 and "SMARTCASH_DATABASE_URL" in caught.value.fix


def test_no_database_url_means_sqlite_in_the_state_dir_and_replica_names_are_unique(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, database_url="  ")
    store = open_store(settings.database_url_value(), settings.database_path)
    assert store.backend == "sqlite" and not store.shared and (tmp_path / "jobs.sqlite3").is_file()
    store.close()
    assert settings.replica_name() != settings.replica_name()
    assert Settings(replica_id="node-1.a").replica_name() == "node-1.a"
    with pytest.raises(ValueError, match="replica_id"):
        Settings(replica_id="bad id with spaces")
