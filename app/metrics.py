"""Prometheus metrics, one registry per app instance (tests build several apps)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.routing import Match

from models.pipeline import Analysis

LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "facegate_http_requests_total",
            "HTTP requests by route template, method and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "facegate_http_request_duration_seconds",
            "HTTP request latency by route template and method.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.faces_detected = Counter(
            "facegate_faces_detected_total", "Faces found by the detector, by route.", ["route"], registry=self.registry
        )
        self.inference = Histogram(
            "facegate_inference_seconds",
            "Model time per image by pipeline stage (detect, align, embed).",
            ["stage"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.identifications = Counter(
            "facegate_identifications_total",
            "Faces identified, by decision (known or unknown).",
            ["decision"],
            registry=self.registry,
        )
        self.gallery_faces = Gauge("facegate_gallery_faces", "Faces in the gallery.", registry=self.registry)
        self.gallery_identities = Gauge(
            "facegate_gallery_identities", "Identities in the gallery.", registry=self.registry
        )

    def track_gallery(self, count_faces: Callable[[], int], count_identities: Callable[[], int]) -> None:
        """Read the gallery size at scrape time."""
        self.gallery_faces.set_function(count_faces)
        self.gallery_identities.set_function(count_identities)

    def observe_analysis(self, route: str, analysis: Analysis) -> None:
        self.faces_detected.labels(route=route).inc(len(analysis.faces))
        for stage, milliseconds in analysis.timings_ms.items():
            self.inference.labels(stage=stage).observe(milliseconds / 1000)

    def observe_identifications(self, faces: list[dict[str, Any]]) -> None:
        for face in faces:
            self.identifications.labels(decision="known" if face["identity"] else "unknown").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Count requests and latency per route template (not raw path, to bound label values)."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = _route_template(scope)
            method = scope.get("method", "")
            self.metrics.requests.labels(method=method, route=route, status=str(status)).inc()
            self.metrics.latency.labels(method=method, route=route).observe(time.perf_counter() - started)


def _route_template(scope: dict) -> str:
    # The router stores the matched route in the scope. Matching again below finds only the
    # app's own routes: FastAPI 0.165 keeps each included router as one entry without a path.
    matched = getattr(scope.get("route"), "path", None)
    if isinstance(matched, str):
        return matched
    app = scope.get("app")
    router = getattr(app, "router", None)
    for route in getattr(router, "routes", []):
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return getattr(route, "path", "unmatched")
    return "unmatched"
