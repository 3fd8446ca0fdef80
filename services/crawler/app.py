"""Wiring of the crawler service: stores, the frontier consumer, data source operations."""

from __future__ import annotations

from contracts import subjects, topology
from contracts.crawl import CRAWL_OPERATIONS, CrawlResult, FrontierUrl
from contracts.envelope import EnvelopeMeta, Message
from runtime.bus import Bus, RequestHandler
from runtime.kv import ResourceStore
from runtime.service import Service
from runtime.settings import SharedSettings
from runtime.topology import ensure_bucket, ensure_stream
from services.crawler.config import Settings
from services.crawler.domain.networks import NetworkPolicy
from services.crawler.domain.records import DataSourceRecord, SyncJob
from services.crawler.engine import CrawlEngine
from services.crawler.operations import CrawlerOperations


def _handler(operation: object) -> RequestHandler[Message]:
    async def handle(request: Message, _: EnvelopeMeta) -> CrawlResult:
        return CrawlResult(output=await operation(request))  # type: ignore[operator]

    return handle


async def build(bus: Bus, settings: Settings, shared: SharedSettings) -> Service:
    service = Service("crawler", bus, settings, shared)
    replicas = shared.stream_replicas
    await ensure_stream(bus.js, topology.CRAWL_FRONTIER, replicas)
    await ensure_stream(bus.js, topology.DOCUMENTS, replicas)
    sources_bucket = await ensure_bucket(bus.js, topology.CRAWL_SOURCES, replicas)
    pages = await ensure_bucket(bus.js, topology.CRAWL_PAGES, replicas)
    seen = await ensure_bucket(bus.js, topology.CRAWL_SEEN, replicas)
    sources = ResourceStore(sources_bucket, DataSourceRecord, "data source", prefix="source.")
    jobs = ResourceStore(sources_bucket, SyncJob, "sync job", prefix="job.")
    engine = CrawlEngine(
        bus, sources, jobs, pages, seen, NetworkPolicy.from_setting(settings.allowed_networks)
    )
    operations = CrawlerOperations(bus, sources, engine)
    for operation in CRAWL_OPERATIONS:
        service.handle(
            subjects.crawl_operation(operation.bus_operation),
            operation.request,
            _handler(getattr(operations, operation.bus_operation)),
        )
    frontier = topology.CRAWL_FRONTIER_CONSUMER.model_copy(
        update={"ack_wait_s": settings.frontier_ack_wait_s}
    )
    service.consume(
        frontier,
        FrontierUrl,
        engine.handle,
        concurrency=settings.concurrency,
        batch=settings.concurrency,
    )
    service.background(
        lambda: engine.schedule_loop(settings.schedule_check_s, settings.stall_after_s)
    )
    return service
