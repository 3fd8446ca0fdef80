"""A service process: handlers and consumers on the bus, registry heartbeat, health, draining."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
from collections.abc import Awaitable, Callable, Coroutine
from importlib import metadata
from typing import Any, TypeVar

from nats.js.kv import KeyValue

from contracts import subjects, topology
from contracts.envelope import EnvelopeMeta, Message, utc_now
from contracts.system import HealthPoll, PingReply, PingRequest, RecentError, ServiceHealth
from contracts.topology import ConsumerSpec
from runtime.bus import Bus, EventHandler, RequestHandler
from runtime.consumer import DurableConsumer
from runtime.heap import freeze_heap
from runtime.logs import RECENT_ERRORS
from runtime.metrics import ServiceMetrics
from runtime.ops_http import OpsServer, json_response
from runtime.settings import ServiceSettings, SharedSettings
from runtime.tasks import cancel_and_wait
from runtime.topology import ensure_bucket, ensure_platform

M = TypeVar("M", bound=Message)
log = logging.getLogger("trellis.service")
ReadinessCheck = Callable[[], Awaitable[None]]


def package_version() -> str:
    try:
        return metadata.version("trellis")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def new_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


class Service:
    """Register handlers and consumers, then `start()`; `stop()` drains them.

    Works on an injected, already-connected Bus so tests run the real service in-process.
    """

    def __init__(
        self, name: str, bus: Bus, settings: ServiceSettings, shared: SharedSettings
    ) -> None:
        self.name = name
        self.settings = settings
        self.shared = shared
        self.instance_id = settings.instance_id or new_instance_id()
        self.version = package_version()
        self.metrics = bus.metrics or ServiceMetrics(name)
        self.bus = bus
        bus.metrics = self.metrics
        bus.service = name
        bus.source = f"{name}/{self.instance_id}"
        self.started_at = utc_now()
        self.ready = False
        self.checks: dict[str, str] = {}
        self._readiness: dict[str, ReadinessCheck] = {}
        self._handlers: list[tuple[str, type[Any], RequestHandler[Any]]] = []
        self._consumers: list[DurableConsumer[Any]] = []
        self._details: Callable[[], dict[str, Any]] = dict
        self._background: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._registry: KeyValue | None = None
        self._ops: OpsServer | None = None

    # -- wiring ----------------------------------------------------------------------------

    def handle(self, subject: str, request_type: type[M], handler: RequestHandler[M]) -> None:
        """Answer `subject`; replicas share the requests (queue group)."""
        self._handlers.append((subject, request_type, handler))

    def consume(
        self, spec: ConsumerSpec, event_type: type[M], handler: EventHandler[M], **options: Any
    ) -> None:
        self._consumers.append(DurableConsumer(self.bus, spec, event_type, handler, **options))

    def readiness_check(self, name: str, check: ReadinessCheck) -> None:
        """`check` raises when the service cannot do its work (a missing tool, a full disk)."""
        self._readiness[name] = check

    def describe(self, details: Callable[[], dict[str, Any]]) -> None:
        """Add service-specific state to this replica's health reports."""
        self._details = details

    def background(self, loop: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run `loop` while the service runs; it is cancelled on stop."""
        self._background.append(loop)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        await ensure_platform(self.bus.js, self.shared.stream_replicas)
        self._registry = await ensure_bucket(
            self.bus.js, topology.SERVICE_REGISTRY, self.shared.stream_replicas
        )
        await self.bus.serve(
            subjects.ping(self.name), PingRequest, self._ping, queue=subjects.queue_group(self.name)
        )
        await self.bus.serve(subjects.HEALTH_POLL, HealthPoll, self._health_poll)
        for subject, request_type, handler in self._handlers:
            await self.bus.serve(
                subject, request_type, handler, queue=subjects.queue_group(self.name)
            )
        for consumer in self._consumers:
            await consumer.start()
        for loop in self._background:
            self._tasks.append(asyncio.create_task(loop()))
        if self.settings.ops_port:
            self._ops = OpsServer(
                {"/healthz": self._live, "/readyz": self._readyz, "/metrics": self._metrics},
                self.settings.ops_host,
                self.settings.ops_port,
            )
            await self._ops.start()
        await self._run_checks()
        self._tasks.append(asyncio.create_task(self._heartbeat()))
        log.info(
            "%s started",
            self.name,
            extra={"instance_id": self.instance_id, "version": self.version},
        )

    async def stop(self) -> None:
        """Leave the registry, stop taking work, finish what is in flight, close."""
        self.ready = False
        if self._registry is not None:
            with contextlib.suppress(Exception):
                await self._registry.delete(self._registry_key)
        drain = self.settings.drain_timeout_s
        await asyncio.gather(
            self.bus.stop_serving(drain),
            *(c.stop(drain) for c in self._consumers),
            return_exceptions=True,
        )
        await cancel_and_wait(self._tasks)
        if self._ops is not None:
            await self._ops.stop()
        log.info("%s stopped", self.name, extra={"instance_id": self.instance_id})

    async def run_until_signalled(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        freeze_heap()  # what startup loaded lasts: keep it out of full collections
        await stop.wait()
        log.info("%s draining", self.name)
        await self.stop()

    # -- health ----------------------------------------------------------------------------

    @property
    def _registry_key(self) -> str:
        return f"{self.name}.{self.instance_id}"

    async def _run_checks(self) -> None:
        checks = {"nats": "ok" if self.bus.nc.is_connected else "disconnected"}
        for name, check in self._readiness.items():
            try:
                await asyncio.wait_for(check(), timeout=5)
                checks[name] = "ok"
            except Exception as exc:
                checks[name] = str(exc) or type(exc).__name__
        self.checks = checks
        self.ready = all(v == "ok" for v in checks.values())

    async def health(self) -> ServiceHealth:
        consumers = []
        for consumer in self._consumers:
            with contextlib.suppress(Exception):
                consumers.append(await consumer.status())
        return ServiceHealth(
            service=self.name,
            instance_id=self.instance_id,
            version=self.version,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=self.started_at,
            ready=self.ready,
            checks=self.checks,
            in_flight=self.bus.in_flight,
            handled=self.bus.handled,
            failed=self.bus.failed,
            consumers=consumers,
            details=self._details(),
            recent_errors=[RecentError.model_validate(e) for e in RECENT_ERRORS.snapshot()],
        )

    async def _heartbeat(self) -> None:
        while True:
            try:
                await self._run_checks()
                health = await self.health()
                assert self._registry is not None
                await self._registry.put(self._registry_key, health.model_dump_json().encode())
                self.metrics.in_flight.labels(self.name).set(self.bus.in_flight)
            except Exception:
                log.warning("heartbeat failed", exc_info=True)
            await asyncio.sleep(self.settings.heartbeat_s)

    async def _ping(self, _: PingRequest, __: EnvelopeMeta) -> PingReply:
        return PingReply(service=self.name, instance_id=self.instance_id, version=self.version)

    async def _health_poll(self, _: HealthPoll, __: EnvelopeMeta) -> ServiceHealth:
        return await self.health()

    async def _live(self) -> tuple[int, str, bytes]:
        return json_response(200, {"status": "ok", "service": self.name})

    async def _readyz(self) -> tuple[int, str, bytes]:
        health = await self.health()
        return json_response(200 if health.ready else 503, health.model_dump(mode="json"))

    async def _metrics(self) -> tuple[int, str, bytes]:
        return 200, "text/plain; version=0.0.4; charset=utf-8", self.metrics.render()
