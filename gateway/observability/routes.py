"""Health probes and the Prometheus endpoint: operator-facing, no MLflow data, no credentials needed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Response, get
from litestar.handlers import HTTPRouteHandler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


def health_handlers(ready: Callable[[], Awaitable[dict[str, Any]]]) -> list[HTTPRouteHandler]:
    @get("/health/live", opt={"public": True}, name="health live", include_in_schema=False)
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @get("/health", opt={"public": True}, name="health", include_in_schema=False, media_type="text/plain")
    async def health() -> str:
        return "OK"

    @get("/health/ready", opt={"public": True}, name="health ready", include_in_schema=False)
    async def readiness() -> Response[dict[str, Any]]:
        report = await ready()
        healthy = report["database"] == "ok" and all(v == "ok" for v in report["stores"].values())
        report["status"] = "ok" if healthy else "unavailable"
        return Response(report, status_code=200 if healthy else 503)

    @get("/metrics", opt={"public": True}, name="metrics", include_in_schema=False)
    async def metrics() -> Response[bytes]:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return [live, health, readiness, metrics]
