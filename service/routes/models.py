"""Models: load checkpoints from under the checkpoint root, list, describe, unload."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from service.deps import RegistryDep, StateDep
from service.openapi_examples import error_responses
from service.schemas import MODEL_NAME_PATTERN, ModelInfo, ModelList, ModelLoadRequest

router = APIRouter(prefix="/v1/models", tags=["models"])
ModelName = Annotated[str, Path(pattern=MODEL_NAME_PATTERN, description="model name")]
_ERRORS = error_responses(
    400, 401, 404, 409, 422, examples={409: "model_conflict", 422: "bad_checkpoint_metadata"}
)


@router.get("", response_model=ModelList, summary="Loaded models", responses=error_responses(401))
def list_models(registry: RegistryDep) -> ModelList:
    return ModelList(models=[ModelInfo.from_entry(entry) for entry in registry.entries()])


@router.post(
    "",
    response_model=ModelInfo,
    status_code=status.HTTP_201_CREATED,
    responses=_ERRORS,
    summary="Load a checkpoint (relative to the checkpoint root) under a name",
    description=(
        "The checkpoint's metadata and architecture are checked before anything is built (422 "
        "`bad_checkpoint_metadata` naming the field, `checkpoint_too_large` over a safety cap, "
        "`unsafe_checkpoint` for a refused pickle, `bad_checkpoint` otherwise). Loading the same name "
        "again returns the model when it is the same file and device, 409 otherwise; a request for a name "
        "whose load is still running waits for it and then gets that same answer."
    ),
)
def load_model(body: ModelLoadRequest, state: StateDep, response: Response) -> ModelInfo:
    # A plain ``def``: FastAPI runs it in its thread pool, so hashing and torch loading stay off the loop,
    # and the registry holds no lock while it loads (``/v2/health/*`` and submits never wait on a load).
    entry = state.registry.load(body.name, body.checkpoint, body.device)
    state.jobs.ensure_worker(entry.device)
    response.headers["Location"] = f"/v1/models/{entry.name}"
    return ModelInfo.from_entry(entry)


@router.get("/{name}", response_model=ModelInfo, responses=_ERRORS, summary="One loaded model")
def get_model(name: ModelName, registry: RegistryDep) -> ModelInfo:
    return ModelInfo.from_entry(registry.get(name))


@router.delete(
    "/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_ERRORS,
    summary="Unload a model (its memory is freed once no job uses it)",
)
def delete_model(name: ModelName, registry: RegistryDep) -> Response:
    registry.remove(name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
