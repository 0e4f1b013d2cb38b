"""clipforge's Python SDK: sync and async clients for clipforge and the hosted AIML API.

    from clipforge.client import Client

    with Client() as client:  # $CLIPFORGE_BASE_URL, $CLIPFORGE_API_KEY (or $AIMLAPI_API_KEY)
        job = client.generate("a lighthouse at dusk, waves crashing", duration=5)
        job.wait(on_progress=lambda g: print(g.status, g.progress))
        job.download("lighthouse.mp4")

Imports nothing of the server: httpx and the standard library only.
"""

from clipforge.client._async_client import AsyncClient, AsyncGenerationHandle
from clipforge.client._base import RetryPolicy
from clipforge.client._client import Client, GenerationHandle
from clipforge.client.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ClipforgeClientError,
    ConflictError,
    GenerationFailed,
    InternalServerError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    WaitTimeout,
)
from clipforge.client.types import Generation, GenerationError, GenerationPage

__all__ = [
    "APIConnectionError", "APIStatusError", "APITimeoutError", "AsyncClient", "AsyncGenerationHandle",
    "AuthenticationError", "BadRequestError", "Client", "ClipforgeClientError", "ConflictError", "Generation",
    "GenerationError", "GenerationFailed", "GenerationHandle", "GenerationPage", "InternalServerError",
    "NotFoundError", "PayloadTooLargeError", "PermissionDeniedError", "RateLimitError", "RetryPolicy",
    "ServiceUnavailableError", "WaitTimeout",
]
