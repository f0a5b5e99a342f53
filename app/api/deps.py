"""Dependencies shared by the routes: the loaded service and API-key checks."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from app.errors import AuthenticationError, ForbiddenError
from app.runtime import Runtime
from app.services.recognition import RecognitionService


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def get_service(runtime: Annotated[Runtime, Depends(get_runtime)]) -> RecognitionService:
    return runtime.service  # raises 503 problems while loading or after a failed start


# Declared through FastAPI's security helper so /docs offers an "Authorize" button.
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="One of FACEGATE_API_KEYS.")


def require_api_key(
    runtime: Annotated[Runtime, Depends(get_runtime)], presented: Annotated[str | None, Depends(api_key_header)]
) -> None:
    keys = runtime.settings.api_keys
    if not keys:
        return
    if not presented:
        raise AuthenticationError(
            "Missing API key.", hint="Send one of the configured keys in the X-API-Key header."
        )
    # Compare against every key so the time taken does not reveal which one matched.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(presented.encode(), key.encode())
    if not matched:
        raise ForbiddenError("Invalid API key.", hint="Check the X-API-Key header against the server's keys.")


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
ServiceDep = Annotated[RecognitionService, Depends(get_service)]
