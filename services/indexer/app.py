"""Wiring of the indexer service: stores, the replica's views, Kendra operations and subjects."""

from __future__ import annotations

from contracts import subjects, topology
from contracts.index import KENDRA_OPERATIONS, ListIndexesRequest
from runtime.bus import Bus
from runtime.kv import ResourceStore
from runtime.object_store import open_object_store
from runtime.service import Service
from runtime.settings import SharedSettings
from runtime.topology import ensure_bucket, ensure_stream
from runtime.view import StreamView
from services.indexer.adapters.embedder import BusEmbedder, Embedder, LocalEmbedder
from services.indexer.config import Settings
from services.indexer.domain.indexes import FaqRecord, Index
from services.indexer.handlers import IndexerHandlers, kendra_handler
from services.indexer.operations import IndexOperations
from services.indexer.replica import Replica


async def build(
    bus: Bus, settings: Settings, shared: SharedSettings, *, embedder: Embedder | None = None
) -> Service:
    service = Service("indexer", bus, settings, shared)
    replicas = shared.stream_replicas
    await ensure_stream(bus.js, topology.DOCUMENTS, replicas)
    await ensure_stream(bus.js, topology.INDEX_ACTIVITY, replicas)
    bucket = await ensure_bucket(bus.js, topology.INDEX_INDEXES, replicas)
    indexes = ResourceStore(bucket, Index, "index", prefix="index.")
    faqs = ResourceStore(bucket, FaqRecord, "FAQ", prefix="faq.")
    uploads = await open_object_store(
        bus.js, topology.INDEX_UPLOADS, "FAQ files uploaded through the gateway", replicas
    )
    if embedder is None:
        embedder = LocalEmbedder() if settings.embedder == "local" else BusEmbedder(bus)
    replica = Replica(
        bus,
        shared.data_dir.resolve() / "indexer" / service.instance_id,
        embedder,
        hnsw_threshold=settings.hnsw_threshold,
    )
    documents = StreamView(bus, topology.DOCUMENTS, ">", replica.apply_document)
    activity = StreamView(bus, topology.INDEX_ACTIVITY, ">", replica.apply_activity)
    operations = IndexOperations(
        bus,
        indexes,
        faqs,
        replica,
        embedder,
        uploads,
        region=settings.region,
        account_id=settings.account_id,
    )
    for operation in KENDRA_OPERATIONS:
        service.handle(
            subjects.index_operation(operation.bus_operation),
            operation.request,
            kendra_handler(getattr(operations, operation.bus_operation)),
        )
    handlers = IndexerHandlers(indexes)
    service.handle(subjects.INDEX_LIST_INDEXES, ListIndexesRequest, handlers.list_indexes)

    async def run_views() -> None:
        await documents.start(0)
        await activity.start(0)

    service.background(run_views)
    service.background(lambda: replica.commit_loop(settings.commit_interval_s))
    service.background(replica.embed_loop)
    service.describe(
        lambda: {
            "indexes": len(replica.shards),
            "documents_applied": documents.applied,
            "embedding_failures": replica.embed_failures,
        }
    )
    return service
