"""Health, readiness and the service registry: /healthz, /readyz, /v1/services, /metrics."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from contracts import subjects
from contracts.system import PingReply, PingRequest
from runtime.errors import NotFound
from services.gateway.adapters.fleet import Fleet
from services.gateway.auth import require
from services.gateway.domain.fleet import ServiceSummary, platform_ready, summarize
from services.gateway.domain.keys import PLATFORM, Access, Principal

router = APIRouter()
ReadPlatform = Annotated[Principal, Depends(require(PLATFORM, Access.READ))]


def _check_service(name: str) -> None:
    if name not in subjects.SERVICE_DOMAINS:
        raise NotFound(f"unknown service {name!r}; known: {', '.join(subjects.BACKEND_SERVICES)}")


def _fleet(request: Request) -> Fleet:
    fleet: Fleet = request.app.state.fleet
    return fleet


@router.get("/healthz", tags=["health"], summary="Liveness of the gateway itself (no auth)")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    tags=["health"],
    summary="Readiness: every service with its live replica count (no auth)",
)
async def readyz(request: Request) -> JSONResponse:
    try:
        summaries = summarize(await _fleet(request).poll())
    except Exception as exc:  # the bus itself is down: not ready, and say why
        return JSONResponse(
            {"status": "not_ready", "error": f"bus unavailable: {exc}"}, status_code=503
        )
    ready = platform_ready(summaries)
    body: dict[str, Any] = {
        "status": "ready" if ready else "not_ready",
        "services": {
            s.name: {"replicas": s.replicas, "ready": s.ready_replicas, "status": s.status}
            for s in summaries
        },
    }
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get(
    "/v1/services", tags=["services"], summary="Every service, its replicas and their health"
)
async def list_services(request: Request, _: ReadPlatform) -> dict[str, list[ServiceSummary]]:
    return {"services": summarize(await _fleet(request).poll())}


@router.get("/v1/services/{name}", tags=["services"], summary="One service and its replicas")
async def get_service(name: str, request: Request, _: ReadPlatform) -> ServiceSummary:
    _check_service(name)
    for summary in summarize(await _fleet(request).poll()):
        if summary.name == name:
            return summary
    raise AssertionError("summarize lists every back-end service")


@router.post(
    "/v1/services/{name}/ping", tags=["services"], summary="Round trip to one replica over the bus"
)
async def ping_service(name: str, request: Request, _: ReadPlatform) -> PingReply:
    _check_service(name)
    bus = request.app.state.bus
    reply: PingReply = await bus.request(
        subjects.ping(name),
        PingRequest(),
        PingReply,
        timeout_s=request.app.state.settings.request_timeout_s,
        service=name,
    )
    return reply


@router.get("/metrics", tags=["health"], summary="Prometheus metrics of this gateway process")
async def metrics(request: Request, _: ReadPlatform) -> Response:
    return Response(
        request.app.state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
    )
