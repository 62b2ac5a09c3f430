"""Durable job records in SQLite (stdlib ``sqlite3``, WAL journal) under the state directory.

Jobs, their parameters and their results survive a restart. A job that was queued or running when the
process died cannot resume (uploads lived in memory), so start-up marks it ``interrupted``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelling", "cancelled", "interrupted"]
FINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled", "interrupted"})
UNFINISHED_STATUSES: tuple[str, ...] = ("queued", "running", "cancelling")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    status TEXT NOT NULL,
    model TEXT NOT NULL,
    source_kind TEXT NOT NULL,
    source TEXT NOT NULL,
    params TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    done INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    stage TEXT NOT NULL DEFAULT '',
    error TEXT,
    result TEXT,
    per_image TEXT
);
CREATE INDEX IF NOT EXISTS jobs_seq ON jobs (seq);
"""

_SUMMARY_COLUMNS = (
    "id, status, model, source_kind, source, params, created_at, started_at, finished_at, done, total, "
    "stage, error"
)


@dataclass
class JobRecord:
    """One validation job as stored. ``result`` excludes ``per_image`` (served separately, paged)."""

    id: str
    status: str
    model: str
    source_kind: str
    source: str
    params: dict[str, Any]
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    done: int = 0
    total: int = 0
    stage: str = ""
    error: dict[str, Any] | None = None
    result: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES


class JobStore:
    """Thread-safe access to the jobs table. One connection, one lock: writes are tiny and rare."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable across process crashes in WAL mode (only an OS crash may lose the last commit).
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)

    @contextmanager
    def _locked(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._conn

    def close(self) -> None:
        with self._locked() as conn:
            conn.close()

    def mark_interrupted(self) -> int:
        """Mark every job left unfinished by a previous process as ``interrupted``; returns how many."""
        placeholders = ",".join("?" for _ in UNFINISHED_STATUSES)
        error = json.dumps(
            {"code": "interrupted", "message": "the service stopped while this job was active"}
        )
        with self._locked() as conn:
            cursor = conn.execute(
                "UPDATE jobs SET status='interrupted', finished_at=?, error=? "
                f"WHERE status IN ({placeholders})",
                (time.time(), error, *UNFINISHED_STATUSES),
            )
            return cursor.rowcount

    def create(self, record: JobRecord) -> None:
        with self._locked() as conn:
            seq = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone()[0]
            conn.execute(
                "INSERT INTO jobs (id, seq, status, model, source_kind, source, params, created_at, total) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    seq,
                    record.status,
                    record.model,
                    record.source_kind,
                    record.source,
                    json.dumps(record.params),
                    record.created_at,
                    record.total,
                ),
            )

    def delete(self, job_id: str) -> None:
        with self._locked() as conn:
            conn.execute("DELETE FROM jobs WHERE id=?", (job_id,))

    def set_status(self, job_id: str, status: str) -> None:
        """Change the status of an unfinished job (a final status is never overwritten here)."""
        with self._locked() as conn:
            conn.execute(
                "UPDATE jobs SET status=? WHERE id=? AND status IN ('queued', 'running', 'cancelling')",
                (status, job_id),
            )

    def set_running(self, job_id: str) -> None:
        """Record the start; a ``cancelling`` written by a racing cancel() keeps its status."""
        with self._locked() as conn:
            conn.execute(
                "UPDATE jobs SET started_at=?, "
                "status=CASE status WHEN 'queued' THEN 'running' ELSE status END "
                "WHERE id=? AND status IN ('queued', 'cancelling')",
                (time.time(), job_id),
            )

    def set_progress(self, job_id: str, done: int, total: int, stage: str) -> None:
        with self._locked() as conn:
            conn.execute("UPDATE jobs SET done=?, total=?, stage=? WHERE id=?", (done, total, stage, job_id))

    def finish(
        self,
        job_id: str,
        status: str,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        """Store the final status with either the result (``per_image`` split off) or the error."""
        per_image = None
        if result is not None:
            result = dict(result)
            per_image = json.dumps(result.pop("per_image", []))
        with self._locked() as conn:
            conn.execute(
                "UPDATE jobs SET status=?, finished_at=?, result=?, per_image=?, error=? WHERE id=?",
                (status, time.time(), _dumps(result), per_image, _dumps(error), job_id),
            )

    def get(self, job_id: str, with_result: bool = True) -> JobRecord | None:
        columns = _SUMMARY_COLUMNS + (", result" if with_result else "")
        with self._locked() as conn:
            row = conn.execute(f"SELECT {columns} FROM jobs WHERE id=?", (job_id,)).fetchone()
        return None if row is None else _record(row, with_result)

    def per_image(self, job_id: str) -> list[dict[str, Any]] | None:
        """The per-image results of a finished job (``None``: no such job or no result)."""
        with self._locked() as conn:
            row = conn.execute("SELECT per_image FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None or row[0] is None:
            return None
        return json.loads(row[0])

    def list(self, offset: int, limit: int, status: str | None = None) -> tuple[list[JobRecord], int]:
        """Newest first; returns one page and the total count (with the same status filter)."""
        where, args = ("WHERE status=?", (status,)) if status else ("", ())
        with self._locked() as conn:
            total = conn.execute(f"SELECT COUNT(*) FROM jobs {where}", args).fetchone()[0]
            rows = conn.execute(
                f"SELECT {_SUMMARY_COLUMNS} FROM jobs {where} ORDER BY seq DESC LIMIT ? OFFSET ?",
                (*args, limit, offset),
            ).fetchall()
        return [_record(row, with_result=False) for row in rows], int(total)


def _dumps(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value)


def _record(row: tuple[Any, ...], with_result: bool) -> JobRecord:
    record = JobRecord(
        id=row[0],
        status=row[1],
        model=row[2],
        source_kind=row[3],
        source=row[4],
        params=json.loads(row[5]),
        created_at=row[6],
        started_at=row[7],
        finished_at=row[8],
        done=row[9],
        total=row[10],
        stage=row[11],
        error=json.loads(row[12]) if row[12] else None,
    )
    if with_result and row[13] is not None:
        record.result = json.loads(row[13])
    return record
