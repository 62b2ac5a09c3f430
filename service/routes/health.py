"""Liveness and readiness probes (always open, even with an API key)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.deps import StateDep
from service.schemas import Health, Liveness

router = APIRouter(prefix="/v2/health", tags=["health"])


@router.get(
    "/live",
    response_model=Liveness,
    summary="The process answers (never touches a model; model and worker facts are on /ready)",
)
async def live() -> Liveness:
    return Liveness(status="ok")


@router.get(
    "/ready",
    response_model=Health,
    summary="A model is loaded and every device worker runs",
    responses={503: {"model": Health, "description": "no model loaded yet, or a worker died"}},
)
async def ready(state: StateDep) -> Health | JSONResponse:
    models, alive = len(state.registry), state.jobs.workers_alive()
    health = Health(status="ok" if models and alive else "not_ready", models=models, workers_alive=alive)
    if health.status == "ok":
        return health
    return JSONResponse(health.model_dump(), status_code=503)
