"""Service settings, read from ``SMARTCASH_*`` environment variables (and nothing else).

Only the service reads the environment; the library receives plain arguments.
"""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from smartcash_core.data.limits import DEFAULT_MAX_IMAGE_PIXELS

MiB = 1024 * 1024


class Settings(BaseSettings):
    """Everything the service can be told at start-up. ``Settings()`` reads ``SMARTCASH_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="SMARTCASH_", extra="ignore")

    host: str = Field("127.0.0.1", description="bind address of `smartcash serve`")
    port: int = Field(8000, ge=0, le=65535)
    data_root: Path = Field(Path("data"), description="datasets are only read from under this directory")
    checkpoint_root: Path = Field(Path("checkpoints"), description="checkpoints only load from under here")
    state_dir: Path = Field(
        Path("state"), description="SQLite job store (when no database URL is set), plot cache, demo model"
    )
    database_url: SecretStr | None = Field(
        None,
        description="postgresql://user:password@host:5432/db: the job store and queue shared by replicas; "
        "unset: SQLite in the state dir (one replica)",
    )
    database_pool_size: int = Field(8, ge=1, le=100, description="PostgreSQL connections per replica")
    replica_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$",
        description="this replica's name on job leases; unset: <hostname>-<pid>-<random>. A fixed id lets a "
        "restarted replica mark its previous run's jobs interrupted at once",
    )
    lease_s: float = Field(
        30.0, ge=0.5, le=3600, description="seconds a job's lease lasts unrenewed before it is interrupted"
    )
    claim_poll_s: float = Field(
        0.5, gt=0, le=60, description="how often an idle worker looks for jobs submitted to other replicas"
    )
    sse_poll_s: float = Field(
        0.5, gt=0, le=60, description="how often SSE reads the store for a job running on another replica"
    )
    api_key: SecretStr | None = Field(None, description="when set, every /v1 call needs header X-API-Key")
    preload: str = Field(
        "", description="comma-separated checkpoints to load at start-up: `path` or `name=path` (relative)"
    )
    device: str = Field("auto", description="default device of models: auto, cpu, cuda, cuda:N, mps")
    max_upload_bytes: int = Field(256 * MiB, ge=1, description="largest accepted upload request body")
    max_upload_files: int = Field(2000, ge=1, description="most files (or archive members) per upload")
    max_archive_bytes: int = Field(1024 * MiB, ge=1, description="total uncompressed size of an archive")
    max_queue: int = Field(8, ge=1, description="jobs queued in the store (all replicas) before 429")
    max_concurrent_uploads: int = Field(
        4, ge=1, description="uploads received at once (each buffers up to max_upload_bytes) before 429"
    )
    worker_nice: int = Field(
        10, ge=0, le=19, description="niceness added to validation threads, so health probes stay fast"
    )
    retry_after_s: int = Field(5, ge=1, description="Retry-After sent with 429")
    wait_max_images: int = Field(64, ge=1, description="largest upload that may ask ?wait=true")
    wait_timeout_s: float = Field(300.0, gt=0, description="longest a ?wait=true request waits")
    max_image_pixels: int = Field(
        DEFAULT_MAX_IMAGE_PIXELS,
        ge=1,
        description="images whose header declares more pixels are skipped (reported) before any decode",
    )
    memory_budget_bytes: int | None = Field(
        None,
        ge=1,
        description="largest estimated peak memory of one job before 400 memory_budget_exceeded; unset: half "
        "the RAM (or the container's limit) on CPU, 80% of the GPU's memory on CUDA",
    )
    image_cache_bytes: int | None = Field(None, ge=0, description="byte bound of the decoded-image cache")
    label_cache_bytes: int | None = Field(None, ge=0, description="byte bound of the label cache")
    comparison_max_resamples: int = Field(
        10_000, ge=1, le=100_000, description="most bootstrap resamples one POST /v1/comparisons may ask for"
    )
    comparison_threads: int = Field(2, ge=1, le=64, description="threads one comparison computes on")
    comparison_max_concurrent: int = Field(2, ge=1, description="comparisons computed at once before 429")
    # -- hardening (issue 11) --
    max_json_bytes: int = Field(
        64 * 1024, ge=1, description="largest JSON request body (413 beyond, unparsed); the API's are < 4 KB"
    )
    body_timeout_s: float = Field(
        30.0, gt=0, description="grace before a request body must flow at body_min_bytes_per_s (408 after)"
    )
    body_min_bytes_per_s: int = Field(16 * 1024, ge=1, description="slowest mean body rate after it")
    max_archive_member_bytes: int = Field(
        64 * MiB, ge=1, description="uncompressed size of one archive member (checked before it is read)"
    )
    max_sse_connections: int = Field(32, ge=1, description="open /events streams per replica (429 beyond)")
    retention_days: float = Field(30.0, ge=0, description="finished jobs older: deleted; 0: keep")
    retention_max_jobs: int = Field(10_000, ge=0, description="newest finished jobs kept; 0: all")
    retention_interval_s: float = Field(3600.0, gt=0, description="how often retention runs (and at start)")
    model_cache_bytes: int | None = Field(
        None, ge=0, description="byte cap of loaded models kept for reuse (checkpoint-in-request models are "
        "evicted least recently used first); unset: the library default (2 GiB)"
    )
    webhook_allowed_hosts: str = Field(
        "", description="comma-separated callback_url targets: host names (`hooks.example.com`, "
        "`*.example.com`), IP addresses or CIDRs (`127.0.0.1`, `10.1.0.0/16`); empty: webhooks refused. A "
        "name's resolved addresses must be public or listed too"
    )
    webhook_secret: SecretStr | None = Field(
        None, description="HMAC-SHA256 key of X-SmartCash-Signature; webhooks are refused while unset"
    )
    webhook_max_attempts: int = Field(8, ge=1, le=100, description="delivery attempts before giving up")
    webhook_backoff_s: float = Field(2.0, gt=0, le=3600, description="wait before the 1st retry; doubles")
    webhook_backoff_max_s: float = Field(600.0, gt=0, le=86400, description="longest wait between attempts")
    webhook_timeout_s: float = Field(10.0, gt=0, le=300, description="one delivery attempt's timeout")
    webhook_poll_s: float = Field(1.0, gt=0, le=60, description="how often due notifications are looked for")
    public_url: str | None = Field(
        None, pattern=r"^https?://[^\s]+$", description="base URL of this service as clients reach it; "
        "when set, webhook payload links are absolute"
    )
    log_level: str = Field("info", description="debug, info, warning, error")
    log_json: bool = Field(True, description="one JSON object per log line")

    @property
    def database_path(self) -> Path:
        """The SQLite job store (used when ``database_url`` is unset)."""
        return self.state_dir / "jobs.sqlite3"

    def database_url_value(self) -> str | None:
        if self.database_url is None or not self.database_url.get_secret_value().strip():
            return None
        return self.database_url.get_secret_value().strip()

    def replica_name(self) -> str:
        """``replica_id``, or a name no other process shares (host, pid and a random suffix)."""
        if self.replica_id:
            return self.replica_id
        return f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(3)}"

    def api_key_value(self) -> str | None:
        """The configured API key, or ``None`` when the service is open."""
        if self.api_key is None or not self.api_key.get_secret_value():
            return None
        return self.api_key.get_secret_value()

    def webhook_secret_value(self) -> bytes | None:
        if self.webhook_secret is None or not self.webhook_secret.get_secret_value():
            return None
        return self.webhook_secret.get_secret_value().encode()

    def preload_entries(self) -> list[tuple[str, str]]:
        """``SMARTCASH_PRELOAD`` parsed into ``(name, relative checkpoint path)`` pairs."""
        entries: list[tuple[str, str]] = []
        for item in (part.strip() for part in self.preload.split(",")):
            if not item:
                continue
            name, _, path = item.rpartition("=")
            entries.append((name or Path(path).stem, path))
        return entries
