"""Checkpoints: the files under the checkpoint root that ``POST /v1/models`` can load."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from service.checkpoints import MAX_LISTED, list_checkpoints
from service.deps import StateDep
from service.openapi_examples import error_responses
from service.schemas import CheckpointFileInfo, CheckpointList

router = APIRouter(prefix="/v1/checkpoints", tags=["models"])


@router.get(
    "",
    response_model=CheckpointList,
    responses=error_responses(401),
    summary="Checkpoint files under the checkpoint root (path, size, sha256 when loaded, loaded as)",
)
def checkpoints(state: StateDep) -> CheckpointList:
    # a plain ``def``: the directory walk runs on a worker thread, off the event loop
    files = list_checkpoints(state.settings.checkpoint_root, state.registry.entries(), MAX_LISTED + 1)
    items = [CheckpointFileInfo(**asdict(item)) for item in files[:MAX_LISTED]]
    return CheckpointList(items=items, truncated=len(files) > MAX_LISTED)
