"""Cache statistics (``get_cache_info()``) and clearing the data caches."""

from __future__ import annotations

from fastapi import APIRouter

from service.deps import StateDep
from service.openapi_examples import error_responses
from service.schemas import CacheCleared, CacheStats

router = APIRouter(prefix="/v1/cache", tags=["cache"], responses=error_responses(401))


@router.get("", response_model=dict[str, CacheStats], summary="Per cache: hits, misses, evictions, bytes")
def cache_info(state: StateDep) -> dict[str, CacheStats]:
    return {name: CacheStats(**info) for name, info in state.cache_info().items()}


@router.delete("", response_model=CacheCleared, summary="Drop decoded images and parsed labels")
def clear_cache(state: StateDep) -> CacheCleared:
    state.clear_caches()
    caches = {name: CacheStats(**info) for name, info in state.cache_info().items()}
    return CacheCleared(cleared=["image", "label"], caches=caches)
