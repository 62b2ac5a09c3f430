"""The shared backend: PostgreSQL through psycopg 3 and a connection pool, for several replicas.

Every replica opens the same database. Start-up migrations run under a transaction-scoped advisory lock (two
replicas starting at once apply each migration once); submissions take another one, so the queue bound is
exact across replicas; the claim is ``SELECT ... FOR UPDATE SKIP LOCKED`` inside one ``UPDATE``, so
concurrent claimers never wait on each other's rows and never get the same job. Lease times come from the
database's clock (``clock_timestamp()``), so replicas with skewed clocks still agree on who expired.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from service.store.connection import Cursor
from service.store.errors import StoreUnavailable
from service.store.migrations import apply_migrations, current_version, load_migrations
from service.store.sql import SqlJobStore

# Advisory lock keys (any two distinct bigints; chosen as "SmartCash" in hex-ish so they do not collide
# with another application's locks by accident).
MIGRATION_LOCK = 0x5343_0001
QUEUE_LOCK = 0x5343_0002
_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")
_FIX = "check SMARTCASH_DATABASE_URL and that the PostgreSQL server is up; then retry"


def redact(url: str) -> str:
    """The URL with its password replaced, for logs and error messages."""
    return _PASSWORD.sub(r"\1***@", url)


@lru_cache(maxsize=256)
def _psycopg_sql(sql: str) -> str:
    # The shared SQL uses sqlite3's '?' placeholders and no literal '%'; psycopg wants '%s'.
    return sql.replace("%", "%%").replace("?", "%s")


class _PgTx:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Cursor:
        return self._conn.execute(_psycopg_sql(sql), tuple(args))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self._conn.cursor() as cursor:
            cursor.executemany(_psycopg_sql(sql), list(rows))

    def script(self, sql: str) -> None:
        self._conn.execute(sql)  # no parameters: sent as is, several statements allowed


class PostgresJobStore(SqlJobStore):
    backend = "postgresql"
    shared = True
    _NOW = "EXTRACT(EPOCH FROM clock_timestamp())::double precision"
    _CLAIM_LOCK = " FOR UPDATE SKIP LOCKED"
    _ROW_LOCK = " FOR UPDATE"

    def __init__(
        self,
        url: str,
        lease_s: float = 30.0,
        pool_size: int = 8,
        connect_timeout_s: float = 10.0,
        target_version: int | None = None,
    ) -> None:
        super().__init__(lease_s)
        self.url = redact(url)
        self._timeout = connect_timeout_s
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True, "connect_timeout": max(1, int(connect_timeout_s))},
            timeout=connect_timeout_s,
            open=False,
            name="smartcash-store",
        )
        try:
            self._pool.open(wait=True, timeout=connect_timeout_s)
            self._migrate(target_version)
        except (PoolTimeout, psycopg.OperationalError) as exc:
            self._pool.close()
            raise StoreUnavailable(f"cannot reach the job store at {self.url}: {exc}", _FIX) from exc
        except BaseException:
            self._pool.close()
            raise

    def _migrate(self, target: int | None) -> int:
        with self._transaction(write=True) as tx:
            tx.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
            return apply_migrations(tx, load_migrations("postgres"), time.time(), target)

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[_PgTx]:
        try:
            with self._pool.connection() as conn, conn.transaction():
                yield _PgTx(conn)
        except (PoolTimeout, psycopg.OperationalError) as exc:
            raise StoreUnavailable(f"the job store at {self.url} did not answer: {exc}", _FIX) from exc

    @contextmanager
    def _statement(self, write: bool) -> Iterator[_PgTx]:
        try:
            with self._pool.connection() as conn:  # autocommit: the statement is its own transaction
                yield _PgTx(conn)
        except (PoolTimeout, psycopg.OperationalError) as exc:
            raise StoreUnavailable(f"the job store at {self.url} did not answer: {exc}", _FIX) from exc

    def _lock_queue(self, tx: Any) -> None:
        tx.execute("SELECT pg_advisory_xact_lock(?)", (QUEUE_LOCK,))

    def schema_version(self) -> int:
        with self._transaction(write=False) as tx:
            return current_version(tx)

    def close(self) -> None:
        self._pool.close()
