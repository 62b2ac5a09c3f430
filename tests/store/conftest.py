"""One store test suite, two backends: every test here runs on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from service.store import JobRecord, JobStore, SqliteJobStore


@dataclass
class StoreEnv:
    """A database (one SQLite file or one PostgreSQL database) and the stores opened on it.

    Each ``open()`` is a separate connection (pool), like another process or another replica."""

    backend: str
    target: str  # file path or URL
    opened: list[JobStore] = field(default_factory=list)

    def open(self, lease_s: float = 30.0, target_version: int | None = None) -> Any:
        if self.backend == "sqlite":
            store: JobStore = SqliteJobStore(
                Path(self.target), lease_s=lease_s, target_version=target_version
            )
        else:
            from service.store.postgres import PostgresJobStore

            store = PostgresJobStore(self.target, lease_s=lease_s, target_version=target_version)
        self.opened.append(store)
        return store

    def raw(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement outside the store (``?`` placeholders), committed; returns its rows."""
        if self.backend == "sqlite":
            with sqlite3.connect(self.target) as conn:
                cursor = conn.execute(sql, tuple(args))
                return list(cursor.fetchall())
        import psycopg

        with psycopg.connect(self.target, autocommit=True) as conn:
            cursor = conn.execute(sql.replace("?", "%s"), tuple(args))
            return list(cursor.fetchall()) if cursor.description else []

    def close_all(self) -> None:
        for store in self.opened:
            store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreEnv]:
    if request.param == "sqlite":
        env = StoreEnv("sqlite", str(tmp_path / "jobs.sqlite3"))
    else:
        env = StoreEnv("postgresql", request.getfixturevalue("postgres_url"))
    yield env
    env.close_all()


@pytest.fixture()
def store(store_env: StoreEnv) -> Any:
    return store_env.open()


def new_job(
    job_id: str, model_sha256: str = "sha-a", pinned_to: str | None = None, **extra: Any
) -> JobRecord:
    return JobRecord(
        id=job_id,
        status="queued",
        model="m",
        model_sha256=model_sha256,
        source_kind="dataset",
        source="ds",
        params={"imgsz": 64},
        created_at=time.time(),
        pinned_to=pinned_to,
        **extra,
    )
