"""Index resources and their listing order (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel

from runtime.errors import ValidationFailed


class IndexStatus(StrEnum):
    CREATING = "CREATING"
    ACTIVE = "ACTIVE"
    DELETING = "DELETING"
    FAILED = "FAILED"
    UPDATING = "UPDATING"
    SYSTEM_UPDATING = "SYSTEM_UPDATING"


class Index(BaseModel):
    id: str
    name: str
    edition: str = "DEVELOPER_EDITION"
    status: IndexStatus = IndexStatus.CREATING
    created_at: datetime
    updated_at: datetime


def page_after(
    indexes: Sequence[Index], max_results: int, next_token: str | None
) -> tuple[list[Index], str | None]:
    """One page of indexes ordered by id; the token is the last id of the previous page."""
    ordered = sorted(indexes, key=lambda ix: ix.id)
    if next_token is not None:
        if not next_token.strip():
            raise ValidationFailed("NextToken is empty")
        ordered = [ix for ix in ordered if ix.id > next_token]
    page = ordered[:max_results]
    more = len(ordered) > max_results
    return page, (page[-1].id if more and page else None)
