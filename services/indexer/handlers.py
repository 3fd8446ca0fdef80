"""Thin handlers of the indexer service."""

from __future__ import annotations

from contracts.envelope import EnvelopeMeta
from contracts.index import IndexSummary, ListIndexesReply, ListIndexesRequest
from runtime.kv import ResourceStore
from services.indexer.domain.indexes import Index, page_after


class IndexerHandlers:
    def __init__(self, indexes: ResourceStore[Index]) -> None:
        self.indexes = indexes

    async def list_indexes(self, request: ListIndexesRequest, _: EnvelopeMeta) -> ListIndexesReply:
        stored = [v.value for v in await self.indexes.list()]
        page, token = page_after(stored, request.max_results, request.next_token)
        return ListIndexesReply(
            indexes=[IndexSummary.model_validate(ix.model_dump()) for ix in page], next_token=token
        )
