"""Versioned schema migrations: numbered SQL files per backend, applied in order when a store opens.

``sqlite/NNNN_name.sql`` and ``postgres/NNNN_name.sql`` hold the same migrations (same numbers, same
names) in each dialect. The ``schema_version`` table records every applied one; the database's version is
the highest. All pending migrations run in one transaction, so a failure leaves the schema as it was.
Backends serialise concurrent start-ups (PostgreSQL: an advisory lock; SQLite: ``BEGIN IMMEDIATE``), so two
replicas starting at once apply each migration exactly once.

Adding a table or column later = one new ``NNNN_name.sql`` in both folders.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from service.store.connection import Tx
from service.store.errors import MigrationError

BACKENDS = ("sqlite", "postgres")
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at DOUBLE PRECISION NOT NULL
)
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(backend: str, folder: Path | None = None) -> list[Migration]:
    """The migrations of ``backend`` (packaged, or in ``folder``), numbered 1, 2, 3 ... without gaps."""
    if backend not in BACKENDS:
        raise MigrationError(f"no migrations for backend {backend!r}", f"use one of {', '.join(BACKENDS)}")
    source = folder if folder is not None else resources.files(__package__).joinpath(backend)
    migrations = []
    for entry in source.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise MigrationError(f"migration file {backend}/{entry.name} is not named NNNN_name.sql")
        migrations.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    migrations.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise MigrationError(f"{backend} migrations are not numbered 1..N without gaps: {versions}")
    return migrations


def current_version(tx: Tx) -> int:
    tx.script(_VERSION_TABLE)
    row = tx.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def apply_migrations(tx: Tx, migrations: list[Migration], now: float, target: int | None = None) -> int:
    """Apply the migrations above the database's version (up to ``target``) in ``tx``; returns the version.

    The caller holds the lock that serialises start-ups. A database newer than the newest migration belongs
    to a newer release: refuse it rather than run old code against a schema it does not know.
    """
    version = current_version(tx)
    newest = migrations[-1].version if migrations else 0
    if version > newest:
        raise MigrationError(
            f"the database schema is version {version}, newer than this release knows ({newest})",
            "upgrade every replica to the same release (or point SMARTCASH_DATABASE_URL elsewhere)",
        )
    goal = newest if target is None else min(target, newest)
    for migration in migrations:
        if version < migration.version <= goal:
            tx.script(migration.sql)
            tx.execute(
                "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, now),
            )
    return max(version, goal)
