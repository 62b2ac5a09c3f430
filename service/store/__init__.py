"""The job store: one interface (``JobStore``), two backends, chosen by ``SMARTCASH_DATABASE_URL``.

Unset: SQLite under the state directory (embedded, one replica). ``postgresql://...``: PostgreSQL, shared by
any number of replicas. Both apply their versioned migrations when they open.
"""

from __future__ import annotations

from pathlib import Path

from service.store.errors import MigrationError, StoreConfigError, StoreUnavailable
from service.store.interface import JobStore
from service.store.records import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    RUNNING_STATUSES,
    UNFINISHED_STATUSES,
    CancelOutcome,
    ImagePage,
    ImageQuery,
    JobRecord,
    JobStatus,
    NotificationRecord,
)
from service.store.sqlite import SqliteJobStore

POSTGRES_SCHEMES = ("postgresql", "postgres")

__all__ = [
    "ACTIVE_STATUSES",
    "FINAL_STATUSES",
    "RUNNING_STATUSES",
    "UNFINISHED_STATUSES",
    "CancelOutcome",
    "ImagePage",
    "ImageQuery",
    "JobRecord",
    "JobStatus",
    "JobStore",
    "MigrationError",
    "NotificationRecord",
    "SqliteJobStore",
    "StoreConfigError",
    "StoreUnavailable",
    "open_store",
]


def open_store(
    database_url: str | None, sqlite_path: Path, lease_s: float = 30.0, pool_size: int = 8
) -> JobStore:
    """The store the settings name: PostgreSQL for a ``postgresql://`` URL, else SQLite at ``sqlite_path``."""
    if not database_url:
        return SqliteJobStore(sqlite_path, lease_s=lease_s)
    scheme = database_url.split(":", 1)[0].lower()
    if scheme not in POSTGRES_SCHEMES:
        raise StoreConfigError(
            f"SMARTCASH_DATABASE_URL has scheme {scheme!r}; only PostgreSQL URLs are supported",
            "use postgresql://user:password@host:5432/dbname, or leave it unset for SQLite in the state dir",
        )
    from service.store.postgres import PostgresJobStore  # psycopg is only imported when it is used

    return PostgresJobStore(database_url, lease_s=lease_s, pool_size=pool_size)
