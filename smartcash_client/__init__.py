"""HTTP client of the SmartCash validation service, for training pipelines (depends on httpx only).

    from smartcash_client import Client

    with Client("http://validator:8000", api_key="...") as client:
        for epoch in range(epochs):
            train_one_epoch(); save(f"exp7/epoch{epoch}.safetensors")
            result = client.validate(checkpoint=f"exp7/epoch{epoch}.safetensors", dataset="banknotes",
                                     tags={"run": "exp7", "epoch": epoch})
            print(epoch, result.map50_95)
        print(client.run("exp7").best)
"""

from smartcash_client.aio import AsyncClient
from smartcash_client.client import Client, ProgressCallback
from smartcash_client.errors import (
    ApiError,
    BadRequest,
    Conflict,
    JobFailed,
    NotFound,
    QueueFull,
    ServerError,
    SmartCashClientError,
    TransportError,
    Unauthorized,
    Unprocessable,
    WaitTimeout,
)
from smartcash_client.models import (
    ClassMetrics,
    Comparison,
    Event,
    Job,
    MetricsView,
    ResultWarning,
    RunEntry,
    RunHistory,
    ValidationResult,
)
from smartcash_client.webhooks import verify_signature

__all__ = [
    "ApiError",
    "AsyncClient",
    "BadRequest",
    "ClassMetrics",
    "Client",
    "Comparison",
    "Conflict",
    "Event",
    "Job",
    "JobFailed",
    "MetricsView",
    "NotFound",
    "ProgressCallback",
    "QueueFull",
    "ResultWarning",
    "RunEntry",
    "RunHistory",
    "ServerError",
    "SmartCashClientError",
    "TransportError",
    "Unauthorized",
    "Unprocessable",
    "ValidationResult",
    "WaitTimeout",
    "verify_signature",
]
