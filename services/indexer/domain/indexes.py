"""Index resources and their listing order (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from runtime.errors import ValidationFailed
from runtime.paging import page


class IndexStatus(StrEnum):
    CREATING = "CREATING"
    ACTIVE = "ACTIVE"
    DELETING = "DELETING"
    FAILED = "FAILED"
    UPDATING = "UPDATING"
    SYSTEM_UPDATING = "SYSTEM_UPDATING"


class SuggestionsConfig(BaseModel):
    mode: str = "ENABLED"
    look_back_days: int = 180
    include_queries_without_user: bool = True
    min_unique_users: int = 1
    min_query_count: int = 1
    block_list: list[str] = Field(default_factory=list)


class Index(BaseModel):
    id: str
    name: str
    edition: str = "DEVELOPER_EDITION"
    status: IndexStatus = IndexStatus.CREATING
    created_at: datetime
    updated_at: datetime
    description: str | None = None
    role_arn: str | None = None
    user_context_policy: str = "ATTRIBUTE_FILTER"
    ranking_mode: str = "HYBRID_NORMALIZED"
    documents_without_acl_visible: bool = True
    # DocumentMetadataConfigurations in Kendra's JSON shape, by attribute name.
    metadata: dict[str, dict[str, Any]] = Field(default_factory=dict)
    suggestions: SuggestionsConfig = Field(default_factory=SuggestionsConfig)
    tags: list[dict[str, str]] = Field(default_factory=list)
    error_message: str | None = None


def page_after(
    indexes: Sequence[Index], max_results: int, next_token: str | None
) -> tuple[list[Index], str | None]:
    """One page of indexes ordered by id; the token is the last id of the previous page."""
    if next_token is not None and not next_token.strip():
        raise ValidationFailed("NextToken is empty")
    return page(indexes, lambda ix: ix.id, next_token, max_results)


class FaqRecord(BaseModel):
    id: str
    index_id: str
    name: str
    description: str | None = None
    s3_path: dict[str, str]
    file_format: str
    language_code: str = "en"
    status: str = "ACTIVE"
    created_at: datetime
    updated_at: datetime
    entries: int = 0

    def kendra(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "Id": self.id,
            "IndexId": self.index_id,
            "Name": self.name,
            "S3Path": self.s3_path,
            "FileFormat": self.file_format,
            "LanguageCode": self.language_code,
            "Status": self.status,
            "CreatedAt": self.created_at.timestamp(),
            "UpdatedAt": self.updated_at.timestamp(),
        }
        if self.description is not None:
            out["Description"] = self.description
        return out


class SnapshotManifest(BaseModel):
    """The latest snapshot of every index: a new replica restores it and replays what follows."""

    id: str
    sequence: int  # last DOCUMENTS sequence the snapshot includes
    created_at: datetime
    indexes: list[str] = Field(default_factory=list)
    by: str = ""
    # Passages not embedded yet, per index (a restore embeds them).
    pending_passages: dict[str, int] = Field(default_factory=dict)
