"""Versioned migrations: numbered SQL files per backend, applied once, in one transaction, at start-up."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from service.store import ImageQuery, MigrationError
from service.store.migrations import BACKENDS, Migration, load_migrations
from tests.store.conftest import StoreEnv

LATEST = len(load_migrations("sqlite"))
LEGACY_ROWS = [
    {"index": 0, "order": 1, "file": "b.jpg", "fp": 2, "fn": 0, "true_denomination": 3},
    {"index": 1, "order": 0, "file": "a.jpg", "fp": 0, "fn": 5, "predicted_denomination": 1},
]


def test_both_backends_ship_the_same_numbered_migrations() -> None:
    names = {backend: [(m.version, m.name) for m in load_migrations(backend)] for backend in BACKENDS}
    assert names["sqlite"] == names["postgres"]
    assert [version for version, _ in names["sqlite"]] == list(range(1, LATEST + 1))


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (["0001_a.sql", "0003_c.sql"], "without gaps"),
        (["0002_b.sql"], "without gaps"),
        (["0001_a.sql", "2_b.sql"], "NNNN_name.sql"),
        (["0001_A-B.sql"], "NNNN_name.sql"),
    ],
)
def test_malformed_migration_folders_are_refused(tmp_path: Path, files: list[str], message: str) -> None:
    for name in files:
        (tmp_path / name).write_text("SELECT 1;")
    (tmp_path / "README.txt").write_text("not a migration")  # other files are ignored
    with pytest.raises(MigrationError, match=message):
        load_migrations("sqlite", tmp_path)
    with pytest.raises(MigrationError, match="no migrations"):
        load_migrations("mysql")


def test_a_fresh_database_gets_every_migration_once(store_env: StoreEnv) -> None:
    assert store_env.open().schema_version() == LATEST
    assert store_env.open().schema_version() == LATEST  # reopening applies nothing
    rows = store_env.raw("SELECT version, name FROM schema_version ORDER BY version")
    assert [version for version, _ in rows] == list(range(1, LATEST + 1))


def test_an_old_database_is_upgraded_with_its_rows(store_env: StoreEnv) -> None:
    assert store_env.open(target_version=1).schema_version() == 1
    # a row as the single-node release stored it: per-image results as one JSON list in the jobs row
    store_env.raw(
        "INSERT INTO jobs (id, seq, status, model, source_kind, source, params, created_at, result, "
        "per_image) VALUES ('old', 1, 'succeeded', 'm', 'dataset', 'ds', '{}', 1.5, '{\"metrics\": {}}', ?)",
        (json.dumps(LEGACY_ROWS),),
    )
    store = store_env.open()
    assert store.schema_version() == LATEST
    record = store.get("old")
    assert record is not None and record.status == "succeeded" and record.result == {"metrics": {}}
    assert record.model_sha256 == "" and record.attempts == 0
    assert store.per_image_all("old") == LEGACY_ROWS  # each row verbatim, list order kept
    worst = store.per_image_page("old", ImageQuery(sort="fn"))
    assert [row["file"] for row in worst.items] == ["a.jpg", "b.jpg"]
    assert store.per_image_page("old", ImageQuery(true_denomination=3)).total == 1
    with pytest.raises(Exception, match="per_image"):  # the column is gone
        store_env.raw("SELECT per_image FROM jobs")


def test_a_database_from_a_newer_release_is_refused(store_env: StoreEnv) -> None:
    store_env.open()
    store_env.raw(
        "INSERT INTO schema_version (version, name, applied_at) VALUES (?, 'future', 0)", (LATEST + 5,)
    )
    with pytest.raises(MigrationError, match="newer than this release"):
        store_env.open()


def test_a_failing_migration_leaves_the_schema_as_it_was(
    store_env: StoreEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_env.open(target_version=2)
    module = "service.store.sqlite" if store_env.backend == "sqlite" else "service.store.postgres"
    real = load_migrations("sqlite" if store_env.backend == "sqlite" else "postgres")
    broken = Migration(
        LATEST + 1, "broken", "CREATE TABLE half_done (id INTEGER);\nSELECT * FROM no_such_table;"
    )
    monkeypatch.setattr(f"{module}.load_migrations", lambda backend: [*real, broken])
    with pytest.raises(Exception, match="no_such_table"):
        store_env.open()
    monkeypatch.undo()
    assert store_env.raw("SELECT MAX(version) FROM schema_version") == [(2,)]  # 3..N rolled back too
    with pytest.raises(Exception, match="half_done"):
        store_env.raw("SELECT * FROM half_done")
    assert store_env.open().schema_version() == LATEST


def test_replicas_starting_at_once_apply_each_migration_once(store_env: StoreEnv) -> None:
    errors: list[BaseException] = []
    versions: list[int] = []

    def start() -> None:
        try:
            versions.append(store_env.open().schema_version())
        except BaseException as exc:  # collected: a thread's exception would otherwise be lost
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == [] and versions == [LATEST] * 6
    rows: list[Any] = store_env.raw("SELECT version, COUNT(*) FROM schema_version GROUP BY version")
    assert sorted(rows) == [(version, 1) for version in range(1, LATEST + 1)]
