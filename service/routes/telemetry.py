"""Prometheus text exposition of this app's registry."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from service.deps import StateDep
from service.openapi_examples import error_responses

router = APIRouter(tags=["telemetry"])


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics",
    responses={200: {"content": {"text/plain": {}}}, **error_responses(401)},
)
def prometheus_metrics(state: StateDep) -> Response:
    return Response(state.telemetry.render(), media_type=CONTENT_TYPE_LATEST)
