"""GET /healthz (liveness), /readyz (models loaded, gallery reachable), /metrics (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from app.api.deps import RuntimeDep
from app.schemas import Health, Readiness

router = APIRouter(tags=["health"])
# /metrics needs an API key when keys are configured; the probes never do.
metrics_router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> dict:
    """Report that the process is up and serving HTTP."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    """Report whether the models are loaded and the gallery responds (503 with the reason if not)."""
    embedder = runtime.settings.embedder
    if not runtime.ready:
        detail = str(runtime.load_error) if runtime.load_error else "models are loading"
        return JSONResponse({"ready": False, "embedder": embedder, "detail": detail}, status_code=503)
    store = runtime.service.store
    try:
        await run_in_threadpool(store.ping)
        faces = await run_in_threadpool(store.count_faces)
    except Exception as error:  # any store failure means not ready; the reason is reported
        return JSONResponse(
            {"ready": False, "embedder": embedder, "detail": f"gallery unreachable: {error}"}, status_code=503
        )
    return JSONResponse({"ready": True, "embedder": embedder, "gallery_faces": faces})


@metrics_router.get("/metrics", response_class=Response)
async def metrics(runtime: RuntimeDep) -> Response:
    """Prometheus text exposition."""
    return Response(runtime.metrics.render(), media_type=CONTENT_TYPE_LATEST)
