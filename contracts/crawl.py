"""Crawler messages: Kendra data source and sync job operations (Kendra's names), secrets, the frontier."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import Field

from contracts.aws import AwsMessage, AwsOperation
from contracts.envelope import Message
from contracts.index import INDEX_ID, KendraMessage, KendraOperation, Tag

SOURCE_ID = r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,99}$"
SECRETS_MANAGER_NAME = r"^[A-Za-z0-9/_+=.@-]{1,128}$"
MAX_SECRET_BYTES = 8 * 1024


class CreateDataSource(KendraMessage):
    message_type: ClassVar[str] = "crawl.v1.create_data_source"
    name: str = Field(min_length=1, max_length=1000, pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_-]*$")
    index_id: str = Field(pattern=INDEX_ID)
    type: Literal["WEBCRAWLER", "TEMPLATE"]
    configuration: dict[str, Any] | None = None
    vpc_configuration: dict[str, Any] | None = None
    description: str | None = Field(default=None, max_length=1000)
    schedule: str | None = Field(default=None, max_length=200)
    role_arn: str | None = Field(default=None, max_length=1284)
    tags: list[Tag] = Field(default_factory=list, max_length=200)
    client_token: str | None = Field(default=None, min_length=1, max_length=100)
    language_code: str | None = Field(default=None, max_length=10)
    custom_document_enrichment_configuration: dict[str, Any] | None = None


class _SourceRef(KendraMessage):
    id: str = Field(pattern=SOURCE_ID)
    index_id: str = Field(pattern=INDEX_ID)


class DescribeDataSource(_SourceRef):
    message_type: ClassVar[str] = "crawl.v1.describe_data_source"


class DeleteDataSource(_SourceRef):
    message_type: ClassVar[str] = "crawl.v1.delete_data_source"


class UpdateDataSource(_SourceRef):
    message_type: ClassVar[str] = "crawl.v1.update_data_source"
    name: str | None = Field(default=None, min_length=1, max_length=1000)
    configuration: dict[str, Any] | None = None
    vpc_configuration: dict[str, Any] | None = None
    description: str | None = Field(default=None, max_length=1000)
    schedule: str | None = Field(default=None, max_length=200)
    role_arn: str | None = Field(default=None, max_length=1284)
    language_code: str | None = Field(default=None, max_length=10)
    custom_document_enrichment_configuration: dict[str, Any] | None = None


class ListDataSources(KendraMessage):
    message_type: ClassVar[str] = "crawl.v1.list_data_sources"
    index_id: str = Field(pattern=INDEX_ID)
    next_token: str | None = Field(default=None, max_length=800)
    max_results: int = Field(default=100, ge=1, le=100)


class StartDataSourceSyncJob(_SourceRef):
    message_type: ClassVar[str] = "crawl.v1.start_data_source_sync_job"
    # Trellis extension: FORCED_FULL_CRAWL refetches everything (Kendra sets it per source).
    sync_mode: Literal["FULL_CRAWL", "FORCED_FULL_CRAWL"] | None = None


class StopDataSourceSyncJob(_SourceRef):
    message_type: ClassVar[str] = "crawl.v1.stop_data_source_sync_job"


class ListDataSourceSyncJobs(_SourceRef):
    message_type: ClassVar[str] = "crawl.v1.list_data_source_sync_jobs"
    next_token: str | None = Field(default=None, max_length=800)
    max_results: int = Field(default=10, ge=1, le=10)
    start_time_filter: dict[str, Any] | None = None
    status_filter: str | None = None


class CrawlResult(Message):
    """The reply of every data source and secret operation: the AWS output shape and JSON names."""

    message_type: ClassVar[str] = "crawl.v1.result"
    output: dict[str, Any] = Field(default_factory=dict)


CRAWL_OPERATIONS: tuple[KendraOperation, ...] = (
    KendraOperation("CreateDataSource", "create_data_source", CreateDataSource),
    KendraOperation("DescribeDataSource", "describe_data_source", DescribeDataSource),
    KendraOperation("UpdateDataSource", "update_data_source", UpdateDataSource),
    KendraOperation("DeleteDataSource", "delete_data_source", DeleteDataSource),
    KendraOperation("ListDataSources", "list_data_sources", ListDataSources),
    KendraOperation("StartDataSourceSyncJob", "start_data_source_sync_job", StartDataSourceSyncJob),
    KendraOperation("StopDataSourceSyncJob", "stop_data_source_sync_job", StopDataSourceSyncJob),
    KendraOperation("ListDataSourceSyncJobs", "list_data_source_sync_jobs", ListDataSourceSyncJobs),
)


# -- Secrets (Secrets Manager's names) for data source credentials -----------------------------


class SecretsMessage(AwsMessage):
    """Secrets Manager's JSON names. A secret value travels only in create and put requests."""


class CreateSecret(SecretsMessage):
    message_type: ClassVar[str] = "crawl.v1.create_secret"
    name: str = Field(pattern=SECRETS_MANAGER_NAME)
    # A JSON object with "username" and "password"; never returned by any operation.
    secret_string: str = Field(min_length=1, max_length=MAX_SECRET_BYTES)
    description: str | None = Field(default=None, max_length=2048)
    client_request_token: str | None = Field(default=None, min_length=32, max_length=64)
    tags: list[Tag] = Field(default_factory=list, max_length=50)


class DescribeSecret(SecretsMessage):
    message_type: ClassVar[str] = "crawl.v1.describe_secret"
    secret_id: str = Field(min_length=1, max_length=2048)


class ListSecrets(SecretsMessage):
    message_type: ClassVar[str] = "crawl.v1.list_secrets"
    max_results: int = Field(default=100, ge=1, le=100)
    next_token: str | None = Field(default=None, max_length=4096)
    filters: list[dict[str, Any]] | None = Field(default=None, max_length=10)
    sort_order: Literal["asc", "desc"] | None = None
    include_planned_deletion: bool | None = None


class PutSecretValue(SecretsMessage):
    message_type: ClassVar[str] = "crawl.v1.put_secret_value"
    secret_id: str = Field(min_length=1, max_length=2048)
    secret_string: str = Field(min_length=1, max_length=MAX_SECRET_BYTES)
    client_request_token: str | None = Field(default=None, min_length=32, max_length=64)


class DeleteSecret(SecretsMessage):
    message_type: ClassVar[str] = "crawl.v1.delete_secret"
    secret_id: str = Field(min_length=1, max_length=2048)
    # Accepted for boto3 callers; Trellis deletes at once (no recovery window).
    recovery_window_in_days: int | None = Field(default=None, ge=7, le=30)
    force_delete_without_recovery: bool | None = None


SECRET_OPERATIONS: tuple[AwsOperation, ...] = (
    AwsOperation("CreateSecret", "create_secret", CreateSecret),
    AwsOperation("DescribeSecret", "describe_secret", DescribeSecret),
    AwsOperation("ListSecrets", "list_secrets", ListSecrets),
    AwsOperation("PutSecretValue", "put_secret_value", PutSecretValue),
    AwsOperation("DeleteSecret", "delete_secret", DeleteSecret),
)


class FrontierUrl(Message):
    """A URL waiting to be fetched in one sync (the CRAWL_FRONTIER work queue)."""

    message_type: ClassVar[str] = "crawl.v1.frontier.queued"

    source_id: str = Field(pattern=SOURCE_ID)
    sync_id: str = Field(pattern=r"^[a-z0-9]{1,64}$")
    url: str = Field(min_length=1, max_length=2048)
    depth: int = Field(ge=0, le=10)
    kind: Literal["page", "sitemap"] = "page"
    queued_at: datetime | None = None
    # The page's <lastmod> in the sitemap that listed it: a recrawl skips it if not newer.
    lastmod: datetime | None = None
