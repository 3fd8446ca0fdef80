"""Thin handlers of the indexer service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from contracts.envelope import EnvelopeMeta, Message
from contracts.index import IndexResult, IndexSummary, ListIndexesReply, ListIndexesRequest
from runtime.bus import RequestHandler
from runtime.kv import ResourceStore
from services.indexer.domain.indexes import Index, page_after

M = TypeVar("M", bound=Message)
SUMMARY_FIELDS = set(IndexSummary.model_fields) - {"message_type"}


def kendra_handler(operation: Callable[[M], Awaitable[dict[str, Any]]]) -> RequestHandler[Any]:
    async def handle(request: M, _: EnvelopeMeta) -> IndexResult:
        return IndexResult(output=await operation(request))

    return handle


class IndexerHandlers:
    def __init__(self, indexes: ResourceStore[Index]) -> None:
        self.indexes = indexes

    async def list_indexes(self, request: ListIndexesRequest, _: EnvelopeMeta) -> ListIndexesReply:
        stored = [v.value for v in await self.indexes.list()]
        page, token = page_after(stored, request.max_results, request.next_token)
        return ListIndexesReply(
            indexes=[
                IndexSummary.model_validate(ix.model_dump(include=SUMMARY_FIELDS)) for ix in page
            ],
            next_token=token,
        )
