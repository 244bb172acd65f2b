"""Health probes and the Prometheus endpoint: operator-facing, no MLflow data, no credentials needed.

- `/health/live`: the process answers (the liveness probe).
- `/health/ready`: this replica should get requests: database, schema, policy, not draining (health.py).
- `/health/stores`: each store's last health check; always 200, a down store never makes a replica unready.
- `/health`: `OK`, as MLflow answers it.
"""

from __future__ import annotations

from typing import Any

from litestar import Response, get
from litestar.handlers import HTTPRouteHandler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.observability.health import Readiness, StoreHealth


def health_handlers(readiness: Readiness, stores: StoreHealth) -> list[HTTPRouteHandler]:
    @get("/health/live", opt={"public": True}, name="health live", include_in_schema=False)
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @get("/health", opt={"public": True}, name="health", include_in_schema=False, media_type="text/plain")
    async def health() -> str:
        return "OK"

    @get("/health/ready", opt={"public": True}, name="health ready", include_in_schema=False)
    async def ready() -> Response[dict[str, Any]]:
        ok, report = await readiness.report()
        return Response(report, status_code=200 if ok else 503)

    @get("/health/stores", opt={"public": True}, name="health stores", include_in_schema=False)
    async def store_health() -> dict[str, Any]:
        return stores.report()

    @get("/metrics", opt={"public": True}, name="metrics", include_in_schema=False)
    async def metrics() -> Response[bytes]:
        # As a header: given as the media type, Litestar would add a second `; charset=utf-8` to it.
        return Response(generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return [live, health, ready, store_health, metrics]
