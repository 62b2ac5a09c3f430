"""The few things the shared SQL needs from a database connection, whatever the driver.

SQL is written once with ``?`` placeholders (sqlite3's style); the PostgreSQL adapter rewrites them for
psycopg. Both adapters run inside a transaction their backend opened.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Tx(Protocol):
    """One open transaction."""

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    def script(self, sql: str) -> None:
        """Run a file of statements (a migration) inside the transaction; no parameters."""
        ...
