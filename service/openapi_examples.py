"""Error examples of the OpenAPI schema: every error status of an operation shows an error of its own kind.

Swagger UI and ReDoc show one example per response status. Without these, every 4xx showed the schema's
single example (``path_rejected``), which told a reader nothing about what a 404 or a 429 looks like.
Codes and texts follow what the service really sends (the codes are listed in docs/API.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from service.schemas import ErrorResponse

_TEXTS: dict[str, tuple[str, str]] = {  # code -> (message, fix)
    "path_rejected": (
        "dataset path '../etc' contains '..'",
        "name a dataset inside the dataset root, without '..'",
    ),
    "dataset_split_missing": (
        "demo/data.yaml has no 'test' split (it names ['val'])",
        "ask for a split the data.yaml names (`split`), or add that split to the data.yaml",
    ),
    "bad_upload": (
        "the upload holds no image files",
        "send images (.bmp, .jpeg, .jpg, .png, .tif, .tiff, .webp) with labels",
    ),
    "unauthorized": (
        "missing API key",
        "send the key configured in SMARTCASH_API_KEY in the X-API-Key header",
    ),
    "not_found": (
        "no model named 'best' is loaded",
        "POST /v1/models to load it; GET /v1/models lists",
    ),
    "conflict": (
        "job 3f2c0a3b6d0e4bb8a1b0c6f0d9e8a7b6 failed: dataset_empty: dataset 'demo' has no usable images: "
        "32 problem(s) reported; it has no result",
        "fix what the error says and submit a new validation (GET /v1/validations/{id} shows the error)",
    ),
    "model_conflict": (
        "model name 'best' is already bound to 'run7/best.safetensors' on cpu",
        "DELETE /v1/models/best first, or load under another name",
    ),
    "payload_too_large": (
        "upload of 300000000 bytes exceeds the 268435456-byte limit",
        "send fewer or smaller images per request, or raise SMARTCASH_MAX_UPLOAD_BYTES",
    ),
    "unsupported_media_type": (
        "upload needs Content-Type multipart/form-data, got 'application/json'",
        "send the files as multipart form fields (curl -F files=@image.jpg ...)",
    ),
    "invalid_request": (
        "the request does not match the schema (body.params.imgsz: Input should be less than or equal "
        "to 4096)",
        "see /docs for the expected fields and types",
    ),
    "bad_checkpoint_metadata": (
        "run7/best.safetensors: imgsz = 300: must be an integer from 32 to 4096, a multiple of the stride 32",
        "the named metadata field is missing, mistyped or outside YOLOv5's bounds; re-save the checkpoint "
        "with save_checkpoint() or `smartcash convert`",
    ),
    "queue_full": (
        "the queue already holds 8 waiting jobs",
        "retry after 5 s, or raise SMARTCASH_MAX_QUEUE",
    ),
    "too_many_streams": (
        "32 event streams are open on this replica",
        "retry after 5 s, poll GET /v1/validations/{id} instead, or raise SMARTCASH_MAX_SSE_CONNECTIONS",
    ),
}
_DEFAULT_CODE = {
    400: "path_rejected",
    401: "unauthorized",
    404: "not_found",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "queue_full",
}
_CODE_ALIASES = {"model_conflict": "conflict"}  # several examples of one code


def error_example(code: str) -> dict[str, Any]:
    message, fix = _TEXTS[code]
    error = {"code": _CODE_ALIASES.get(code, code), "message": message, "fix": fix}
    return {"error": error, "request_id": "5b0e9a4c2d7f4e1a9c3b6d8e0f1a2b3c"}


def error_responses(*statuses: int, examples: Mapping[int, str] | None = None) -> dict[int | str, Any]:
    """``responses=`` for a route: each status documented with :class:`ErrorResponse` and its own example
    (``examples`` picks another than the status's usual one, e.g. ``{400: "dataset_split_missing"}``)."""
    chosen = {**_DEFAULT_CODE, **(examples or {})}
    return {
        status: {
            "model": ErrorResponse,
            "content": {"application/json": {"example": error_example(chosen[status])}},
        }
        for status in statuses
    }
