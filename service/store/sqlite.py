"""The embedded backend: one SQLite file (stdlib ``sqlite3``, WAL journal) under the state directory.

It is the default (no database server) and serves one replica: at start-up every job left active belongs
to a dead process (``shared = False``). Several processes on one host may still open the same file (tests
do, and a restart overlaps the old process): writes are ``BEGIN IMMEDIATE`` transactions, so a claim, a
submission or a migration holds SQLite's write lock from its first read to its commit.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from service.store.connection import Cursor
from service.store.migrations import apply_migrations, current_version, load_migrations
from service.store.sql import SqlJobStore

# how long a write waits for another process holding the write lock (a migration, a big finish)
_BUSY_TIMEOUT_MS = 30_000


class _SqliteTx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Cursor:
        return self._conn.execute(sql, tuple(args))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._conn.executemany(sql, rows)

    def script(self, sql: str) -> None:
        # executescript() would COMMIT first; run statement by statement inside our transaction instead
        for statement in _statements(sql):
            self._conn.execute(statement)


def _statements(sql: str) -> Iterator[str]:
    """The complete statements of a script (``sqlite3.complete_statement`` knows strings and comments)."""
    pending = ""
    for line in sql.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            if pending.strip():
                yield pending
            pending = ""
    if pending.strip() and not all(
        part.strip().startswith("--") or not part.strip() for part in pending.splitlines()
    ):
        yield pending  # a last statement without ';' (sqlite3 reports it if it is broken)


class SqliteJobStore(SqlJobStore):
    backend = "sqlite"
    shared = False
    _NOW = "((julianday('now') - 2440587.5) * 86400.0)"  # Unix seconds with millisecond precision

    def __init__(self, path: Path, lease_s: float = 30.0, target_version: int | None = None) -> None:
        super().__init__(lease_s)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()  # one connection shared by the threads of this process
        self._conn = sqlite3.connect(
            str(path), check_same_thread=False, isolation_level=None, timeout=_BUSY_TIMEOUT_MS / 1000
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable across process crashes in WAL mode (only an OS crash may lose the last commit).
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA foreign_keys=ON")  # per connection in SQLite; the cascades need it
        self._migrate(target_version)

    def _migrate(self, target: int | None) -> int:
        with self._transaction(write=True) as tx:
            return apply_migrations(tx, load_migrations("sqlite"), time.time(), target)

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[_SqliteTx]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield _SqliteTx(self._conn)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def schema_version(self) -> int:
        with self._transaction(write=False) as tx:
            return current_version(tx)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
