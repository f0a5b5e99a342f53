"""The FastAPI application: `create_app()` wires settings, routes, errors and middleware."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from app.api.deps import require_api_key
from app.api.routes import health, identities, recognition
from app.errors import install_error_handlers
from app.inputs import RequestSizeLimitMiddleware
from app.metrics import MetricsMiddleware
from app.runtime import Runtime
from app.settings import Settings, get_settings
from models.pipeline import FacePipeline

logger = logging.getLogger("app")


def create_app(settings: Settings | None = None, *, pipeline: FacePipeline | None = None) -> FastAPI:
    """Build the service. `pipeline` reuses already loaded models (tests share one)."""
    settings = settings or get_settings()
    runtime = Runtime(settings, pipeline)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime.start()
        yield
        runtime.close()

    app = FastAPI(
        title="facegate",
        version="0.1.0",
        summary="Self-hosted face recognition: enroll people, identify them in new photos.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    install_error_handlers(app)

    app.include_router(health.router)
    protected = [Depends(require_api_key)]
    app.include_router(health.metrics_router, dependencies=protected)
    app.include_router(recognition.router, dependencies=protected)
    app.include_router(identities.router, dependencies=protected)

    # Outermost last: metrics see every response, including 413s from the size limit.
    app.add_middleware(RequestSizeLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(MetricsMiddleware, metrics=runtime.metrics)
    return app
