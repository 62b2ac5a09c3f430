"""The FastAPI app: ``create_app(settings)`` wires settings, store, model registry, workers and routers.

The library pieces (``run_validation``, ``load_model``, cache functions) are injectable so tests can gate
or observe them; by default they are the real ones.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI

from service.artifacts import PlotArtifacts
from service.datasets import contained_runner
from service.demo_model import DEMO_PRELOAD_KEYWORD, ensure_demo_checkpoint
from service.deps import ServiceState, require_api_key
from service.docs import install_offline_docs
from service.errors import ServiceError, install_error_handlers
from service.jobs import JobManager, QueueConfig, ValidationRunner
from service.logs import configure_logging, new_request_id, request_id_var
from service.registry import ModelLoader, ModelRegistry
from service.routes import cache, health, models, runs, telemetry, validations
from service.settings import Settings
from service.sources import resolve_dataset
from service.store import JobStore, open_store
from service.telemetry import ServiceTelemetry
from service.webhooks.setup import Webhooks
from smartcash_core.cache import clear_data_caches, configure_caches, get_cache_info
from smartcash_core.errors import SmartCashError

log = logging.getLogger("smartcash.service")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_DESCRIPTION = """Validation and metrics service for SmartCash YOLOv5 banknote detectors.

Load a checkpoint (`POST /v1/models`), then validate it on a dataset path (`POST /v1/validations`) or an
uploaded batch (`POST /v1/validations/upload`). Jobs answer `202` with a `Location`; follow them with
`GET /v1/validations/{id}` or the SSE stream at `/v1/validations/{id}/events`. Errors are JSON bodies
`{"error": {"code", "message", "fix"}}`. When `SMARTCASH_API_KEY` is set, send it as `X-API-Key`.
"""


def _default_runner() -> ValidationRunner:
    from smartcash_core.validation.runner import run_validation

    return run_validation


def _default_loader() -> ModelLoader:
    from smartcash_core.checkpoint import load_model

    return lambda path, device: load_model(path, device)


def create_app(
    settings: Settings | None = None,
    runner: ValidationRunner | None = None,
    loader: ModelLoader | None = None,
) -> FastAPI:
    """Build the service: open (and migrate) the job store; jobs are recovered when the app starts."""
    settings = settings or Settings()
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    configure_caches(
        image_bytes=settings.image_cache_bytes,
        label_bytes=settings.label_cache_bytes,
        model_bytes=settings.model_cache_bytes,
    )
    telemetry_ = ServiceTelemetry(get_cache_info)
    store = open_store(
        settings.database_url_value(),
        settings.database_path,
        lease_s=settings.lease_s,
        pool_size=settings.database_pool_size,
    )
    registry = ModelRegistry(
        settings.checkpoint_root,
        settings.device,
        loader or _default_loader(),
        on_load=telemetry_.model_load_seconds.observe,
    )
    jobs = _job_manager(settings, store, registry, runner or _default_runner(), telemetry_)
    telemetry_.bind_gauges(jobs.queue_depth, lambda: len(registry))
    webhooks = Webhooks(settings, store, jobs.replica)
    jobs.on_final = webhooks.wake
    state = ServiceState(
        settings, registry, jobs, telemetry_, get_cache_info, clear_data_caches, webhooks=webhooks
    )

    app = FastAPI(
        title="SmartCash Validation Service",
        version="0.1.0",
        description=_DESCRIPTION,
        lifespan=_lifespan(state),
        docs_url=None,  # install_offline_docs serves /docs and /redoc without a CDN
        redoc_url=None,
    )
    app.state.smartcash = state
    install_error_handlers(app)
    protected = [Depends(require_api_key)]
    app.include_router(health.router)
    for module in (models, validations, runs, cache):
        app.include_router(module.router, dependencies=protected)
    app.include_router(telemetry.router, dependencies=protected)
    install_offline_docs(app)
    app.add_middleware(RequestContextMiddleware, telemetry=telemetry_)  # type: ignore[arg-type]
    log.info("job store: %s (replica %s)", store.backend, jobs.replica)
    return app


def _job_manager(
    settings: Settings,
    store: JobStore,
    registry: ModelRegistry,
    runner: ValidationRunner,
    telemetry_: ServiceTelemetry,
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
    )


def _lifespan(state: ServiceState) -> Callable[[FastAPI], Any]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Preload in the background: /live answers at once and /ready says 503 until the model is in.
        state.jobs.start()  # recover jobs a previous run left active, start the lease keeper
        if state.webhooks is not None:
            state.webhooks.start()  # deliver what is due, including notifications a previous run left
        preload = threading.Thread(target=_preload, args=(state,), name="smartcash-preload", daemon=True)
        preload.start()
        try:
            yield
        finally:
            state.jobs.shutdown()
            if state.webhooks is not None:
                state.webhooks.stop()
            state.jobs.store.close()

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


class RequestContextMiddleware:
    """Request id (``X-Request-ID`` in and out), access log, and the request-duration histogram.

    Pure ASGI (not ``BaseHTTPMiddleware``) so streaming responses such as SSE pass through untouched.
    """

    def __init__(self, app: ASGIApp, telemetry: ServiceTelemetry) -> None:
        self.app = app
        self.telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        request_id = new_request_id(headers.get(b"x-request-id", b"").decode("latin-1"))
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        status_code = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._record(scope, status_code, time.perf_counter() - started)
            request_id_var.reset(token)

    def _record(self, scope: Scope, status_code: int, seconds: float) -> None:
        template = _route_template(scope)
        self.telemetry.observe_request(scope["method"], template, status_code, seconds)
        log.info(
            "request",
            extra={
                "method": scope["method"],
                "route": template,
                "status": status_code,
                "ms": round(seconds * 1000, 2),
            },
        )


def cli_serve(args: argparse.Namespace) -> int:
    """``smartcash serve``: run the service with uvicorn (127.0.0.1 unless told otherwise)."""
    import uvicorn

    settings = Settings()
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = settings.model_copy(update=overrides)
    configure_logging(settings.log_level, settings.log_json)
    Path(settings.state_dir).mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False)
    return 0


def _route_template(scope: Scope) -> str:
    """The matched route's template (not the raw path: metric labels stay bounded). A mount (the offline
    docs assets) has no route object: it is labelled by its prefix."""
    template = getattr(scope.get("route"), "path", None)
    if template:
        return str(template)
    if scope.get("endpoint") is not None and scope.get("root_path"):
        return f"{scope['root_path']}/{{path}}"
    return "unmatched"
