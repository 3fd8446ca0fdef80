"""Wiring of the indexer service: stores, handlers and subjects."""

from __future__ import annotations

from contracts import subjects, topology
from contracts.index import ListIndexesRequest
from runtime.bus import Bus
from runtime.kv import ResourceStore
from runtime.service import Service
from runtime.settings import SharedSettings
from runtime.topology import ensure_bucket
from services.indexer.config import Settings
from services.indexer.domain.indexes import Index
from services.indexer.handlers import IndexerHandlers


async def build(bus: Bus, settings: Settings, shared: SharedSettings) -> Service:
    service = Service("indexer", bus, settings, shared)
    bucket = await ensure_bucket(bus.js, topology.INDEX_INDEXES, shared.stream_replicas)
    handlers = IndexerHandlers(ResourceStore(bucket, Index, "index"))
    service.handle(subjects.INDEX_LIST_INDEXES, ListIndexesRequest, handlers.list_indexes)
    return service
