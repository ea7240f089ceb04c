"""What operators and load balancers ask of a running process.

- `GET /healthz`: the process is up (liveness); touches nothing else.
- `GET /readyz`: the database answers and every migration is applied (readiness); 503 with the
  reason otherwise, so a load balancer sends no visitors to a replica that cannot serve them.
- `GET /metrics`: Prometheus text; the outbox queue depth is counted at scrape time.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import func, select, text

from slackrouter.adapters.db.migrate import pending_revisions
from slackrouter.adapters.db.models import OutboxItem
from slackrouter.bootstrap import Runtime
from slackrouter.observability import render_metrics

log = logging.getLogger(__name__)


def operations_router(runtime: Runtime) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        try:
            async with runtime.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
            pending = await pending_revisions(runtime.engine)
        except Exception as exc:
            log.warning("not ready: the database is unreachable (%s)", type(exc).__name__)
            return JSONResponse(
                {"status": "unavailable", "database": f"unreachable: {type(exc).__name__}"},
                status_code=503,
            )
        if pending:
            return JSONResponse(
                {
                    "status": "unavailable",
                    "database": f"migrations pending: {', '.join(sorted(pending))}; "
                    "run `slackrouter migrate`",
                },
                status_code=503,
            )
        return JSONResponse({"status": "ok", "database": "ok"})

    @router.get("/metrics")
    async def metrics() -> Response:
        async with runtime.sessions() as session:
            rows = await session.execute(
                select(OutboxItem.kind, func.count())
                .where(OutboxItem.status == "pending")
                .group_by(OutboxItem.kind)
            )
            depth = {str(kind): int(count) for kind, count in rows}
        process = runtime.worker_process
        others = [process.metrics] if process is not None and process.metrics else []
        return Response(render_metrics(depth, others), media_type=CONTENT_TYPE_LATEST)

    return router
