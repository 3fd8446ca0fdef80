"""ASGI middleware: body size limit, correlation ids, access log, HTTP metrics, hot paths."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prometheus_client import Counter, Histogram
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts.envelope import new_message_id
from runtime.logs import correlation_id_var
from runtime.metrics import LATENCY_BUCKETS, ServiceMetrics

log = logging.getLogger("trellis.gateway.access")
CORRELATION_HEADER = b"x-correlation-id"
_CORRELATION = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds {limit} bytes")
        self.limit = limit


class BodyLimitMiddleware:
    """413 for bodies over the limit: at once from Content-Length, or while streaming.

    `uploads` raises the limit for named (method, path) pairs, such as model uploads; a path
    ending in "/" names every path below it.
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int, uploads: dict[tuple[str, str], int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.uploads = uploads or {}

    def _limit(self, method: str, path: str) -> int:
        for (upload_method, upload_path), limit in self.uploads.items():
            if method == upload_method and (
                path == upload_path or (upload_path.endswith("/") and path.startswith(upload_path))
            ):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope["method"], scope["path"])
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await _send_413(send, limit)
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited_receive, send)


async def _send_413(send: Send, limit: int) -> None:
    body = (
        b'{"type":"about:blank","title":"Content Too Large","status":413,'
        b'"detail":"request body exceeds ' + str(limit).encode() + b' bytes"}'
    )
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestContextMiddleware:
    """Sets the correlation id (from `X-Correlation-Id` or new), logs and measures each request."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.requests = Counter(
            "trellis_http_requests",
            "HTTP requests by method, route and status.",
            ["method", "route", "status"],
            registry=metrics.registry,
        )
        self.seconds = Histogram(
            "trellis_http_request_duration_seconds",
            "HTTP request latency by route.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=metrics.registry,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        supplied = dict(scope["headers"]).get(CORRELATION_HEADER, b"")
        cid = supplied.decode() if _CORRELATION.match(supplied) else new_message_id()
        token = correlation_id_var.set(cid)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (CORRELATION_HEADER, cid.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")
            self.requests.labels(scope["method"], route, str(status)).inc()
            self.seconds.labels(scope["method"], route).observe(elapsed)
            principal = getattr(scope.get("state", {}).get("principal"), "key_id", None)
            log.info(
                "%s %s %d",
                scope["method"],
                route,
                status,
                extra={"duration_ms": round(elapsed * 1000, 2), "key_id": principal},
            )
            correlation_id_var.reset(token)


@dataclass(frozen=True)
class HotRoute:
    """A per-request hot path: `path` labels its metrics and access log as its route would."""

    path: str
    endpoint: Callable[[Request], Awaitable[Response]]


class HotPathMiddleware:
    """Serves the per-request hot paths (predictions, the AWS endpoint) without FastAPI's routing
    and dependency resolution, which cost several times the handler's own work per request. The routes
    stay declared in FastAPI (OpenAPI, fallback); errors get the responses the app gives them.

    Installed innermost, inside the body limit, correlation id and access log middleware.
    """

    def __init__(
        self,
        app: ASGIApp,
        route: Callable[[str, str], HotRoute | None],
        on_error: Callable[[Exception], Response | None],
    ) -> None:
        self.app = app
        self.route = route
        self.on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hot = self.route(scope["method"], scope["path"]) if scope["type"] == "http" else None
        if hot is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = hot
        request = Request(scope, receive)
        try:
            response = await hot.endpoint(request)
        except Exception as exc:
            handled = self.on_error(exc)
            if handled is None:
                raise
            response = handled
        await response(scope, receive, send)
