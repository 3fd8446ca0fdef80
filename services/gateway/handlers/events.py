"""Server-sent events for the console: a resource changed (a sync, a job, a build, a model).

Each topic is a KV key pattern of a service's bucket; its watch is a JetStream consumer, so a
change reaches the browser as it is written, with no polling. The event carries the changed
key only: the page reads the resource again through the REST API, under the key's scopes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import nats.errors
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from contracts import topology
from runtime.errors import NotFound, ValidationFailed
from services.gateway.auth import require
from services.gateway.domain.keys import Access

router = APIRouter(tags=["console"])
HEARTBEAT_S = 15.0
STREAM_LIFETIME_S = 600.0  # the browser reconnects by itself; long-lived streams get refreshed
MAX_STREAMS = 256
_ARGUMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


@dataclass(frozen=True)
class Topic:
    area: str
    bucket: str
    keys: Callable[[str | None], str]
    strip: str  # removed from the front of each key sent


TOPICS: dict[str, Topic] = {
    "sources": Topic("crawler", topology.CRAWL_SOURCES.name, lambda a: "source.>", "source."),
    "syncs": Topic(
        "crawler",
        topology.CRAWL_SOURCES.name,
        lambda a: f"job.{a}.>" if a else "job.>",
        "job.",
    ),
    "tuning": Topic(
        "tuner", topology.TUNE_JOBS.name, lambda a: f"job.{a}" if a else "job.>", "job."
    ),
    "builds": Topic(
        "image_builder",
        topology.IMAGE_RESOURCES.name,
        lambda a: f"build.{a}" if a else "build.>",
        "build.",
    ),
    "images": Topic("image_builder", topology.IMAGE_RESOURCES.name, lambda a: ">", ""),
    "fraud": Topic("fraud", topology.FRAUD_RESOURCES.name, lambda a: ">", ""),
    "models": Topic("inference", topology.INFERENCE_MODELS.name, lambda a: ">", ""),
}


def parse_topic(raw: str) -> tuple[Topic, str | None]:
    name, _, argument = raw.partition(":")
    topic = TOPICS.get(name)
    if topic is None:
        raise NotFound(f"unknown topic {name!r}; topics: {sorted(TOPICS)}")
    if argument and not _ARGUMENT.match(argument):
        raise ValidationFailed("a topic argument is 1-128 letters, digits, '_' or '-'")
    return topic, argument or None


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


@router.get(
    "/v1/events",
    summary="Server-sent events: `change` with the key of each resource of a topic that changes",
)
async def events(request: Request, topic: str) -> StreamingResponse:
    chosen, argument = parse_topic(topic)
    await require(chosen.area, Access.READ)(request)
    state = request.app.state
    if getattr(state, "event_streams", 0) >= MAX_STREAMS:
        raise ValidationFailed("too many open event streams; try again shortly")
    try:
        kv = await state.bus.js.key_value(chosen.bucket)
    except Exception:
        kv = None  # the owning service has not created its bucket yet: only heartbeats
    return StreamingResponse(
        _stream(request, kv, chosen, argument),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _stream(
    request: Request, kv: Any, topic: Topic, argument: str | None
) -> AsyncIterator[bytes]:
    state = request.app.state
    state.event_streams = getattr(state, "event_streams", 0) + 1
    watcher = None
    try:
        if kv is not None:
            watcher = await kv.watch(topic.keys(argument), include_history=False)
        # Only once the watch exists: a page that reads its data on `ready` misses no change.
        yield b"retry: 2000\n\n" + sse("ready", {})
        loop = asyncio.get_running_loop()
        ends = loop.time() + STREAM_LIFETIME_S
        initial = True
        while loop.time() < ends and not await request.is_disconnected():
            if watcher is None:
                await asyncio.sleep(HEARTBEAT_S)
                yield b": keep-alive\n\n"
                continue
            try:
                entry = await watcher.updates(timeout=HEARTBEAT_S)
            except nats.errors.TimeoutError:
                yield b": keep-alive\n\n"
                continue
            if entry is None:
                initial = False  # what follows changed after the page was loaded
                continue
            if not initial:
                key = entry.key.removeprefix(topic.strip)
                deleted = entry.operation is not None
                yield sse("change", {"key": key, "deleted": deleted})
    finally:
        state.event_streams -= 1
        if watcher is not None:
            with contextlib.suppress(Exception):
                await watcher.stop()
