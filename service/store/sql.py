"""The job store in portable SQL, shared by the SQLite and PostgreSQL backends.

A backend supplies a transaction (``_transaction``), its clock as SQL (``_NOW``), the row locks its claim
and cancel need (``_CLAIM_LOCK``, ``_ROW_LOCK``) and how submissions are serialised (``_lock_queue``).
Everything else is the same statements on both, so both backends pass the same test suite.

Plain SQL through the stdlib ``sqlite3`` and psycopg, not SQLAlchemy Core: the shared statements are ~20
portable ones, and what differs between the backends (``FOR UPDATE SKIP LOCKED``, advisory locks, the
database clock, ``BEGIN IMMEDIATE``) is exactly what Core would leave to hand-written dialect code anyway;
this way the SQL a reviewer reads is the SQL that runs, with one dependency less.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from service.store import images, tags
from service.store.connection import Tx
from service.store.notifications import NotificationSql
from service.store.records import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    RUNNING_STATUSES,
    CancelOutcome,
    ImagePage,
    ImageQuery,
    JobRecord,
    JobStatus,
)

_COLUMNS = (
    "id, status, model, source_kind, source, params, created_at, model_sha256, started_at, finished_at, "
    "done, total, stage, error, owner, pinned_to, attempts, lease_expires_at, tags, checkpoint, map50, "
    "map50_95"
)
_ACTIVE = "(" + ", ".join(f"'{status}'" for status in ACTIVE_STATUSES) + ")"
_RUNNING = "(" + ", ".join(f"'{status}'" for status in RUNNING_STATUSES) + ")"
_FINAL = "(" + ", ".join(f"'{status}'" for status in sorted(FINAL_STATUSES)) + ")"
_EXPIRED_ERROR = {
    "code": "interrupted",
    "message": "the replica holding this job stopped renewing its lease (it died or hung)",
}
_RESTART_ERROR = {"code": "interrupted", "message": "the service stopped while this job was active"}
_CANCELLED_ERROR = {"code": "cancelled", "message": "cancelled before it started"}


class SqlJobStore(ABC, NotificationSql):
    """``JobStore`` over a DB-API-like connection; see ``service.store.interface`` for the contract."""

    backend: str
    shared: bool
    _NOW: str  # SQL expression: Unix seconds, as a double
    _CLAIM_LOCK: str = ""  # appended to the claim's inner SELECT
    _ROW_LOCK: str = ""  # appended to a single-row SELECT that decides an update

    def __init__(self, lease_s: float) -> None:
        self.lease_s = float(lease_s)

    @abstractmethod
    def _transaction(self, write: bool) -> AbstractContextManager[Tx]:
        """A transaction: committed when the block exits normally, rolled back when it raises."""

    def _statement(self, write: bool) -> AbstractContextManager[Tx]:
        """Where one statement runs alone: atomic by itself, so a backend may skip BEGIN/COMMIT (two round
        trips less on PostgreSQL, for the calls made most: progress, renewals, claims, reads)."""
        return self._transaction(write)

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def schema_version(self) -> int: ...

    def _lock_queue(self, tx: Tx) -> None:  # a hook: SQLite's write lock already serialises
        """Serialise submissions so the queue bound is exact across replicas."""

    # -- submit and the queue ---------------------------------------------------------------------------
    def create(self, record: JobRecord, max_queued: int) -> bool:
        lease = (
            f"?, ?, {self._NOW} + ?" if record.pinned_to is not None else "NULL, NULL, NULL"
        )  # owner, pinned_to, lease_expires_at
        lease_args = (record.pinned_to, record.pinned_to, self.lease_s) if record.pinned_to else ()
        with self._transaction(write=True) as tx:
            self._lock_queue(tx)
            if self._queued(tx) >= max_queued:
                return False
            tx.execute(
                "INSERT INTO jobs (id, seq, status, model, model_sha256, source_kind, source, params, "
                "created_at, total, tags, checkpoint, owner, pinned_to, lease_expires_at) "
                "VALUES (?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs), 'queued', ?, ?, ?, ?, ?, "
                f"{self._NOW}, ?, ?, ?, {lease})",
                (
                    record.id,
                    record.model,
                    record.model_sha256,
                    record.source_kind,
                    record.source,
                    json.dumps(record.params),
                    record.total,
                    json.dumps(record.tags, sort_keys=True),
                    record.checkpoint,
                    *lease_args,
                ),
            )
            if record.tags:
                tx.executemany(tags.INSERT_SQL, tags.tag_rows(record.id, record.tags))
            if record.callback_url is not None:
                self._create_notification(tx, record.id, record.callback_url)
        return True

    def queued_count(self) -> int:
        with self._statement(write=False) as tx:
            return self._queued(tx)

    @staticmethod
    def _queued(tx: Tx) -> int:
        return int(tx.execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued'").fetchone()[0])

    def claim(
        self, owner: str, model_digests: Sequence[str], checkpoints: bool = False
    ) -> JobRecord | None:
        if not model_digests and not checkpoints:
            return None
        loaded = f"model_sha256 IN ({', '.join('?' for _ in model_digests)})" if model_digests else "0 = 1"
        runnable = f"({loaded} OR checkpoint IS NOT NULL)" if checkpoints else loaded
        with self._statement(write=True) as tx:
            rows = tx.execute(
                f"UPDATE jobs SET status = 'running', owner = ?, started_at = {self._NOW}, "
                f"lease_expires_at = {self._NOW} + ?, attempts = attempts + 1 "
                "WHERE status = 'queued' AND id = ("
                f"SELECT id FROM jobs WHERE status = 'queued' AND {runnable} "
                f"AND (pinned_to IS NULL OR pinned_to = ?) ORDER BY seq LIMIT 1{self._CLAIM_LOCK}) "
                f"RETURNING {_COLUMNS}",
                (owner, self.lease_s, *model_digests, owner),
            ).fetchall()  # fetch all: sqlite3 finishes an UPDATE ... RETURNING only once it is drained
        return _record(rows[0], with_result=False) if rows else None

    # -- while a job runs --------------------------------------------------------------------------------
    def report_progress(self, job_id: str, owner: str, done: int, total: int, stage: str) -> str | None:
        with self._statement(write=True) as tx:
            rows = tx.execute(
                f"UPDATE jobs SET done = ?, total = ?, stage = ?, lease_expires_at = {self._NOW} + ? "
                f"WHERE id = ? AND owner = ? AND status IN {_RUNNING} RETURNING status",
                (done, total, stage, self.lease_s, job_id, owner),
            ).fetchall()
        return str(rows[0][0]) if rows else None

    def renew_leases(self, owner: str) -> dict[str, str]:
        with self._statement(write=True) as tx:
            rows = tx.execute(
                f"UPDATE jobs SET lease_expires_at = {self._NOW} + ? "
                f"WHERE owner = ? AND status IN {_ACTIVE} RETURNING id, status",
                (self.lease_s, owner),
            ).fetchall()
        return {str(job_id): str(status) for job_id, status in rows}

    def finish(
        self,
        job_id: str,
        owner: str,
        status: str,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        artifacts: Mapping[str, bytes] | None = None,
    ) -> bool:
        per_image: list[dict[str, Any]] = []
        if result is not None:
            result = dict(result)
            per_image = list(result.pop("per_image", None) or [])
        map50, map50_95 = headline_numbers(result)
        with self._transaction(write=True) as tx:
            updated = tx.execute(
                f"UPDATE jobs SET status = ?, finished_at = {self._NOW}, result = ?, error = ?, map50 = ?, "
                f"map50_95 = ?, lease_expires_at = NULL WHERE id = ? AND owner = ? AND status IN {_RUNNING}",
                (status, _dumps(result), _dumps(error), map50, map50_95, job_id, owner),
            ).rowcount
            if updated != 1:
                return False
            if per_image:
                tx.executemany(images.INSERT_SQL, images.image_rows(job_id, per_image))
            for name, content in (artifacts or {}).items():
                self._put_artifact(tx, job_id, name, content)
        return True

    # -- recovery ----------------------------------------------------------------------------------------
    def expire_leases(self) -> int:
        return self._interrupt(
            f"status IN {_ACTIVE} AND lease_expires_at IS NOT NULL AND lease_expires_at < {self._NOW}",
            (),
            _EXPIRED_ERROR,
        )

    def release(self, owner: str, message: str) -> int:
        return self._interrupt(
            f"owner = ? AND status IN {_ACTIVE}", (owner,), {"code": "interrupted", "message": message}
        )

    def interrupt_unfinished(self) -> int:
        return self._interrupt(f"status IN {_ACTIVE}", (), _RESTART_ERROR)

    def _interrupt(self, where: str, args: tuple[Any, ...], error: dict[str, str]) -> int:
        with self._statement(write=True) as tx:
            return tx.execute(
                f"UPDATE jobs SET status = 'interrupted', finished_at = {self._NOW}, error = ?, "
                f"lease_expires_at = NULL WHERE {where}",
                (json.dumps(error), *args),
            ).rowcount

    # -- any replica -------------------------------------------------------------------------------------
    def cancel(self, job_id: str) -> CancelOutcome | None:
        with self._transaction(write=True) as tx:
            row = tx.execute(f"SELECT status FROM jobs WHERE id = ?{self._ROW_LOCK}", (job_id,)).fetchone()
            if row is None:
                return None
            before = str(row[0])
            if before == JobStatus.QUEUED.value:
                tx.execute(
                    f"UPDATE jobs SET status = 'cancelled', finished_at = {self._NOW}, error = ?, "
                    "lease_expires_at = NULL WHERE id = ? AND status = 'queued'",
                    (json.dumps(_CANCELLED_ERROR), job_id),
                )
            elif before == JobStatus.RUNNING.value:
                tx.execute(
                    "UPDATE jobs SET status = 'cancelling' WHERE id = ? AND status = 'running'", (job_id,)
                )
            after = str(tx.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()[0])
        return CancelOutcome(before=before, after=after)

    def delete(self, job_id: str) -> str | None:
        with self._transaction(write=True) as tx:
            row = tx.execute(f"SELECT status FROM jobs WHERE id = ?{self._ROW_LOCK}", (job_id,)).fetchone()
            if row is None:
                return None
            if str(row[0]) in FINAL_STATUSES:  # per-image rows and artifacts go with it (ON DELETE CASCADE)
                tx.execute(f"DELETE FROM jobs WHERE id = ? AND status IN {_FINAL}", (job_id,))
        return str(row[0])

    def delete_finished(self, older_than_s: float | None, keep_newest: int | None) -> list[str]:
        conditions: list[str] = []
        args: list[Any] = []
        with self._transaction(write=True) as tx:
            if older_than_s is not None:
                conditions.append(f"COALESCE(finished_at, created_at) < {self._NOW} - ?")
                args.append(older_than_s)
            if keep_newest is not None:  # the seq of the newest finished job past the ones kept
                row = tx.execute(
                    f"SELECT seq FROM jobs WHERE status IN {_FINAL} ORDER BY seq DESC LIMIT 1 OFFSET ?",
                    (keep_newest,),
                ).fetchone()
                if row is not None:
                    conditions.append("seq <= ?")
                    args.append(row[0])
            if not conditions:
                return []
            where = " OR ".join(conditions)
            rows = tx.execute(
                f"DELETE FROM jobs WHERE status IN {_FINAL} AND ({where}) RETURNING id", args
            ).fetchall()
        return [str(row[0]) for row in rows]

    def get(self, job_id: str, with_result: bool = True) -> JobRecord | None:
        columns = _COLUMNS + (", result" if with_result else "")
        with self._statement(write=False) as tx:
            row = tx.execute(f"SELECT {columns} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else _record(row, with_result)

    def list(
        self,
        offset: int,
        limit: int,
        status: str | None = None,
        tag_filter: Mapping[str, str] | None = None,
    ) -> tuple[list[JobRecord], int]:
        clauses, args = tags.filters(tag_filter or {})
        if status:
            clauses, args = ["status = ?", *clauses], [status, *args]
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        with self._transaction(write=False) as tx:
            total = tx.execute(f"SELECT COUNT(*) FROM jobs {where}", args).fetchone()[0]
            rows = tx.execute(
                f"SELECT {_COLUMNS} FROM jobs {where} ORDER BY seq DESC LIMIT ? OFFSET ?",
                (*args, limit, offset),
            ).fetchall()
        return [_record(row, with_result=False) for row in rows], int(total)

    def per_image_page(self, job_id: str, query: ImageQuery) -> ImagePage:
        sql, args = images.page_sql(job_id, query)
        with self._transaction(write=False) as tx:
            rows = tx.execute(sql, args).fetchall()
            if rows:
                total = int(rows[0][1])
            else:  # past the end (or nothing matches): the page query cannot say how many match
                count, count_args = images.count_sql(job_id, query)
                total = int(tx.execute(count, count_args).fetchone()[0])
        return ImagePage(items=[json.loads(row[0]) for row in rows], total=total)

    def per_image_all(self, job_id: str) -> list[dict[str, Any]]:
        with self._statement(write=False) as tx:
            rows = tx.execute(
                "SELECT data FROM job_images WHERE job_id = ? ORDER BY ordinal", (job_id,)
            ).fetchall()
        return [json.loads(row[0]) for row in rows]

    def put_artifact(self, job_id: str, name: str, content: bytes) -> None:
        with self._statement(write=True) as tx:
            self._put_artifact(tx, job_id, name, content)

    def _put_artifact(self, tx: Tx, job_id: str, name: str, content: bytes) -> None:
        tx.execute(
            "INSERT INTO job_artifacts (job_id, name, content, created_at) "
            f"VALUES (?, ?, ?, {self._NOW}) "
            "ON CONFLICT (job_id, name) DO UPDATE SET content = excluded.content, "
            "created_at = excluded.created_at",
            (job_id, name, content),
        )

    def get_artifact(self, job_id: str, name: str) -> bytes | None:
        with self._statement(write=False) as tx:
            row = tx.execute(
                "SELECT content FROM job_artifacts WHERE job_id = ? AND name = ?", (job_id, name)
            ).fetchone()
        return None if row is None else bytes(row[0])


def headline_numbers(result: Mapping[str, Any] | None) -> tuple[float | None, float | None]:
    """``(map50, map50_95)`` of a result's mapped view; ``None`` where it has no finite number."""
    metrics = (result or {}).get("metrics")
    if not isinstance(metrics, Mapping):
        return None, None
    return _finite(metrics.get("map50")), _finite(metrics.get("map50_95"))


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _dumps(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value)


def _record(row: Sequence[Any], with_result: bool) -> JobRecord:
    values: Iterator[Any] = iter(row)
    record = JobRecord(
        id=next(values),
        status=next(values),
        model=next(values),
        source_kind=next(values),
        source=next(values),
        params=json.loads(next(values)),
        created_at=float(next(values)),
        model_sha256=next(values),
        started_at=next(values),
        finished_at=next(values),
        done=int(next(values)),
        total=int(next(values)),
        stage=next(values),
    )
    error = next(values)
    record.error = json.loads(error) if error else None
    record.owner, record.pinned_to = next(values), next(values)
    record.attempts, record.lease_expires_at = int(next(values)), next(values)
    record.tags = json.loads(next(values) or "{}")
    record.checkpoint, record.map50, record.map50_95 = next(values), next(values), next(values)
    if with_result:
        result = next(values)
        record.result = None if result is None else json.loads(result)
    return record
