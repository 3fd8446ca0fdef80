"""Wiring of the crawler service: stores, the frontier consumer, data source and secret operations."""

from __future__ import annotations

from pathlib import Path

from contracts import subjects, topology
from contracts.crawl import CRAWL_OPERATIONS, SECRET_OPERATIONS, CrawlResult, FrontierUrl
from contracts.envelope import EnvelopeMeta, Message
from contracts.index import IndexDropped
from runtime.bus import Bus, RequestHandler
from runtime.kv import ResourceStore
from runtime.sealing import load_or_create_fernet
from runtime.service import Service
from runtime.settings import SharedSettings
from runtime.topology import ensure_bucket, ensure_stream
from services.crawler.adapters.secret_store import SecretStore
from services.crawler.config import Settings
from services.crawler.domain.networks import NetworkPolicy
from services.crawler.domain.records import DataSourceRecord, SyncJob
from services.crawler.engine import CrawlEngine
from services.crawler.operations import CrawlerOperations
from services.crawler.secret_operations import SecretOperations

SECRETS_KEY_FILE = "secrets.key"


def secrets_key_path(data_dir: Path) -> Path:
    return Path(data_dir) / "crawler" / SECRETS_KEY_FILE


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
    secrets_bucket = await ensure_bucket(bus.js, topology.CRAWL_SECRETS, replicas)
    sessions = await ensure_bucket(bus.js, topology.CRAWL_SESSIONS, replicas)
    rates = await ensure_bucket(bus.js, topology.CRAWL_RATES, replicas)
    sources = ResourceStore(sources_bucket, DataSourceRecord, "data source", prefix="source.")
    jobs = ResourceStore(sources_bucket, SyncJob, "sync job", prefix="job.")
    secrets = SecretStore(
        secrets_bucket,
        load_or_create_fernet(secrets_key_path(shared.data_dir), settings.secrets_key),
        settings.region,
        settings.account_id,
    )
    engine = CrawlEngine(
        bus,
        sources,
        jobs,
        pages,
        seen,
        NetworkPolicy.from_setting(settings.allowed_networks),
        secrets,
        sessions,
        rates,
    )
    operations = CrawlerOperations(bus, sources, engine, secrets)
    secret_operations = SecretOperations(secrets, sources)
    for operation in CRAWL_OPERATIONS:
        service.handle(
            subjects.crawl_operation(operation.bus_operation),
            operation.request,
            _handler(getattr(operations, operation.bus_operation)),
        )
    for operation in SECRET_OPERATIONS:
        service.handle(
            subjects.crawl_operation(operation.bus_operation),
            operation.request,
            _handler(getattr(secret_operations, operation.bus_operation)),
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
    service.consume(topology.CRAWL_INDEX_DROPS_CONSUMER, IndexDropped, engine.on_index_dropped)
    service.background(
        lambda: engine.schedule_loop(settings.schedule_check_s, settings.stall_after_s)
    )
    return service
