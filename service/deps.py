"""Typed dependencies shared by the routers (``Annotated[..., Depends()]``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Path, Request, Security
from fastapi.security import APIKeyHeader

from service.guard import check_api_key
from service.jobs import JobManager
from service.registry import ModelRegistry
from service.schemas import JOB_ID_PATTERN
from service.settings import Settings
from service.state_lock import StateDirLock
from service.store import JobRecord
from service.streams import StreamSlots
from service.telemetry import ServiceTelemetry
from service.uploads import UploadLimits, UploadSlots
from service.webhooks.setup import Webhooks
from smartcash_core.cache import clear_data_caches, get_cache_info


@dataclass
class ServiceState:
    """Everything one app instance owns; hung on ``app.state.smartcash``."""

    settings: Settings
    registry: ModelRegistry
    jobs: JobManager
    telemetry: ServiceTelemetry
    cache_info: Callable[[], dict[str, dict[str, int]]] = get_cache_info
    clear_caches: Callable[[], None] = clear_data_caches
    webhooks: Webhooks | None = None  # None: a state built without webhooks (every callback_url refused)
    upload_slots: UploadSlots = field(init=False)
    stream_slots: StreamSlots = field(init=False)
    state_lock: StateDirLock | None = None  # held while the app runs on an unshared (SQLite) store

    def __post_init__(self) -> None:
        self.upload_slots = UploadSlots(self.settings.max_concurrent_uploads, self.settings.retry_after_s)
        self.stream_slots = StreamSlots(self.settings.max_sse_connections, self.settings.retry_after_s)

    @property
    def upload_limits(self) -> UploadLimits:
        return UploadLimits(
            max_bytes=self.settings.max_upload_bytes,
            max_files=self.settings.max_upload_files,
            max_archive_bytes=self.settings.max_archive_bytes,
            max_member_bytes=self.settings.max_archive_member_bytes,
        )


def get_state(request: Request) -> ServiceState:
    return request.app.state.smartcash


StateDep = Annotated[ServiceState, Depends(get_state)]


def get_registry(state: StateDep) -> ModelRegistry:
    return state.registry


def get_jobs(state: StateDep) -> JobManager:
    return state.jobs


RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
JobsDep = Annotated[JobManager, Depends(get_jobs)]

_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="set when SMARTCASH_API_KEY is"
)


def require_api_key(state: StateDep, supplied: Annotated[str | None, Security(_api_key_header)]) -> None:
    """401 unless the service is open or the header matches. ``RequestGuard`` checks the same before the
    body is read; this dependency documents the scheme in OpenAPI and guards apps built without it."""
    check_api_key(state.settings.api_key_value(), supplied)


def existing_job(
    jobs: JobsDep, job_id: Annotated[str, Path(pattern=JOB_ID_PATTERN, description="job id (32 hex digits)")]
) -> JobRecord:
    """The job's record (without the result), or 404 before any response starts (SSE needs that)."""
    return jobs.record(job_id, with_result=False)


JobRecordDep = Annotated[JobRecord, Depends(existing_job)]
