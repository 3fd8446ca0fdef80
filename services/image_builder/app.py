"""Wiring of the image_builder service: stores, SageMaker operations, the build and validation queues."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from contracts import subjects, topology
from contracts.envelope import EnvelopeMeta, Message
from contracts.images import (
    REST_OPERATIONS,
    SAGEMAKER_OPERATIONS,
    Build,
    BuildCancelRequested,
    BuildQueued,
    CancelBuild,
    DescribeBuild,
    ImageResult,
    ListBuilds,
    StartBuild,
    VersionSubmitted,
)
from runtime.bus import Bus, RequestHandler
from runtime.kv import ResourceStore
from runtime.object_store import open_object_store
from runtime.service import Service
from runtime.settings import SharedSettings
from runtime.topology import ensure_bucket, ensure_stream
from services.image_builder.adapters.registry import ImageReader
from services.image_builder.adapters.tools import Registry, ToolMissing, check_tools, tool_env
from services.image_builder.builds import Builder
from services.image_builder.config import Settings
from services.image_builder.operations import ImageOperations, Stores
from services.image_builder.validation import VersionValidator

log = logging.getLogger("trellis.image_builder")


def _handler(operation: Any) -> RequestHandler[Message]:
    async def handle(request: Message, _: EnvelopeMeta) -> ImageResult:
        return ImageResult(output=await operation(request))

    return handle


async def build(bus: Bus, settings: Settings, shared: SharedSettings) -> Service:
    service = Service("image_builder", bus, settings, shared)
    replicas = shared.stream_replicas
    await ensure_stream(bus.js, topology.IMAGE_WORK, replicas)
    await ensure_stream(bus.js, topology.IMAGE_BUILD_LOGS, replicas)
    kv = await ensure_bucket(bus.js, topology.IMAGE_RESOURCES, replicas)
    contexts = await open_object_store(
        bus.js, topology.IMAGE_CONTEXTS, "Build contexts uploaded through the gateway", replicas
    )
    logs = await open_object_store(bus.js, topology.IMAGE_LOGS, "Each build's whole log", replicas)
    stores = Stores(kv)
    builds = ResourceStore(kv, Build, "build", prefix="build.")

    work_dir = (settings.work_dir or shared.data_dir / "image_builder").resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    env = tool_env(work_dir)
    registry = Registry(
        settings.registry,
        settings.registry_tls_verify,
        settings.registry_username,
        settings.registry_password,
    )
    authfile = registry.write_authfile(work_dir / "auth.json")
    try:
        check_tools()
    except ToolMissing as exc:
        # The resources still work; builds and validation fail with this reason, /readyz says it.
        log.error("image builds are unavailable: %s", exc)

    async def tools_ready() -> None:
        check_tools()

    service.readiness_check("tools", tools_ready)

    operations = ImageOperations(
        bus,
        stores,
        region=settings.region,
        account_id=settings.account_id,
        rstudio_version=settings.rstudio_version,
    )
    for operation in (*SAGEMAKER_OPERATIONS, *REST_OPERATIONS):
        service.handle(
            subjects.image_operation(operation.bus_operation),
            operation.request,
            _handler(getattr(operations, operation.bus_operation)),
        )

    builder = Builder(
        bus,
        builds,
        contexts,
        logs,
        registry,
        work_dir=work_dir,
        env=env,
        authfile=authfile,
        storage_driver=settings.storage_driver,
        timeout_s=settings.build_timeout_s,
        max_context_bytes=settings.max_context_mb * 2**20,
        max_log_bytes=settings.max_log_bytes,
    )

    async def start(r: StartBuild, _: EnvelopeMeta) -> Message:
        return await builder.start(r)

    async def describe(r: DescribeBuild, _: EnvelopeMeta) -> Message:
        return await builder.describe(r)

    async def cancel(r: CancelBuild, _: EnvelopeMeta) -> Message:
        return await builder.cancel(r)

    async def list_builds(r: ListBuilds, _: EnvelopeMeta) -> Message:
        return await builder.list(r)

    service.handle(subjects.image_operation("start_build"), StartBuild, start)
    service.handle(subjects.image_operation("describe_build"), DescribeBuild, describe)
    service.handle(subjects.image_operation("cancel_build"), CancelBuild, cancel)
    service.handle(subjects.image_operation("list_builds"), ListBuilds, list_builds)
    service.consume(
        topology.IMAGE_BUILD_CONSUMER,
        BuildQueued,
        builder.handle,
        concurrency=settings.max_concurrent_builds,
        batch=settings.max_concurrent_builds,
    )
    validator = VersionValidator(
        stores.versions,
        ImageReader(registry, authfile, env, work_dir / "inspect"),
        architecture=settings.platform_architecture,
        rstudio_version=settings.rstudio_version,
    )
    service.consume(
        topology.IMAGE_VALIDATION_CONSUMER,
        VersionSubmitted,
        validator.handle,
        concurrency=2,
        batch=2,
    )

    async def follow_cancellations() -> None:
        # No queue group: the replica running the build may be any of them.
        subscription = await bus.subscribe(
            subjects.IMAGE_BUILD_CANCEL_REQUESTED, BuildCancelRequested, builder.on_cancel_requested
        )
        try:
            await asyncio.Event().wait()
        finally:
            await subscription.unsubscribe()

    service.background(follow_cancellations)
    return service
