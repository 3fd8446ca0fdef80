"""Stored crawler state: data sources, sync jobs, what each source indexed per URL, login sessions."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from services.crawler.domain.sync import SyncMetrics, SyncStatus

MAX_ERRORS = 100  # per sync job: enough to act on, bounded so the record stays small


class DataSourceRecord(BaseModel):
    id: str
    index_id: str
    name: str
    type: str
    configuration: dict[str, Any]
    description: str | None = None
    schedule: str | None = None
    role_arn: str | None = None
    language_code: str = "en"
    status: str = "ACTIVE"
    created_at: datetime
    updated_at: datetime
    documents: int = 0  # pages indexed after the last sync (deletion protection's base)
    tags: list[dict[str, str]] = Field(default_factory=list)


DELETING = "DELETING"  # a data source whose documents are being removed before it goes


class SyncError(BaseModel):
    url: str
    message: str


class SyncJob(BaseModel):
    id: str
    source_id: str
    index_id: str
    status: SyncStatus = SyncStatus.SYNCING
    mode: str = "FULL_CRAWL"
    started_at: datetime
    ended_at: datetime | None = None
    updated_at: datetime | None = None  # last progress: a sync idle too long is finished
    queued: int = 0
    done: int = 0
    metrics: dict[str, int] = Field(default_factory=lambda: dict(vars(SyncMetrics())))
    errors: list[SyncError] = Field(default_factory=list)
    error_message: str | None = None
    # The source's settings as they were when the sync started: a replica whose cached copy
    # is older reads them again.
    source_updated_at: datetime | None = None

    def kendra(self) -> dict[str, Any]:
        metrics = SyncMetrics(**self.metrics)
        out: dict[str, Any] = {
            "ExecutionId": self.id,
            "StartTime": self.started_at.timestamp(),
            "Status": self.status.value,
            "Metrics": metrics.kendra(),
        }
        if self.ended_at is not None:
            out["EndTime"] = self.ended_at.timestamp()
        if self.error_message:
            out["ErrorMessage"] = self.error_message
            out["ErrorCode"] = (
                "InternalError" if self.status == SyncStatus.FAILED else "InvalidRequest"
            )
        # Trellis additions: every counter and the URLs that failed.
        out["TrellisMetrics"] = dict(self.metrics)
        out["Progress"] = {"Queued": self.queued, "Done": self.done}
        out["Errors"] = [e.model_dump() for e in self.errors]
        return out


class KnownPage(BaseModel):
    url: str
    content_hash: str
    etag: str | None = None
    last_modified: str | None = None
    last_sync: str
    fetched_at: datetime | None = None  # when the body was last read (a 304 counts)
    # The links a later sync follows without reading the body again (after a 304, or when a
    # sitemap's lastmod says unchanged); None when the page had nothing to make that possible.
    links: list[str] | None = None


class LoginSession(BaseModel):
    """A sync's form-login session, shared by every replica (stored sealed, one per sync)."""

    status: Literal["pending", "ready", "failed"]
    started_at: float  # epoch seconds: a pending login older than the login timeout is retaken
    cookies: list[dict[str, Any]] = Field(default_factory=list)
    error: str | None = None
