"""Completion-webhook notifications in SQL, shared by both backends (a mixin of ``SqlJobStore``).

A notification row is written with its job (same transaction) and waits until the job is final; then any
replica may claim it under a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, the write lock on SQLite),
try the delivery, and record the outcome: delivered, failed for good, or due again after a backoff. A
replica that dies mid-delivery leaves a lease that runs out, and another replica retries. Delivery is
therefore at least once; receivers deduplicate on the job id (``X-SmartCash-Delivery``).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from service.store.connection import Tx
from service.store.records import FINAL_STATUSES, NotificationRecord

_FINAL = "(" + ", ".join(f"'{status}'" for status in sorted(FINAL_STATUSES)) + ")"
_COLUMNS = (
    "job_id, url, state, attempts, next_attempt_at, created_at, owner, lease_expires_at, last_error, "
    "last_status_code, delivered_at"
)
_MAX_ERROR_CHARS = 500


class NotificationSql:
    """The notification half of the store; the backend supplies transactions, clock and row locks."""

    _NOW: str
    _CLAIM_LOCK: str

    @abstractmethod
    def _statement(self, write: bool) -> AbstractContextManager[Tx]: ...

    def _create_notification(self, tx: Tx, job_id: str, url: str) -> None:
        tx.execute(
            "INSERT INTO job_notifications (job_id, url, state, attempts, next_attempt_at, created_at) "
            f"VALUES (?, ?, 'pending', 0, {self._NOW}, {self._NOW})",
            (job_id, url),
        )

    def claim_notification(self, owner: str, lease_s: float) -> NotificationRecord | None:
        """Take the notification due longest ago whose job is final and whose lease is free (or ran out)."""
        due = (
            f"state = 'pending' AND next_attempt_at <= {self._NOW} "
            f"AND (lease_expires_at IS NULL OR lease_expires_at < {self._NOW})"
        )
        with self._statement(write=True) as tx:
            rows = tx.execute(
                f"UPDATE job_notifications SET owner = ?, lease_expires_at = {self._NOW} + ? "
                f"WHERE {due} AND job_id = (SELECT job_id FROM job_notifications WHERE {due} "
                "AND EXISTS (SELECT 1 FROM jobs WHERE jobs.id = job_notifications.job_id "
                f"AND jobs.status IN {_FINAL}) ORDER BY next_attempt_at LIMIT 1{self._CLAIM_LOCK}) "
                f"RETURNING {_COLUMNS}",
                (owner, lease_s),
            ).fetchall()
        return _notification(rows[0]) if rows else None

    def notification_attempted(
        self,
        job_id: str,
        owner: str,
        delivered: bool,
        status_code: int | None = None,
        error: str | None = None,
        retry_in_s: float | None = None,
    ) -> bool:
        """Record one delivery attempt by ``owner`` and release the lease. Not delivered: due again in
        ``retry_in_s`` seconds, or ``failed`` for good when that is ``None``. ``False``: not ``owner``'s."""
        if delivered:
            state, retry_in_s = "delivered", 0.0
        else:
            state = "pending" if retry_in_s is not None else "failed"
        with self._statement(write=True) as tx:
            return (
                tx.execute(
                    f"UPDATE job_notifications SET state = ?, attempts = attempts + 1, "
                    f"next_attempt_at = {self._NOW} + ?, last_status_code = ?, last_error = ?, "
                    f"delivered_at = CASE WHEN ? THEN {self._NOW} ELSE NULL END, owner = NULL, "
                    "lease_expires_at = NULL WHERE job_id = ? AND owner = ? AND state = 'pending'",
                    (
                        state,
                        float(retry_in_s or 0.0),
                        status_code,
                        None if error is None else error[:_MAX_ERROR_CHARS],
                        delivered,
                        job_id,
                        owner,
                    ),
                ).rowcount
                == 1
            )

    def release_notifications(self, owner: str | None) -> int:
        """Free the leases ``owner`` holds (every lease when ``None``: an unshared store at start-up)."""
        where, args = ("owner = ?", (owner,)) if owner is not None else ("owner IS NOT NULL", ())
        with self._statement(write=True) as tx:
            return tx.execute(
                f"UPDATE job_notifications SET owner = NULL, lease_expires_at = NULL "
                f"WHERE state = 'pending' AND {where}",
                args,
            ).rowcount

    def notification(self, job_id: str) -> NotificationRecord | None:
        with self._statement(write=False) as tx:
            row = tx.execute(
                f"SELECT {_COLUMNS} FROM job_notifications WHERE job_id = ?", (job_id,)
            ).fetchone()
        return None if row is None else _notification(row)


def _notification(row: Sequence[Any]) -> NotificationRecord:
    values: Iterator[Any] = iter(row)
    return NotificationRecord(
        job_id=next(values),
        url=next(values),
        state=next(values),
        attempts=int(next(values)),
        next_attempt_at=float(next(values)),
        created_at=float(next(values)),
        owner=next(values),
        lease_expires_at=next(values),
        last_error=next(values),
        last_status_code=next(values),
        delivered_at=next(values),
    )
