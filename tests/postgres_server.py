"""A throwaway PostgreSQL cluster for tests and benchmarks: ``initdb`` in a temp dir, ``pg_ctl start`` on a
free loopback port, one fresh database per caller, ``pg_ctl stop`` and removal at the end.

PostgreSQL refuses to run as root, so under root the server runs as the ``postgres`` user (``runuser``) in a
directory that user owns. Tuned for tests, not durability: ``fsync=off``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

_BIN_GLOB = "/usr/lib/postgresql/*/bin"
_SERVER_OPTIONS = (
    "-c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off "
    "-c max_connections=300 -c shared_buffers=32MB"
)


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server can be started here; the message says why."""


def find_binaries() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl`` (PATH first, then Debian's versioned folders)."""
    on_path = shutil.which("initdb"), shutil.which("pg_ctl")
    if all(on_path):
        return Path(os.path.realpath(on_path[0] or "")).parent
    for folder in sorted(glob.glob(_BIN_GLOB), key=_version_key, reverse=True):
        if (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    raise PostgresUnavailable(
        "no initdb/pg_ctl on PATH or under /usr/lib/postgresql/*/bin (Debian: apt-get install postgresql)"
    )


def _version_key(folder: str) -> int:
    version = Path(folder).parent.name
    return int(version) if version.isdigit() else 0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresCluster:
    """One running cluster; ``database()`` hands out fresh, empty databases on it."""

    def __init__(self) -> None:
        self.bin = find_binaries()
        self.run_as = self._server_user()
        self.root = Path(tempfile.mkdtemp(prefix="smartcash-pg-"))
        self.data = self.root / "data"
        self.port = 0
        self.log = self.root / "server.log"

    @staticmethod
    def _server_user() -> str | None:
        if os.geteuid() != 0:
            return None  # an ordinary user runs the server itself
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailable(
                "running as root and there is no 'postgres' user to run the server"
            ) from None
        if shutil.which("runuser") is None:
            raise PostgresUnavailable("running as root and 'runuser' is missing (util-linux)")
        return "postgres"

    def _command(self, *args: str) -> list[str]:
        prefix = ["runuser", "-u", self.run_as, "--"] if self.run_as else []
        return [*prefix, *args]

    def _run(self, *args: str, timeout: float = 120) -> None:
        result = subprocess.run(
            self._command(*args), capture_output=True, text=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            log = self.log.read_text()[-2000:] if self.log.is_file() else ""
            raise PostgresUnavailable(f"{args[0]} failed: {result.stderr[-2000:]}{log}")

    def start(self) -> PostgresCluster:
        if self.run_as:
            entry = pwd.getpwnam(self.run_as)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
        )
        last_error: PostgresUnavailable | None = None
        for _ in range(3):  # a free port can be taken between the probe and the bind: try another
            self.port = _free_port()
            options = f"-p {self.port} -k {self.root} {_SERVER_OPTIONS}"
            try:
                self._run(
                    str(self.bin / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.log),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                )
                return self
            except PostgresUnavailable as exc:
                last_error = exc
        raise last_error or PostgresUnavailable("pg_ctl start failed")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def database(self, prefix: str = "t") -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop(self, url: str) -> None:
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.port and (self.data / "postmaster.pid").exists():
            subprocess.run(
                self._command(
                    str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"
                ),
                capture_output=True,
                timeout=60,
                check=False,
            )
        shutil.rmtree(self.root, ignore_errors=True)


def start_cluster() -> PostgresCluster:
    """A started cluster, or ``PostgresUnavailable`` saying why none can run here."""
    cluster = PostgresCluster()
    try:
        return cluster.start()
    except BaseException:
        cluster.stop()
        raise
