"""Wiring of the gateway: FastAPI app, key store, fleet view, AWS operations, error shapes."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from contracts import topology
from runtime.bus import Bus
from runtime.errors import TrellisError
from runtime.metrics import ServiceMetrics
from runtime.service import package_version
from runtime.settings import SharedSettings
from runtime.topology import ensure_bucket, ensure_platform
from services.gateway.adapters.bootstrap import (
    load_or_create_credentials,
    load_or_create_sealing_key,
)
from services.gateway.adapters.fleet import Fleet
from services.gateway.adapters.key_store import KeyStore
from services.gateway.auth import AuthError
from services.gateway.aws import fraud_detector, kendra, sagemaker, secrets_manager
from services.gateway.aws.dispatcher import AwsOperations
from services.gateway.config import BootstrapSettings, Settings
from services.gateway.handlers import (
    aws,
    console,
    data_sources,
    events,
    fraud,
    images,
    indexes,
    keys,
    models,
    secrets,
    system,
    tuning,
)
from services.gateway.middleware import (
    BodyLimitMiddleware,
    BodyTooLarge,
    HotPathMiddleware,
    HotRoute,
    RequestContextMiddleware,
)
from services.gateway.problems import STATUS_BY_CODE, problem


def aws_operations() -> AwsOperations:
    operations = AwsOperations()
    fraud_detector.register(operations)
    kendra.register(operations)
    sagemaker.register(operations)
    secrets_manager.register(operations)
    return operations


_AWS_ROUTE = HotRoute("/", aws.aws_endpoint)
_FRAUD_ROUTE = HotRoute(f"{fraud.router.prefix}/{{operation}}", fraud.hot_call)
_FRAUD_PREFIX = f"{fraud.router.prefix}/"


def hot_route(method: str, path: str) -> HotRoute | None:
    """The routes served by HotPathMiddleware: the AWS endpoint and the fraud operations."""
    if method != "POST":
        return None
    if path == "/":
        return _AWS_ROUTE
    if path.startswith(_FRAUD_PREFIX) and path[len(_FRAUD_PREFIX) :] in fraud.OPERATIONS:
        return _FRAUD_ROUTE
    return None


def error_response(exc: Exception) -> JSONResponse | None:
    """The problem response for an error the gateway knows; None for anything else (a 500)."""
    if isinstance(exc, AuthError):
        headers = {"WWW-Authenticate": 'Bearer realm="trellis"'} if exc.status == 401 else None
        return problem(exc.status, exc.detail, headers=headers)
    if isinstance(exc, TrellisError):
        # Details are for machines; show only the ones that help a caller and leak nothing.
        shown: dict[str, Any] = {
            k: v for k, v in exc.details.items() if k in ("service", "kind", "id")
        }
        return problem(STATUS_BY_CODE.get(exc.code, 500), exc.message, code=exc.code.value, **shown)
    if isinstance(exc, RequestValidationError):
        errors = [
            {"location": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")}
            for e in exc.errors()
        ]
        return problem(400, "the request is invalid", errors=errors)
    if isinstance(exc, StarletteHTTPException):
        return problem(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))
    if isinstance(exc, BodyTooLarge):
        return problem(413, str(exc))
    return None


async def _on_error(_: Request, exc: Exception) -> JSONResponse:
    response = error_response(exc)
    if response is None:  # only registered for the types above
        raise exc
    return response


def create_app(*, bus: Bus, settings: Settings, key_store: KeyStore, fleet: Fleet) -> FastAPI:
    app = FastAPI(
        title="Trellis",
        version=package_version(),
        summary="Self-hosted search, fraud detection, custom images, tuning and inference.",
        docs_url="/docs",
        redoc_url=None,
        # The gateway's metrics are its own (Prometheus); FastAPI's OpenTelemetry hooks would
        # only read the environment on every request to find that nothing is configured.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    metrics = bus.metrics or ServiceMetrics("gateway")
    app.state.bus = bus
    app.state.settings = settings
    app.state.key_store = key_store
    app.state.fleet = fleet
    app.state.metrics = metrics
    app.state.aws_operations = aws_operations()

    # Added first, so innermost: behind the body limit, correlation ids and access log.
    app.add_middleware(HotPathMiddleware, route=hot_route, on_error=error_response)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        uploads={
            ("POST", "/v1/models"): settings.max_upload_bytes,
            ("PUT", "/v1/fraud/uploads/"): settings.max_upload_bytes,
            ("PUT", "/v1/index-uploads/"): settings.max_upload_bytes,
            ("PUT", "/v1/build-contexts/"): settings.max_upload_bytes,
        },
    )
    app.add_middleware(RequestContextMiddleware, metrics=metrics)

    for error_type in (
        AuthError,
        TrellisError,
        RequestValidationError,
        StarletteHTTPException,
        BodyTooLarge,
    ):
        app.add_exception_handler(error_type, _on_error)

    # Requests are matched against routes in this order: the per-request hot paths (predictions,
    # inference, queries) first. No two routers share a path prefix, so the order is otherwise free.
    app.include_router(fraud.router)
    app.include_router(models.router)
    app.include_router(indexes.router)
    app.include_router(aws.router)
    app.include_router(system.router)
    app.include_router(keys.router)
    app.include_router(indexes.uploads)
    app.include_router(data_sources.router)
    app.include_router(secrets.router)
    for router in images.ROUTERS:
        app.include_router(router)
    app.include_router(tuning.router)
    app.include_router(events.router)
    app.include_router(console.router)
    app.include_router(console.home)
    return app


async def build(
    bus: Bus, settings: Settings, shared: SharedSettings, bootstrap: BootstrapSettings | None = None
) -> FastAPI:
    """The gateway on an already-connected bus (tests inject theirs)."""
    await ensure_platform(bus.js, shared.stream_replicas)
    keys_bucket = await ensure_bucket(bus.js, topology.GATEWAY_API_KEYS, shared.stream_replicas)
    registry = await ensure_bucket(bus.js, topology.SERVICE_REGISTRY, shared.stream_replicas)
    key_store = KeyStore(
        keys_bucket,
        load_or_create_sealing_key(shared.data_dir, settings.sealing_key),
        load_or_create_credentials(shared.data_dir, bootstrap),
    )
    return create_app(
        bus=bus,
        settings=settings,
        key_store=key_store,
        fleet=Fleet(bus, registry, settings.health_poll_s),
    )
