"""Search index messages: Kendra operations (Kendra's field names), the documents stream, queries."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import Field

from contracts.aws import AwsMessage, AwsOperation
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


# -- Kendra operations (Kendra's JSON names, PascalCase) --------------------------------------

RANKING_MODES = ("HYBRID_RRF", "HYBRID_NORMALIZED", "KEYWORD", "SEMANTIC")
RankingMode = Literal["HYBRID_RRF", "HYBRID_NORMALIZED", "KEYWORD", "SEMANTIC"]
INDEX_ID = r"^[a-zA-Z0-9][a-zA-Z0-9-]{35}$"


class KendraMessage(AwsMessage):
    """Kendra's JSON names (PascalCase) on the AWS API; Python names inside. Unknown fields are refused.

    Attribute values, filters, ACLs and user contexts stay JSON here: the indexer's domain
    validates them against the index's attribute types and names the wrong part.
    """


class Tag(KendraMessage):
    message_type: ClassVar[str] = "index.v1.tag"
    key: str = Field(min_length=1, max_length=128)
    value: str = Field(max_length=256)


class _IndexRef(KendraMessage):
    id: str = Field(pattern=INDEX_ID)


class CreateIndex(KendraMessage):
    message_type: ClassVar[str] = "index.v1.create_index"
    name: str = Field(min_length=1, max_length=1000, pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_-]*$")
    edition: Literal["DEVELOPER_EDITION", "ENTERPRISE_EDITION", "GEN_AI_ENTERPRISE_EDITION"] = (
        "ENTERPRISE_EDITION"
    )
    role_arn: str | None = Field(default=None, max_length=1284)
    server_side_encryption_configuration: dict[str, Any] | None = None
    description: str | None = Field(default=None, max_length=1000)
    client_token: str | None = Field(default=None, min_length=1, max_length=100)
    tags: list[Tag] = Field(default_factory=list, max_length=200)
    user_token_configurations: list[dict[str, Any]] | None = Field(default=None, max_length=1)
    user_context_policy: Literal["ATTRIBUTE_FILTER", "USER_TOKEN"] = "ATTRIBUTE_FILTER"
    user_group_resolution_configuration: dict[str, Any] | None = None
    # Trellis extensions (REST only: boto3 refuses unknown parameters).
    ranking_mode: RankingMode = "HYBRID_NORMALIZED"
    documents_without_acl_visible: bool = True


class DescribeIndex(_IndexRef):
    message_type: ClassVar[str] = "index.v1.describe_index"


class DeleteIndex(_IndexRef):
    message_type: ClassVar[str] = "index.v1.delete_index"


class Relevance(KendraMessage):
    message_type: ClassVar[str] = "index.v1.relevance"
    freshness: bool | None = None
    importance: int | None = Field(default=None, ge=1, le=10)
    duration: str | None = Field(default=None, pattern=r"^[0-9]+[s]$", max_length=10)
    rank_order: Literal["ASCENDING", "DESCENDING"] | None = None
    value_importance_map: dict[str, int] | None = None


class SearchSettings(KendraMessage):
    message_type: ClassVar[str] = "index.v1.search_settings"
    facetable: bool = False
    searchable: bool = False
    displayable: bool = True
    sortable: bool = False


class DocumentMetadataConfiguration(KendraMessage):
    message_type: ClassVar[str] = "index.v1.document_metadata_configuration"
    name: str = Field(min_length=1, max_length=30)
    type: Literal["STRING_VALUE", "STRING_LIST_VALUE", "LONG_VALUE", "DATE_VALUE"]
    relevance: Relevance | None = None
    search: SearchSettings | None = None


class UpdateIndex(_IndexRef):
    message_type: ClassVar[str] = "index.v1.update_index"
    name: str | None = Field(default=None, min_length=1, max_length=1000)
    role_arn: str | None = Field(default=None, max_length=1284)
    description: str | None = Field(default=None, max_length=1000)
    document_metadata_configuration_updates: list[DocumentMetadataConfiguration] | None = Field(
        default=None, max_length=500
    )
    capacity_units: dict[str, Any] | None = None
    user_token_configurations: list[dict[str, Any]] | None = Field(default=None, max_length=1)
    user_context_policy: Literal["ATTRIBUTE_FILTER", "USER_TOKEN"] | None = None
    user_group_resolution_configuration: dict[str, Any] | None = None
    ranking_mode: RankingMode | None = None
    documents_without_acl_visible: bool | None = None


class IndexDocument(KendraMessage):
    """A document as BatchPutDocument takes it (Blob is base64 text on the wire)."""

    message_type: ClassVar[str] = "index.v1.document"
    id: str = Field(min_length=1, max_length=2048)
    title: str | None = Field(default=None, max_length=1024)
    blob: str | None = Field(default=None, max_length=7_000_000)
    s3_path: dict[str, Any] | None = None
    attributes: list[dict[str, Any]] = Field(default_factory=list, max_length=500)
    access_control_list: list[dict[str, Any]] = Field(default_factory=list, max_length=1000)
    hierarchical_access_control_list: list[dict[str, Any]] | None = None
    content_type: (
        Literal["PLAIN_TEXT", "HTML", "MD", "CSV", "JSON", "PDF", "MS_WORD", "PPT", "RTF", "XML"]
        | None
    ) = None
    access_control_configuration_id: str | None = None
    # Trellis extension: plain text instead of a base64 blob.
    text: str | None = Field(default=None, max_length=5_000_000)


class BatchPutDocument(KendraMessage):
    message_type: ClassVar[str] = "index.v1.batch_put_document"
    index_id: str = Field(pattern=INDEX_ID)
    role_arn: str | None = None
    documents: list[IndexDocument] = Field(min_length=1, max_length=10)
    custom_document_enrichment_configuration: dict[str, Any] | None = None


class BatchDeleteDocument(KendraMessage):
    message_type: ClassVar[str] = "index.v1.batch_delete_document"
    index_id: str = Field(pattern=INDEX_ID)
    document_id_list: list[str] = Field(min_length=1, max_length=10)
    data_source_sync_job_metric_target: dict[str, Any] | None = None


class _Search(KendraMessage):
    index_id: str = Field(pattern=INDEX_ID)
    query_text: str = Field(min_length=1, max_length=1000)
    attribute_filter: dict[str, Any] | None = None
    requested_document_attributes: list[str] | None = Field(default=None, max_length=100)
    document_relevance_override_configurations: list[DocumentMetadataConfiguration] | None = Field(
        default=None, max_length=500
    )
    page_number: int = Field(default=1, ge=1)
    page_size: int = Field(default=10, ge=1, le=100)
    user_context: dict[str, Any] | None = None
    ranking_mode: RankingMode | None = None  # Trellis extension


class Facet(KendraMessage):
    message_type: ClassVar[str] = "index.v1.facet"
    document_attribute_key: str = Field(min_length=1, max_length=200)
    facets: list[dict[str, Any]] | None = None
    max_results: int = Field(default=10, ge=0, le=1000)


class SortingConfiguration(KendraMessage):
    message_type: ClassVar[str] = "index.v1.sorting_configuration"
    document_attribute_key: str = Field(min_length=1, max_length=200)
    sort_order: Literal["DESC", "ASC"]


class Query(_Search):
    message_type: ClassVar[str] = "index.v1.query"
    facets: list[Facet] | None = Field(default=None, max_length=25)
    query_result_type_filter: Literal["DOCUMENT", "QUESTION_ANSWER", "ANSWER"] | None = None
    sorting_configuration: SortingConfiguration | None = None
    sorting_configurations: list[SortingConfiguration] | None = Field(default=None, max_length=3)
    visitor_id: str | None = Field(default=None, max_length=256)
    spell_correction_configuration: dict[str, Any] | None = None
    collapse_configuration: dict[str, Any] | None = None


class Retrieve(_Search):
    message_type: ClassVar[str] = "index.v1.retrieve"


class GetQuerySuggestions(KendraMessage):
    message_type: ClassVar[str] = "index.v1.get_query_suggestions"
    index_id: str = Field(pattern=INDEX_ID)
    query_text: str = Field(min_length=1, max_length=1000)
    max_suggestions_count: int = Field(default=10, ge=1, le=100)
    suggestion_types: list[Literal["QUERY", "DOCUMENT_ATTRIBUTES"]] | None = None
    attribute_suggestions_config: dict[str, Any] | None = None


class UpdateQuerySuggestionsConfig(KendraMessage):
    message_type: ClassVar[str] = "index.v1.update_query_suggestions_config"
    index_id: str = Field(pattern=INDEX_ID)
    mode: Literal["ENABLED", "LEARN_ONLY"] | None = None
    query_log_look_back_window_in_days: int | None = Field(default=None, ge=1, le=365)
    include_queries_without_user_information: bool | None = None
    minimum_number_of_querying_users: int | None = Field(default=None, ge=1, le=10_000)
    minimum_query_count: int | None = Field(default=None, ge=1, le=10_000)
    attribute_suggestions_config: dict[str, Any] | None = None
    # Trellis extension: the block list inline (Kendra reads it from S3).
    block_list: list[str] | None = Field(default=None, max_length=10_000)


class DescribeQuerySuggestionsConfig(KendraMessage):
    message_type: ClassVar[str] = "index.v1.describe_query_suggestions_config"
    index_id: str = Field(pattern=INDEX_ID)


class ClickFeedback(KendraMessage):
    message_type: ClassVar[str] = "index.v1.click_feedback"
    result_id: str = Field(min_length=1, max_length=73)
    click_time: datetime


class RelevanceFeedback(KendraMessage):
    message_type: ClassVar[str] = "index.v1.relevance_feedback"
    result_id: str = Field(min_length=1, max_length=73)
    relevance_value: Literal["RELEVANT", "NOT_RELEVANT"]


class SubmitFeedback(KendraMessage):
    message_type: ClassVar[str] = "index.v1.submit_feedback"
    index_id: str = Field(pattern=INDEX_ID)
    query_id: str = Field(min_length=1, max_length=36)
    click_feedback_items: list[ClickFeedback] | None = Field(default=None, max_length=100)
    relevance_feedback_items: list[RelevanceFeedback] | None = Field(default=None, max_length=100)


class DescribeFeedback(KendraMessage):
    """Trellis extension: clicks and votes per document, as the index has stored them."""

    message_type: ClassVar[str] = "index.v1.describe_feedback"
    index_id: str = Field(pattern=INDEX_ID)


class CreateFaq(KendraMessage):
    message_type: ClassVar[str] = "index.v1.create_faq"
    index_id: str = Field(pattern=INDEX_ID)
    name: str = Field(min_length=1, max_length=100, pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_-]*$")
    description: str | None = Field(default=None, max_length=1000)
    s3_path: dict[str, str]
    role_arn: str | None = None
    tags: list[Tag] = Field(default_factory=list, max_length=200)
    file_format: Literal["CSV", "CSV_WITH_HEADER", "JSON"] = "CSV"
    client_token: str | None = Field(default=None, min_length=1, max_length=100)
    language_code: str | None = Field(default=None, max_length=10)


class _FaqRef(KendraMessage):
    id: str = Field(min_length=1, max_length=100)
    index_id: str = Field(pattern=INDEX_ID)


class DescribeFaq(_FaqRef):
    message_type: ClassVar[str] = "index.v1.describe_faq"


class DeleteFaq(_FaqRef):
    message_type: ClassVar[str] = "index.v1.delete_faq"


class ListFaqs(KendraMessage):
    message_type: ClassVar[str] = "index.v1.list_faqs"
    index_id: str = Field(pattern=INDEX_ID)
    next_token: str | None = Field(default=None, max_length=800)
    max_results: int = Field(default=100, ge=1, le=100)


class IndexResult(Message):
    """The reply of every Kendra operation: Kendra's output shape, with Kendra's JSON names."""

    message_type: ClassVar[str] = "index.v1.result"
    output: dict[str, Any] = Field(default_factory=dict)


KendraOperation = AwsOperation


KENDRA_OPERATIONS: tuple[KendraOperation, ...] = (
    KendraOperation("CreateIndex", "create_index", CreateIndex),
    KendraOperation("DescribeIndex", "describe_index", DescribeIndex),
    KendraOperation("UpdateIndex", "update_index", UpdateIndex),
    KendraOperation("DeleteIndex", "delete_index", DeleteIndex),
    KendraOperation("BatchPutDocument", "batch_put_document", BatchPutDocument),
    KendraOperation("BatchDeleteDocument", "batch_delete_document", BatchDeleteDocument),
    KendraOperation("Query", "query", Query),
    KendraOperation("Retrieve", "retrieve", Retrieve),
    KendraOperation("GetQuerySuggestions", "get_query_suggestions", GetQuerySuggestions),
    KendraOperation(
        "UpdateQuerySuggestionsConfig",
        "update_query_suggestions_config",
        UpdateQuerySuggestionsConfig,
    ),
    KendraOperation(
        "DescribeQuerySuggestionsConfig",
        "describe_query_suggestions_config",
        DescribeQuerySuggestionsConfig,
    ),
    KendraOperation("SubmitFeedback", "submit_feedback", SubmitFeedback),
    KendraOperation("DescribeFeedback", "describe_feedback", DescribeFeedback),
    KendraOperation("CreateFaq", "create_faq", CreateFaq),
    KendraOperation("DescribeFaq", "describe_faq", DescribeFaq),
    KendraOperation("ListFaqs", "list_faqs", ListFaqs),
    KendraOperation("DeleteFaq", "delete_faq", DeleteFaq),
)


# -- the documents stream ---------------------------------------------------------------------


class SourceDocument(Message):
    """A document ready to index: text already extracted, attributes and ACL still Kendra JSON."""

    message_type: ClassVar[str] = "index.v1.source_document"

    index_id: str = Field(pattern=INDEX_ID)
    document_id: str = Field(min_length=1, max_length=2048)
    data_source_id: str | None = Field(default=None, max_length=100)
    title: str = Field(default="", max_length=1024)
    text: str = Field(max_length=5_000_000)
    headings: list[str] = Field(default_factory=list, max_length=1000)
    uri: str | None = Field(default=None, max_length=4096)
    content_type: str = "PLAIN_TEXT"
    language: str | None = Field(default=None, max_length=10)
    attributes: list[dict[str, Any]] = Field(default_factory=list, max_length=500)
    access_control_list: list[dict[str, Any]] = Field(default_factory=list, max_length=1000)
    content_hash: str | None = Field(default=None, max_length=128)


class DocumentAdded(Message):
    """The crawler fetched a new page (crawl.v1.document.added)."""

    message_type: ClassVar[str] = "crawl.v1.document.added"
    document: SourceDocument


class DocumentModified(Message):
    """The crawler fetched a page again and its content changed (crawl.v1.document.modified)."""

    message_type: ClassVar[str] = "crawl.v1.document.modified"
    document: SourceDocument


class DocumentDeleted(Message):
    """A page is gone or out of scope (crawl.v1.document.deleted)."""

    message_type: ClassVar[str] = "crawl.v1.document.deleted"
    index_id: str = Field(pattern=INDEX_ID)
    document_id: str = Field(min_length=1, max_length=2048)
    data_source_id: str | None = None


class DocumentSubmitted(Message):
    """BatchPutDocument accepted a document (index.v1.document.submitted)."""

    message_type: ClassVar[str] = "index.v1.document.submitted"
    document: SourceDocument


class DocumentWithdrawn(Message):
    """BatchDeleteDocument removed a document (index.v1.document.withdrawn)."""

    message_type: ClassVar[str] = "index.v1.document.withdrawn"
    index_id: str = Field(pattern=INDEX_ID)
    document_id: str = Field(min_length=1, max_length=2048)


class FaqEntry(Message):
    message_type: ClassVar[str] = "index.v1.faq_entry"
    question: str = Field(min_length=1, max_length=1000)
    answer: str = Field(min_length=1, max_length=10_000)
    uri: str | None = Field(default=None, max_length=4096)


class FaqLoaded(Message):
    """CreateFaq parsed its file (index.v1.faq.loaded)."""

    message_type: ClassVar[str] = "index.v1.faq.loaded"
    index_id: str = Field(pattern=INDEX_ID)
    faq_id: str
    entries: list[FaqEntry] = Field(max_length=100_000)


class FaqRemoved(Message):
    message_type: ClassVar[str] = "index.v1.faq.removed"
    index_id: str = Field(pattern=INDEX_ID)
    faq_id: str


class IndexDropped(Message):
    """DeleteIndex: replicas drop everything of the index (index.v1.index.dropped)."""

    message_type: ClassVar[str] = "index.v1.index.dropped"
    index_id: str = Field(pattern=INDEX_ID)


class QueryLogged(Message):
    """A query was answered (index.v1.query.logged): feeds suggestions and resolves feedback."""

    message_type: ClassVar[str] = "index.v1.query.logged"
    index_id: str = Field(pattern=INDEX_ID)
    query_id: str
    query_text: str = Field(max_length=1000)
    user_id: str | None = None
    results: dict[str, str] = Field(
        default_factory=dict, description="result id -> document id of the results returned"
    )


class FeedbackSubmitted(Message):
    """SubmitFeedback (index.v1.feedback.submitted)."""

    message_type: ClassVar[str] = "index.v1.feedback.submitted"
    index_id: str = Field(pattern=INDEX_ID)
    query_id: str
    clicks: list[ClickFeedback] = Field(default_factory=list)
    votes: list[RelevanceFeedback] = Field(default_factory=list)
