"""Wiring of the indexer service: stores, the replica's views, Kendra operations and subjects."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from contracts import subjects, topology
from contracts.index import KENDRA_OPERATIONS, ListIndexesRequest
from runtime.bus import Bus
from runtime.errors import NotFound
from runtime.kv import ResourceStore
from runtime.object_store import open_object_store
from runtime.service import Service
from runtime.settings import SharedSettings
from runtime.topology import ensure_bucket, ensure_stream
from runtime.view import StreamView
from services.indexer.adapters.embedder import BusEmbedder, Embedder, LocalEmbedder
from services.indexer.config import Settings
from services.indexer.domain.indexes import FaqRecord, Index, SnapshotManifest
from services.indexer.handlers import IndexerHandlers, kendra_handler
from services.indexer.operations import IndexOperations
from services.indexer.replica import Replica

log = logging.getLogger("trellis.indexer")


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

    snapshots = ResourceStore(bucket, SnapshotManifest, "snapshot", prefix="snapshot.")
    snapshot_store = await open_object_store(
        bus.js, topology.INDEX_SNAPSHOTS, "Index snapshots: documents and embeddings", replicas
    )

    # Restore the latest snapshot before serving, then replay only the log after it.
    start = 0
    try:
        manifest: SnapshotManifest | None = (await snapshots.get("latest")).value
    except NotFound:
        manifest = None
    if manifest is not None:
        try:
            await replica.restore(snapshot_store, manifest)
            start = manifest.sequence
            log.info("restored snapshot %s at sequence %d", manifest.id, start)
        except Exception:  # an unreadable snapshot costs time, never correctness
            log.exception("snapshot %s unusable; replaying the whole log", manifest.id)
            replica.reset()
            start = 0

    async def run_views() -> None:
        await documents.start(start)
        await activity.start(0)

    embedded_at_snapshot = 0

    async def snapshot_loop() -> None:
        nonlocal embedded_at_snapshot
        while True:
            await asyncio.sleep(settings.snapshot_interval_s)
            try:
                previous: SnapshotManifest | None = (await snapshots.get("latest")).value
            except NotFound:
                previous = None
            latest = previous.sequence if previous else 0
            # Due when enough was applied since the latest snapshot, or enough was embedded
            # since this replica's last one (embeddings are the expensive part to redo).
            progress = documents.applied - latest + replica.embedded - embedded_at_snapshot
            if progress < settings.snapshot_min_messages or replica.restoring:
                continue
            embedded_at_snapshot = replica.embedded
            manifest = await replica.snapshot(
                snapshot_store, documents.applied, by=service.instance_id
            )
            await snapshots.put("latest", manifest)
            log.info("snapshot %s at sequence %d", manifest.id, manifest.sequence)
            if previous is not None and previous.id != manifest.id:
                for index_id in previous.indexes:
                    for suffix in (".json.gz", ".npy"):
                        with contextlib.suppress(Exception):
                            await snapshot_store.delete(f"{previous.id}/{index_id}{suffix}")

    service.background(run_views)
    service.background(snapshot_loop)
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
