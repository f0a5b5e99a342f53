"""The FastAPI application: `create_app()` wires settings, routes, errors and middleware."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from app.api.deps import require_api_key
from app.api.routes import health, identities, recognition
from app.errors import install_error_handlers
from app.inputs import RequestSizeLimitMiddleware
from app.metrics import MetricsMiddleware
from app.runtime import Runtime
from app.settings import Settings, get_settings
from models.pipeline import FacePipeline

logger = logging.getLogger("app")


def install_offline_docs(app: FastAPI) -> None:
    """Serve Swagger UI at /docs from the swagger-ui-bundle-v2 wheel instead of a CDN."""
    app.mount("/docs-static", StaticFiles(directory=swagger_ui_path), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title=f"{app.title} - API",
            swagger_js_url="/docs-static/swagger-ui-bundle.js",
            swagger_css_url="/docs-static/swagger-ui.css",
            swagger_favicon_url="/docs-static/favicon-32x32.png",
        )


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
        docs_url=None,  # served below from local files, so /docs works without internet
    )
    app.state.runtime = runtime
    install_error_handlers(app)

    install_offline_docs(app)
    app.include_router(health.router)
    protected = [Depends(require_api_key)]
    app.include_router(health.metrics_router, dependencies=protected)
    app.include_router(recognition.router, dependencies=protected)
    app.include_router(identities.router, dependencies=protected)

    # Outermost last: metrics see every response, including 413s from the size limit.
    app.add_middleware(RequestSizeLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(MetricsMiddleware, metrics=runtime.metrics)
    return app
