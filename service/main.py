"""The FastAPI app: ``create_app(settings)`` wires settings, store, model registry, workers and routers.

The library pieces (``run_validation``, ``load_model``, cache functions) are injectable so tests can gate
or observe them; by default they are the real ones.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import sys
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI

from service.artifacts import PlotArtifacts
from service.comparisons import ComparisonSlots
from service.datasets import contained_runner
from service.demo_model import DEMO_PRELOAD_KEYWORD, ensure_demo_checkpoint
from service.deps import ServiceState, require_api_key
from service.docs import install_offline_docs
from service.errors import ServiceError, install_error_handlers
from service.guard import GuardConfig, RequestGuard
from service.jobs import JobManager, QueueConfig, ValidationRunner
from service.logs import configure_logging
from service.openapi_errors import document_guard_responses
from service.redact import PathRedactor
from service.registry import ModelLoader, ModelRegistry
from service.request_context import RequestContextMiddleware
from service.retention import RetentionPolicy, RetentionSweeper
from service.routes import cache, checkpoints, comparisons, health, models, runs, telemetry, validations
from service.runtime_dirs import keep_caches_under
from service.settings import Settings
from service.sources import resolve_dataset
from service.state_lock import StateDirLock, lock_state_dir
from service.store import JobStore, StoreConfigError, open_store
from service.telemetry import ServiceTelemetry
from service.webhooks.setup import Webhooks
from smartcash_core.cache import clear_data_caches, configure_caches, get_cache_info
from smartcash_core.errors import SmartCashError

log = logging.getLogger("smartcash.service")

_DESCRIPTION = """Validation and metrics service for SmartCash YOLOv5 banknote detectors.

Load a checkpoint (`POST /v1/models`), then validate it on a dataset path (`POST /v1/validations`) or an
uploaded batch (`POST /v1/validations/upload`). Jobs answer `202` with a `Location`; follow them with
`GET /v1/validations/{id}` or the SSE stream at `/v1/validations/{id}/events`. Errors are JSON bodies
`{"error": {"code", "message", "fix"}}`. When `SMARTCASH_API_KEY` is set, send it as `X-API-Key`.
"""


def _default_runner(settings: Settings) -> ValidationRunner:
    from smartcash_core.validation.runner import run_validation

    return partial(run_validation, max_image_pixels=settings.max_image_pixels)


def _default_loader() -> ModelLoader:
    from smartcash_core.checkpoint import load_model

    return lambda path, device: load_model(path, device)


# What a model load and a pass import, imported before serving so that no request's first use imports on a
# worker thread (module initialisation holds the import lock and, for C extensions, the GIL). The routes
# already pull in most of it; the YOLOv5 .pt importer was the one still imported at a server's first .pt.
_PASS_MODULES = (
    "cv2",
    "smartcash_core.checkpoint",
    "smartcash_core.checkpoint.yolov5_import",
    "smartcash_core.model",
    "smartcash_core.validation.runner",
    "smartcash_core.validation.loss",
)


def import_pass_modules() -> None:
    """Import what a model load and a validation pass need, at start-up (see ``_PASS_MODULES``)."""
    for name in _PASS_MODULES:
        importlib.import_module(name)


def create_app(
    settings: Settings | None = None,
    runner: ValidationRunner | None = None,
    loader: ModelLoader | None = None,
) -> FastAPI:
    """Build the service: open (and migrate) the job store; jobs are recovered when the app starts."""
    settings = settings or Settings()
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    keep_caches_under(settings.state_dir)  # nothing under $HOME, no torchinductor_* in the temp dir
    import_pass_modules()
    configure_caches(
        image_bytes=settings.image_cache_bytes,
        label_bytes=settings.label_cache_bytes,
        model_bytes=settings.model_cache_bytes,
    )
    telemetry_ = ServiceTelemetry(get_cache_info)
    store, state_lock = _open_store(settings)
    registry = ModelRegistry(
        settings.checkpoint_root,
        settings.device,
        loader or _default_loader(),
        on_load=telemetry_.model_load_seconds.observe,
    )
    redact_paths = _path_redactor(settings)
    runner = runner or _default_runner(settings)
    jobs = _job_manager(settings, store, registry, runner, telemetry_, redact_paths)
    telemetry_.bind_gauges(jobs.queue_depth, lambda: len(registry))
    webhooks = Webhooks(settings, store, jobs.replica)
    jobs.on_final = webhooks.wake
    state = ServiceState(
        settings, registry, jobs, telemetry_, get_cache_info, clear_data_caches, webhooks=webhooks
    )
    state.state_lock = state_lock
    app = FastAPI(
        title="SmartCash Validation Service",
        version="0.1.0",
        description=_DESCRIPTION,
        lifespan=_lifespan(state, _retention(settings, jobs)),
        docs_url=None,  # install_offline_docs serves /docs and /redoc without a CDN
        redoc_url=None,
    )
    app.state.smartcash = state
    app.state.comparison_slots = ComparisonSlots(settings.comparison_max_concurrent, settings.retry_after_s)
    app.state.redact_paths = redact_paths  # every error body goes through it (service.errors.error_body)
    _mount(app, settings, telemetry_)
    log.info("job store: %s (replica %s)", store.backend, jobs.replica)
    return app


def _mount(app: FastAPI, settings: Settings, telemetry_: ServiceTelemetry) -> None:
    """Error handlers, routers (``/v1`` and ``/metrics`` behind the API key), docs and middleware."""
    install_error_handlers(app)
    protected = [Depends(require_api_key)]
    app.include_router(health.router)
    for module in (models, checkpoints, validations, runs, cache, comparisons):
        app.include_router(module.router, dependencies=protected)
    app.include_router(telemetry.router, dependencies=protected)
    install_offline_docs(app)
    document_guard_responses(app)
    app.add_middleware(RequestGuard, config=_guard_config(settings))  # type: ignore[arg-type]
    app.add_middleware(RequestContextMiddleware, telemetry=telemetry_)  # type: ignore[arg-type]


def _open_store(settings: Settings) -> tuple[JobStore, StateDirLock | None]:
    state_lock = _lock_if_unshared(settings)  # before the store opens: a second server changes nothing
    try:
        store = open_store(
            settings.database_url_value(),
            settings.database_path,
            lease_s=settings.lease_s,
            pool_size=settings.database_pool_size,
        )
    except BaseException:
        if state_lock is not None:
            state_lock.release()
        raise
    return store, state_lock


def _retention(settings: Settings, jobs: JobManager) -> RetentionSweeper:
    policy = RetentionPolicy(
        days=settings.retention_days,
        max_jobs=settings.retention_max_jobs,
        interval_s=settings.retention_interval_s,
    )
    return RetentionSweeper(jobs.store, jobs.plots, policy)


def _path_redactor(settings: Settings) -> PathRedactor:
    roots = {"data root": settings.data_root, "checkpoint root": settings.checkpoint_root}
    return PathRedactor({**roots, "state dir": settings.state_dir})


def _lock_if_unshared(settings: Settings) -> StateDirLock | None:
    """The SQLite store's state dir lock (one server per state dir); PostgreSQL replicas take none."""
    return lock_state_dir(settings.state_dir) if settings.database_url_value() is None else None


def _guard_config(settings: Settings) -> GuardConfig:
    return GuardConfig(
        api_key=settings.api_key_value(),
        max_json_bytes=settings.max_json_bytes,
        timeout_s=settings.body_timeout_s,
        min_bytes_per_s=settings.body_min_bytes_per_s,
    )


def _job_manager(
    settings: Settings,
    store: JobStore,
    registry: ModelRegistry,
    runner: ValidationRunner,
    telemetry_: ServiceTelemetry,
    redact_paths: PathRedactor,
) -> JobManager:
    return JobManager(
        store,
        registry,
        contained_runner(runner, settings.data_root),
        partial(resolve_dataset, settings.data_root),
        PlotArtifacts(store, settings.state_dir / "plots"),
        telemetry_,
        QueueConfig(
            replica=settings.replica_name(),
            max_queue=settings.max_queue,
            retry_after_s=settings.retry_after_s,
            claim_poll_s=settings.claim_poll_s,
            worker_nice=settings.worker_nice,
        ),
        redact_paths,
    )


def _lifespan(state: ServiceState, retention: RetentionSweeper) -> Callable[[FastAPI], Any]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Preload in the background: /live answers at once and /ready says 503 until the model is in.
        if state.state_lock is None:  # the lifespan entered again after an exit released the lock
            state.state_lock = _lock_if_unshared(state.settings)
        state.jobs.start()  # recover jobs a previous run left active, start the lease keeper
        retention.start()
        if state.webhooks is not None:
            state.webhooks.start()  # deliver what is due, including notifications a previous run left
        preload = threading.Thread(target=_preload, args=(state,), name="smartcash-preload", daemon=True)
        preload.start()
        try:
            yield
        finally:
            retention.stop()
            state.jobs.shutdown()
            if state.webhooks is not None:
                state.webhooks.stop()
            state.jobs.store.close()
            if state.state_lock is not None:
                state.state_lock.release()
                state.state_lock = None

    return lifespan


def _preload(state: ServiceState) -> None:
    for name, checkpoint in state.settings.preload_entries():
        try:
            if checkpoint == DEMO_PRELOAD_KEYWORD:  # the embedded demo model, not a file under the root
                path = ensure_demo_checkpoint(state.settings.state_dir)
                entry = state.registry.load_path(name, "demo (embedded)", path)
            else:
                entry = state.registry.load(name, checkpoint)
            state.jobs.ensure_worker(entry.device)
            log.info("preloaded model", extra={"model": name, "device": entry.device})
        except (ServiceError, SmartCashError) as exc:  # a bad preload must not stop the service
            log.error("preload of %s failed: %s", checkpoint, exc)


def freeze_startup_objects() -> None:
    """Put every object alive now (the imports, the app) out of the cyclic garbage collector's reach.

    A full collection walks every tracked object with the GIL held: ~120 ms in a serving process (225k
    objects after the imports), which stalled /v2/health/live for 130-200 ms whenever the automatic
    collector ran one during a job, or a model unload did (cycles keep a model alive until collected). After
    ``gc.freeze()`` a collection walks only what was made since. For serving processes only: frozen objects
    that later become unreachable cycles are never collected, so tests that build many apps do not call it.
    """
    gc.collect()
    gc.freeze()


def cli_serve(args: argparse.Namespace) -> int:
    """``smartcash serve``: run the service with uvicorn (127.0.0.1 unless told otherwise)."""
    import uvicorn

    settings = Settings()
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = settings.model_copy(update=overrides)
    configure_logging(settings.log_level, settings.log_json)
    Path(settings.state_dir).mkdir(parents=True, exist_ok=True)
    try:
        app = create_app(settings)
    except StoreConfigError as exc:  # a second server on this state dir, a bad database URL, ...
        print(f"smartcash serve: {exc.message}\n  fix: {exc.fix}", file=sys.stderr)
        return 2
    freeze_startup_objects()
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False)
    return 0

