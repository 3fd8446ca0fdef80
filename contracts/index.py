"""Search index messages (filled in by the indexer's issue)."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from pydantic import Field

from contracts.envelope import Message


class ListIndexesRequest(Message):
    message_type: ClassVar[str] = "index.v1.list_indexes_request"

    max_results: int = Field(default=100, ge=1, le=100)
    next_token: str | None = Field(default=None, max_length=800)


class IndexSummary(Message):
    message_type: ClassVar[str] = "index.v1.index_summary"

    id: str
    name: str
    edition: str
    status: str
    created_at: datetime
    updated_at: datetime


class ListIndexesReply(Message):
    message_type: ClassVar[str] = "index.v1.list_indexes_reply"

    indexes: list[IndexSummary] = Field(default_factory=list)
    next_token: str | None = None
