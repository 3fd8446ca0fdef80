"""Kendra operations of the indexer: each takes its request contract and returns Kendra's output."""

from __future__ import annotations

import asyncio
import base64
import csv
import hashlib
import io
import json
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from nats.js.object_store import ObjectStore

from contracts import subjects
from contracts.index import (
    BatchDeleteDocument,
    BatchPutDocument,
    CreateFaq,
    CreateIndex,
    DeleteFaq,
    DeleteIndex,
    DescribeFaq,
    DescribeFeedback,
    DescribeIndex,
    DescribeQuerySuggestionsConfig,
    DocumentMetadataConfiguration,
    DocumentSubmitted,
    DocumentWithdrawn,
    FaqEntry,
    FaqLoaded,
    FaqRemoved,
    FeedbackSubmitted,
    GetQuerySuggestions,
    IndexDocument,
    IndexDropped,
    ListFaqs,
    Query,
    QueryLogged,
    Retrieve,
    SourceDocument,
    SubmitFeedback,
    UpdateIndex,
    UpdateQuerySuggestionsConfig,
)
from contracts.topology import UPLOADS_LOCATION
from documents.formats import extract_for, plain
from runtime.bus import Bus
from runtime.cache import TtlCache
from runtime.errors import Conflict, NotFound, ValidationFailed
from runtime.kv import ResourceStore
from services.indexer.adapters.embedder import Embedder
from services.indexer.domain import filters as flt
from services.indexer.domain.indexes import FaqRecord, Index, IndexStatus, SuggestionsConfig
from services.indexer.domain.ranking import ScoreConfidence, score_confidence
from services.indexer.domain.suggestions import (
    SuggestionSettings,
    highlight_prefix,
    title_suggestions,
)
from services.indexer.domain.text import (
    Span,
    best_sentence,
    highlight_terms,
    make_excerpt,
    query_terms,
)
from services.indexer.replica import Replica
from services.indexer.shard import Hit, IndexShard, SearchOutcome, Tuning

log = logging.getLogger("trellis.indexer")
MAX_RESULTS = 100  # Kendra returns at most 100 results per query, over all pages
UPLOAD_BUCKET = UPLOADS_LOCATION.removeprefix("s3://").rstrip("/")
MAX_FAQ_BYTES = 16 * 1024**2
_TYPE_NAMES = {
    "STRING_VALUE": flt.AttributeType.STRING,
    "STRING_LIST_VALUE": flt.AttributeType.STRING_LIST,
    "LONG_VALUE": flt.AttributeType.LONG,
    "DATE_VALUE": flt.AttributeType.DATE,
}
_VALUE_TYPES = {
    flt.AttributeType.STRING: "STRING_VALUE",
    flt.AttributeType.STRING_LIST: "STRING_LIST_VALUE",
    flt.AttributeType.LONG: "LONG_VALUE",
    flt.AttributeType.DATE: "DATE_VALUE",
}


def _spans(spans: Sequence[Span], *, top: bool = False) -> list[dict[str, Any]]:
    return [
        {"BeginOffset": s.begin, "EndOffset": s.end, "TopAnswer": top, "Type": "STANDARD"}
        for s in spans
    ]


def _text(text: str, spans: Sequence[Span], *, top: bool = False) -> dict[str, Any]:
    return {"Text": text, "Highlights": _spans(spans, top=top)}


class IndexOperations:
    def __init__(
        self,
        bus: Bus,
        indexes: ResourceStore[Index],
        faqs: ResourceStore[FaqRecord],
        replica: Replica,
        embedder: Embedder,
        uploads: ObjectStore,
        *,
        region: str,
        account_id: str,
    ) -> None:
        self.bus = bus
        self.indexes = indexes
        self.faqs = faqs
        self.replica = replica
        self.embedder = embedder
        self.uploads = uploads
        self.region = region
        self.account_id = account_id
        self._index_cache = TtlCache(ttl_s=1.0)
        self._background: set[asyncio.Task[None]] = set()

    # -- indexes ---------------------------------------------------------------------------

    async def _index(self, index_id: str, *, active: bool = False) -> Index:
        try:
            index: Index = await self._index_cache.get(index_id, lambda: self._load_index(index_id))
        except NotFound:
            raise NotFound(f"Index {index_id} does not exist") from None
        if active and index.status != IndexStatus.ACTIVE:
            raise Conflict(f"Index {index_id} is {index.status}, not ACTIVE")
        return index

    async def _load_index(self, index_id: str) -> Index:
        return (await self.indexes.get(index_id)).value

    async def create_index(self, r: CreateIndex) -> dict[str, Any]:
        now = datetime.now(UTC)
        index_id = (
            str(uuid.UUID(hashlib.sha256(r.client_token.encode()).hexdigest()[:32]))
            if (r.client_token)
            else str(uuid.uuid4())
        )
        # The same id is a retry with the same client token: the store answers it.
        if any(v.value.name == r.name and v.key != index_id for v in await self.indexes.list()):
            raise Conflict(f"an index named {r.name!r} already exists")
        index = Index(
            id=index_id,
            name=r.name,
            edition=r.edition,
            status=IndexStatus.ACTIVE,
            created_at=now,
            updated_at=now,
            description=r.description,
            role_arn=r.role_arn,
            user_context_policy=r.user_context_policy,
            ranking_mode=r.ranking_mode,
            documents_without_acl_visible=r.documents_without_acl_visible,
            tags=[t.model_dump(by_alias=True) for t in r.tags],
        )
        # There is nothing to provision: the index is ACTIVE as soon as it is stored.
        stored = await self.indexes.create(index_id, index, client_token=r.client_token)
        return {"Id": stored.value.id}

    async def describe_index(self, r: DescribeIndex) -> dict[str, Any]:
        index = (await self.indexes.get(r.id)).value
        shard = self.replica.shards.get(index.id)
        out: dict[str, Any] = {
            "Name": index.name,
            "Id": index.id,
            "Edition": index.edition,
            "Status": index.status.value,
            "CreatedAt": index.created_at.timestamp(),
            "UpdatedAt": index.updated_at.timestamp(),
            "DocumentMetadataConfigurations": list(index.metadata.values()),
            "IndexStatistics": {
                "FaqStatistics": {"IndexedQuestionAnswersCount": shard.faq_entries if shard else 0},
                "TextDocumentStatistics": {
                    "IndexedTextDocumentsCount": shard.searchable_documents if shard else 0,
                    "IndexedTextBytes": shard.text_bytes if shard else 0,
                },
            },
            "UserContextPolicy": index.user_context_policy,
            # Trellis additions (boto3 ignores members it does not know).
            "RankingMode": index.ranking_mode,
            "DocumentsWithoutAclVisible": index.documents_without_acl_visible,
            "EmbeddingStatistics": {
                "Passages": len(shard.vectors) + len(shard.pending_vectors) if shard else 0,
                "EmbeddedPassages": len(shard.vectors) if shard else 0,
                "PendingPassages": len(shard.pending_vectors) if shard else 0,
            },
        }
        for key, value in (
            ("Description", index.description),
            ("RoleArn", index.role_arn),
            ("ErrorMessage", index.error_message),
        ):
            if value is not None:
                out[key] = value
        return out

    async def update_index(self, r: UpdateIndex) -> dict[str, Any]:
        def change(index: Index) -> Index:
            if index.status != IndexStatus.ACTIVE:
                raise Conflict(f"Index {index.id} is {index.status}, not ACTIVE")
            updates: dict[str, Any] = {"updated_at": datetime.now(UTC)}
            for name in (
                "name",
                "role_arn",
                "description",
                "user_context_policy",
                "ranking_mode",
                "documents_without_acl_visible",
            ):
                value = getattr(r, name)
                if value is not None:
                    updates[name] = value
            if r.document_metadata_configuration_updates is not None:
                metadata = dict(index.metadata)
                for config in r.document_metadata_configuration_updates:
                    _check_relevance(config)
                    declared = flt.RESERVED_ATTRIBUTES.get(config.name)
                    if declared is not None and declared != _TYPE_NAMES[config.type]:
                        raise ValidationFailed(
                            f"{config.name} is a {declared} attribute, not {config.type}"
                        )
                    metadata[config.name] = config.model_dump(by_alias=True, exclude_none=True)
                updates["metadata"] = metadata
            return index.model_copy(update=updates)

        await self.indexes.mutate(r.id, change)
        self._index_cache.clear()
        return {}

    async def delete_index(self, r: DeleteIndex) -> dict[str, Any]:
        def deleting(index: Index) -> Index:
            return index.model_copy(update={"status": IndexStatus.DELETING})

        await self.indexes.mutate(r.id, deleting)
        self._index_cache.clear()
        await self.bus.emit(subjects.INDEX_INDEX_DROPPED, IndexDropped(index_id=r.id))
        for faq in await self.faqs.list():
            if faq.value.index_id == r.id:
                await self.faqs.delete(faq.key)
        await self.indexes.delete(r.id)
        self._index_cache.clear()
        return {}

    # -- documents -------------------------------------------------------------------------

    async def batch_put_document(self, r: BatchPutDocument) -> dict[str, Any]:
        await self._index(r.index_id, active=True)
        failed = []
        for doc in r.documents:
            try:
                # A Blob (a PDF above all) is extracted off the event loop: it may take seconds.
                source = (
                    await asyncio.to_thread(_source_document, r.index_id, doc)
                    if doc.blob is not None
                    else _source_document(r.index_id, doc)
                )
                # Validate attributes and ACL here, so the caller hears of a bad one now.
                flt.parse_acl(source.access_control_list, "AccessControlList")
                for i, raw in enumerate(source.attributes):
                    flt.parse_attribute_value(
                        raw.get("Value") or {} if isinstance(raw, dict) else {},
                        f"Attributes[{i}].Value",
                    )
            except (ValidationFailed, ValueError) as exc:
                message = exc.message if isinstance(exc, ValidationFailed) else str(exc)
                failed.append(
                    {"Id": doc.id, "ErrorCode": "InvalidRequest", "ErrorMessage": message}
                )
                continue
            await self.bus.emit(
                subjects.INDEX_DOCUMENT_SUBMITTED, DocumentSubmitted(document=source)
            )
        return {"FailedDocuments": failed}

    async def batch_delete_document(self, r: BatchDeleteDocument) -> dict[str, Any]:
        await self._index(r.index_id, active=True)
        for document_id in r.document_id_list:
            await self.bus.emit(
                subjects.INDEX_DOCUMENT_WITHDRAWN,
                DocumentWithdrawn(index_id=r.index_id, document_id=document_id),
            )
        return {"FailedDocuments": []}

    # -- query and retrieve ----------------------------------------------------------------

    def _prepare(
        self, index: Index, shard: IndexShard, r: Query | Retrieve
    ) -> tuple[np.ndarray, flt.UserContext | None, Tuning]:
        known = shard.attribute_types
        filter_ = (
            flt.parse_filter(r.attribute_filter, known) if r.attribute_filter is not None else None
        )
        user = flt.parse_user_context(r.user_context)
        if user is None and index.user_context_policy == "ATTRIBUTE_FILTER":
            # Kendra's ATTRIBUTE_FILTER: without a user context the caller sees every document.
            doc_mask = shard.table.mask(filter_)
        else:
            doc_mask = shard.visible_documents(filter_, user, index.documents_without_acl_visible)
        tuning = _tuning(index, r.document_relevance_override_configurations)
        return doc_mask, user, tuning

    async def _search(
        self, r: Query | Retrieve, *, group: bool, want_all: bool
    ) -> tuple[
        Index, IndexShard, SearchOutcome, list[str], np.ndarray | None, flt.UserContext | None
    ]:
        index = await self._index(r.index_id, active=True)
        shard = self.replica.shard(index.id)
        mode = r.ranking_mode or index.ranking_mode
        vector = None
        if mode != "KEYWORD" and len(shard.vectors):
            vector = (await self.embedder.embed([r.query_text]))[0]
        # After the await: documents applied while the query was embedded are in the mask too.
        doc_mask, user, tuning = self._prepare(index, shard, r)
        outcome = shard.search(
            r.query_text,
            vector,
            doc_mask,
            mode=mode,
            group_by_document=group,
            tuning=tuning,
            want_all_matches=want_all,
        )
        return index, shard, outcome, query_terms(r.query_text), vector, user

    async def query(self, r: Query) -> dict[str, Any]:
        index_probe = await self._index(r.index_id, active=True)
        shard_probe = self.replica.shard(index_probe.id)
        for facet in r.facets or []:
            if facet.document_attribute_key not in shard_probe.attribute_types:
                raise ValidationFailed(
                    f"Facets: unknown attribute {facet.document_attribute_key!r}"
                )
        sorting = r.sorting_configuration or next(iter(r.sorting_configurations or []), None)
        if (
            sorting is not None
            and sorting.document_attribute_key not in shard_probe.attribute_types
        ):
            raise ValidationFailed(
                f"SortingConfiguration: unknown attribute {sorting.document_attribute_key!r}"
            )
        want_all = bool(r.facets) or sorting is not None
        index, shard, outcome, terms, vector, user = await self._search(
            r, group=True, want_all=want_all
        )
        query_id = str(uuid.uuid4())
        hits = outcome.hits
        if sorting is not None:
            hits = _sort(shard, hits, sorting.document_attribute_key, sorting.sort_order)
        hits = hits[:MAX_RESULTS]
        start = (r.page_number - 1) * r.page_size
        page = hits[start : start + r.page_size]
        items: list[dict[str, Any]] = []
        results: dict[str, str] = {}
        types = r.query_result_type_filter
        if r.page_number == 1 and types in (None, "ANSWER") and hits:
            answer = self._answer(shard, hits[0], terms, query_id, outcome, r)
            if answer is not None:
                items.append(answer)
        if r.page_number == 1 and types in (None, "QUESTION_ANSWER"):
            for entry, score in shard.faq_matches(terms, vector):
                items.append(_faq_item(entry, score, query_id, terms))
        if types in (None, "DOCUMENT"):
            for rank, hit in enumerate(page, start=start):
                items.append(self._document_item(shard, hit, rank, terms, query_id, outcome, r))
        for item in items:
            if "DocumentId" in item:
                results[item["Id"]] = item["DocumentId"]
        out: dict[str, Any] = {
            "QueryId": query_id,
            "ResultItems": items,
            "FacetResults": self._facets(shard, outcome, r),
            "TotalNumberOfResults": min(outcome.total, MAX_RESULTS)
            if types in (None, "DOCUMENT")
            else len(items),
        }
        self._log_query(index.id, query_id, r.query_text, user, results)
        return out

    def _answer(
        self,
        shard: IndexShard,
        hit: Hit,
        terms: list[str],
        query_id: str,
        outcome: SearchOutcome,
        r: Query,
    ) -> dict[str, Any] | None:
        confidence = _confidence(hit, outcome, 0)
        if confidence in (ScoreConfidence.LOW, ScoreConfidence.NOT_AVAILABLE):
            return None
        answer = best_sentence(shard.passage_text(hit.pid), terms)
        if answer is None:
            return None
        item = self._base_item(shard, hit, "ANSWER", query_id, terms, r)
        item["AdditionalAttributes"] = [
            {
                "Key": "AnswerText",
                "ValueType": "TEXT_WITH_HIGHLIGHTS_VALUE",
                "Value": {
                    "TextWithHighlightsValue": _text(answer.text, answer.highlights, top=True)
                },
            }
        ]
        item["DocumentExcerpt"] = _text(answer.text, answer.highlights, top=True)
        item["ScoreAttributes"] = {"ScoreConfidence": confidence.value}
        return item

    def _base_item(
        self, shard: IndexShard, hit: Hit, kind: str, query_id: str, terms: list[str], r: Query
    ) -> dict[str, Any]:
        info = shard.document(hit.ordinal)
        result_id = (
            f"{query_id}-{kind[0]}{hashlib.sha1(info.document_id.encode()).hexdigest()[:34]}"  # noqa: S324 - an id, not security
        )
        item: dict[str, Any] = {
            "Id": result_id,
            "Type": kind,
            "Format": "TEXT",
            "DocumentId": info.document_id,
            "DocumentTitle": _text(info.title, highlight_terms(info.title, terms)),
            "DocumentAttributes": _attributes(shard, hit.ordinal, r.requested_document_attributes),
            "FeedbackToken": result_id,
        }
        if info.uri:
            item["DocumentURI"] = info.uri
        return item

    def _document_item(
        self,
        shard: IndexShard,
        hit: Hit,
        rank: int,
        terms: list[str],
        query_id: str,
        outcome: SearchOutcome,
        r: Query,
    ) -> dict[str, Any]:
        item = self._base_item(shard, hit, "DOCUMENT", query_id, terms, r)
        excerpt = make_excerpt(shard.passage_text(hit.pid), terms)
        item["DocumentExcerpt"] = _text(excerpt.text, excerpt.highlights)
        item["AdditionalAttributes"] = []
        item["ScoreAttributes"] = {"ScoreConfidence": _confidence(hit, outcome, rank).value}
        return item

    def _facets(self, shard: IndexShard, outcome: SearchOutcome, r: Query) -> list[dict[str, Any]]:
        if not r.facets:
            return []
        keys = [f.document_attribute_key for f in r.facets]
        counts = shard.table.facets(
            outcome.matched_ordinals.tolist(),
            keys,
            max_values=max(f.max_results or 10 for f in r.facets),
        )
        out = []
        for facet in r.facets:
            key = facet.document_attribute_key
            kind = shard.attribute_types[key]
            pairs = counts.get(key, [])[: facet.max_results or 10]
            element = flt.AttributeType.STRING if kind == flt.AttributeType.STRING_LIST else kind
            out.append(
                {
                    "DocumentAttributeKey": key,
                    "DocumentAttributeValueType": _VALUE_TYPES[kind],
                    "DocumentAttributeValueCountPairs": [
                        {
                            "DocumentAttributeValue": flt.attribute_to_json(element, value),
                            "Count": n,
                        }
                        for value, n in pairs
                    ],
                }
            )
        return out

    async def retrieve(self, r: Retrieve) -> dict[str, Any]:
        _, shard, outcome, _, _, _ = await self._search(r, group=False, want_all=False)
        query_id = str(uuid.uuid4())
        hits = outcome.hits[:MAX_RESULTS]
        start = (r.page_number - 1) * r.page_size
        items = []
        for rank, hit in enumerate(hits[start : start + r.page_size], start=start):
            info = shard.document(hit.ordinal)
            item: dict[str, Any] = {
                "Id": f"{query_id}-{hit.pid}",
                "DocumentId": info.document_id,
                "DocumentTitle": info.title,
                "Content": shard.passage_text(hit.pid),
                "DocumentAttributes": _attributes(
                    shard, hit.ordinal, r.requested_document_attributes
                ),
                "ScoreAttributes": {"ScoreConfidence": _confidence(hit, outcome, rank).value},
            }
            if info.uri:
                item["DocumentURI"] = info.uri
            items.append(item)
        return {"QueryId": query_id, "ResultItems": items}

    def _log_query(
        self,
        index_id: str,
        query_id: str,
        text: str,
        user: flt.UserContext | None,
        results: dict[str, str],
    ) -> None:
        logged = QueryLogged(
            index_id=index_id,
            query_id=query_id,
            query_text=text,
            user_id=user.user_id if user else None,
            results=results,
        )

        async def emit() -> None:
            try:
                await self.bus.emit(subjects.INDEX_QUERY_LOGGED, logged)
            except Exception as exc:  # the answer is already given; losing a log line is not fatal
                log.warning("query log not written: %s", exc)

        task = asyncio.create_task(emit())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- suggestions and feedback ----------------------------------------------------------

    async def get_query_suggestions(self, r: GetQuerySuggestions) -> dict[str, Any]:
        index = await self._index(r.index_id, active=True)
        shard = self.replica.shard(index.id)
        config = r.attribute_suggestions_config or {}
        user = flt.parse_user_context(config.get("UserContext"))
        if user is None and index.user_context_policy == "ATTRIBUTE_FILTER":
            visible = shard.table.mask(None)
        else:
            visible = shard.visible_documents(None, user, index.documents_without_acl_visible)
        settings = index.suggestions
        block = frozenset(w.lower() for w in settings.block_list)
        types = r.suggestion_types or ["QUERY"]
        texts: list[str] = []
        if "QUERY" in types and settings.mode == "ENABLED":
            activity = self.replica.activity_of(index.id)
            candidates = activity.queries.suggest(
                r.query_text,
                SuggestionSettings(
                    min_unique_users=settings.min_unique_users,
                    min_query_count=settings.min_query_count,
                    query_log_look_back_days=settings.look_back_days,
                    include_queries_without_user=settings.include_queries_without_user,
                    block_list=block,
                ),
                datetime.now(UTC),
                max_suggestions=r.max_suggestions_count * 2,
            )
            for text in candidates:
                # A query is suggested only if it finds something this user may see.
                if _visible_match(shard, text, visible):
                    texts.append(text)
        if "DOCUMENT_ATTRIBUTES" in types:
            titles = [
                shard.documents[o].title
                for o in np.flatnonzero(visible).tolist()
                if o in shard.documents and shard.documents[o].title
            ]
            texts.extend(title_suggestions(r.query_text, titles, block_list=block))
        seen: set[str] = set()
        suggestions = []
        for text in texts:
            if text.lower() in seen:
                continue
            seen.add(text.lower())
            suggestions.append(
                {
                    "Id": str(uuid.uuid4()),
                    "Value": {
                        "Text": {
                            "Text": text,
                            "Highlights": [
                                {"BeginOffset": s.begin, "EndOffset": s.end}
                                for s in highlight_prefix(text, r.query_text)
                            ],
                        }
                    },
                }
            )
            if len(suggestions) >= r.max_suggestions_count:
                break
        return {"QuerySuggestionsId": str(uuid.uuid4()), "Suggestions": suggestions}

    async def update_query_suggestions_config(
        self, r: UpdateQuerySuggestionsConfig
    ) -> dict[str, Any]:
        def change(index: Index) -> Index:
            current = index.suggestions
            updated = SuggestionsConfig(
                mode=r.mode or current.mode,
                look_back_days=r.query_log_look_back_window_in_days or current.look_back_days,
                include_queries_without_user=current.include_queries_without_user
                if r.include_queries_without_user_information is None
                else r.include_queries_without_user_information,
                min_unique_users=r.minimum_number_of_querying_users or current.min_unique_users,
                min_query_count=r.minimum_query_count or current.min_query_count,
                block_list=current.block_list if r.block_list is None else r.block_list,
            )
            return index.model_copy(update={"suggestions": updated})

        await self.indexes.mutate(r.index_id, change)
        self._index_cache.clear()
        return {}

    async def describe_query_suggestions_config(
        self, r: DescribeQuerySuggestionsConfig
    ) -> dict[str, Any]:
        index = await self._index(r.index_id)
        s = index.suggestions
        return {
            "Mode": s.mode,
            "Status": "ACTIVE",
            "QueryLogLookBackWindowInDays": s.look_back_days,
            "IncludeQueriesWithoutUserInformation": s.include_queries_without_user,
            "MinimumNumberOfQueryingUsers": s.min_unique_users,
            "MinimumQueryCount": s.min_query_count,
            "BlockListSize": len(s.block_list),
        }

    async def submit_feedback(self, r: SubmitFeedback) -> dict[str, Any]:
        await self._index(r.index_id, active=True)
        activity = self.replica.activity_of(r.index_id)
        # The query log is written just after the answer: give it a moment to arrive.
        for _ in range(40):
            if r.query_id in activity.results:
                break
            await asyncio.sleep(0.05)
        results = activity.results.get(r.query_id)
        if results is None:
            raise ValidationFailed(f"QueryId {r.query_id!r} is unknown to index {r.index_id}")
        given = [c.result_id for c in r.click_feedback_items or []] + [
            v.result_id for v in r.relevance_feedback_items or []
        ]
        unknown = [rid for rid in given if rid not in results]
        if unknown:
            raise ValidationFailed(f"result ids not returned by query {r.query_id}: {unknown}")
        await self.bus.emit(
            subjects.INDEX_FEEDBACK_SUBMITTED,
            FeedbackSubmitted(
                index_id=r.index_id,
                query_id=r.query_id,
                clicks=r.click_feedback_items or [],
                votes=r.relevance_feedback_items or [],
            ),
        )
        return {}

    async def describe_feedback(self, r: DescribeFeedback) -> dict[str, Any]:
        await self._index(r.index_id)
        activity = self.replica.activity_of(r.index_id)
        return {
            "Documents": [
                {
                    "DocumentId": doc,
                    "Clicks": f.clicks,
                    "Relevant": f.relevant,
                    "NotRelevant": f.not_relevant,
                }
                for doc, f in sorted(activity.feedback.items())
            ]
        }

    # -- FAQs ------------------------------------------------------------------------------

    async def create_faq(self, r: CreateFaq) -> dict[str, Any]:
        await self._index(r.index_id, active=True)
        bucket, key = r.s3_path.get("Bucket"), r.s3_path.get("Key")
        if bucket != UPLOAD_BUCKET or not key:
            raise ValidationFailed(
                f"S3Path must name an upload: Bucket {UPLOAD_BUCKET!r} and the Key returned by "
                "PUT /v1/index-uploads/{name}"
            )
        try:
            result = await self.uploads.get(key)
        except Exception:
            raise ValidationFailed(f"no upload named {key!r}") from None
        data = result.data or b""
        if len(data) > MAX_FAQ_BYTES:
            raise ValidationFailed(f"the FAQ file is over {MAX_FAQ_BYTES // 1024**2} MB")
        entries = parse_faq(data, r.file_format)
        faq_id = str(uuid.uuid4())
        now = datetime.now(UTC)
        record = FaqRecord(
            id=faq_id,
            index_id=r.index_id,
            name=r.name,
            description=r.description,
            s3_path=r.s3_path,
            file_format=r.file_format,
            language_code=r.language_code or "en",
            created_at=now,
            updated_at=now,
            entries=len(entries),
        )
        await self.faqs.create(f"{r.index_id}.{faq_id}", record, client_token=r.client_token)
        await self.bus.emit(
            subjects.INDEX_FAQ_LOADED,
            FaqLoaded(index_id=r.index_id, faq_id=faq_id, entries=entries),
        )
        return {"Id": faq_id}

    async def describe_faq(self, r: DescribeFaq) -> dict[str, Any]:
        return (await self.faqs.get(f"{r.index_id}.{r.id}")).value.kendra()

    async def list_faqs(self, r: ListFaqs) -> dict[str, Any]:
        await self._index(r.index_id)
        records = [v.value for v in await self.faqs.list() if v.value.index_id == r.index_id]
        records.sort(key=lambda rec: rec.id)
        if r.next_token:
            records = [rec for rec in records if rec.id > r.next_token]
        page = records[: r.max_results]
        summary = ("Id", "Name", "Status", "CreatedAt", "UpdatedAt", "FileFormat", "LanguageCode")
        out: dict[str, Any] = {
            "FaqSummaryItems": [{k: rec.kendra()[k] for k in summary} for rec in page]
        }
        if len(records) > r.max_results:
            out["NextToken"] = page[-1].id
        return out

    async def delete_faq(self, r: DeleteFaq) -> dict[str, Any]:
        await self.faqs.delete(f"{r.index_id}.{r.id}")
        await self.bus.emit(
            subjects.INDEX_FAQ_REMOVED, FaqRemoved(index_id=r.index_id, faq_id=r.id)
        )
        return {}


# -- pure helpers ------------------------------------------------------------------------------


def _visible_match(shard: IndexShard, text: str, visible: np.ndarray) -> bool:
    outcome = shard.search(
        text, None, visible, mode="KEYWORD", group_by_document=True, tuning=Tuning()
    )
    return bool(outcome.hits)


def _confidence(hit: Hit, outcome: SearchOutcome, rank: int) -> ScoreConfidence:
    share = (
        hit.keyword_score / outcome.best_keyword
        if hit.keyword_score is not None and outcome.best_keyword > 0
        else None
    )
    return score_confidence(semantic_similarity=hit.similarity, keyword_rank_share=share, rank=rank)


def _attributes(
    shard: IndexShard, ordinal: int, requested: list[str] | None
) -> list[dict[str, Any]]:
    attributes = shard.table.attributes(ordinal)
    keys = sorted(attributes) if requested is None else [k for k in requested if k in attributes]
    return [{"Key": key, "Value": flt.attribute_to_json(*attributes[key])} for key in keys]


def _sort(shard: IndexShard, hits: list[Hit], key: str, order: str) -> list[Hit]:
    present = [(h, shard.table.value(h.ordinal, key)) for h in hits]
    with_value = [(h, v) for h, v in present if v is not None]
    missing = [h for h, v in present if v is None]

    def sort_key(pair: tuple[Hit, Any]) -> Any:
        value = pair[1]
        return sorted(value) if isinstance(value, list) else value

    with_value.sort(key=sort_key, reverse=order == "DESC")
    return [h for h, _ in with_value] + missing


def _faq_item(entry: FaqEntry, score: float, query_id: str, terms: list[str]) -> dict[str, Any]:
    digest = hashlib.sha1(entry.question.encode()).hexdigest()[:34]  # noqa: S324 - an id
    result_id = f"{query_id}-Q{digest}"
    item: dict[str, Any] = {
        "Id": result_id,
        "Type": "QUESTION_ANSWER",
        "Format": "TEXT",
        "AdditionalAttributes": [
            {
                "Key": "QuestionText",
                "ValueType": "TEXT_WITH_HIGHLIGHTS_VALUE",
                "Value": {
                    "TextWithHighlightsValue": _text(
                        entry.question, highlight_terms(entry.question, terms)
                    )
                },
            },
            {
                "Key": "AnswerText",
                "ValueType": "TEXT_WITH_HIGHLIGHTS_VALUE",
                "Value": {"TextWithHighlightsValue": _text(entry.answer, [])},
            },
        ],
        "DocumentExcerpt": _text(entry.answer, []),
        "ScoreAttributes": {
            "ScoreConfidence": (
                ScoreConfidence.VERY_HIGH if score >= 0.85 else ScoreConfidence.HIGH
            ).value
        },
        "FeedbackToken": result_id,
    }
    if entry.uri:
        item["DocumentURI"] = entry.uri
    return item


def _check_relevance(config: DocumentMetadataConfiguration) -> None:
    relevance = config.relevance
    if relevance is None:
        return
    if relevance.freshness and config.type != "DATE_VALUE":
        raise ValidationFailed(f"{config.name}: Freshness applies to DATE_VALUE attributes only")
    if relevance.value_importance_map and config.type not in ("STRING_VALUE", "STRING_LIST_VALUE"):
        raise ValidationFailed(f"{config.name}: ValueImportanceMap applies to string attributes")
    for value, importance in (relevance.value_importance_map or {}).items():
        if not 1 <= importance <= 10:
            raise ValidationFailed(f"{config.name}: importance of {value!r} must be 1-10")


def _tuning(index: Index, overrides: list[DocumentMetadataConfiguration] | None) -> Tuning:
    configs = dict(index.metadata)
    for override in overrides or []:
        _check_relevance(override)
        configs[override.name] = override.model_dump(by_alias=True, exclude_none=True)
    title = body = None
    freshness = None
    values: dict[str, dict[str, int]] = {}
    for name, config in configs.items():
        relevance = config.get("Relevance") or {}
        importance = relevance.get("Importance")
        if name == "_document_title":
            title = importance
        elif name == "_document_body":
            body = importance
        if relevance.get("Freshness") and importance:
            seconds = int(str(relevance.get("Duration") or "2592000s").rstrip("s"))
            freshness = (name, timedelta(seconds=seconds), int(importance))
        if relevance.get("ValueImportanceMap"):
            values[name] = dict(relevance["ValueImportanceMap"])
    return Tuning(title, body, freshness, values)


def _source_document(index_id: str, doc: IndexDocument) -> SourceDocument:
    """Text out of a BatchPutDocument document: Text, or Blob by its ContentType."""
    if doc.s3_path is not None:
        raise ValidationFailed("S3Path documents are not supported: send Blob or Text")
    if doc.blob is None and doc.text is None:
        raise ValidationFailed("a document needs Blob or Text")
    content_type = doc.content_type or "PLAIN_TEXT"
    uri = next(
        (
            str((a.get("Value") or {}).get("StringValue"))
            for a in doc.attributes
            if isinstance(a, dict) and a.get("Key") == "_source_uri"
        ),
        None,
    )
    if doc.text is not None:
        extracted = plain(doc.text)
    else:
        try:
            data = base64.b64decode(doc.blob or "", validate=True)
        except ValueError:
            raise ValidationFailed("Blob is not base64") from None
        # A PDF without a title in its metadata is named after its file.
        extracted = extract_for(content_type, data, base_url=uri or doc.id)
    title = doc.title or extracted.title
    return SourceDocument(
        index_id=index_id,
        document_id=doc.id,
        title=title,
        text=extracted.text,
        headings=[h.text for h in extracted.headings],
        uri=uri,
        content_type=content_type,
        language=extracted.language,
        attributes=doc.attributes,
        access_control_list=doc.access_control_list,
    )


def parse_faq(data: bytes, file_format: str) -> list[FaqEntry]:
    """Kendra's FAQ files: CSV rows `question,answer[,url]` (optionally with a header), or JSON."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationFailed("the FAQ file is not UTF-8") from None
    rows: list[tuple[str, str, str | None]] = []
    if file_format == "JSON":
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValidationFailed(f"the FAQ file is not JSON: {exc}") from None
        items = parsed.get("FaqDocuments") if isinstance(parsed, dict) else None
        if not isinstance(items, list):
            raise ValidationFailed('a JSON FAQ file holds {"FaqDocuments": [...]}')
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not item.get("Question") or not item.get("Answer"):
                raise ValidationFailed(f"FaqDocuments[{i}] needs Question and Answer")
            rows.append(
                (
                    str(item["Question"]),
                    str(item["Answer"]),
                    item.get("Attributes", {}).get("_source_uri"),
                )
            )
    else:
        reader = csv.reader(io.StringIO(text))
        if file_format == "CSV_WITH_HEADER":
            next(reader, None)
        for line, row in enumerate(reader, start=1):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) < 2 or not row[0].strip() or not row[1].strip():
                raise ValidationFailed(f"FAQ row {line}: needs a question and an answer")
            rows.append(
                (
                    row[0].strip(),
                    row[1].strip(),
                    row[2].strip() if len(row) > 2 and row[2].strip() else None,
                )
            )
    if not rows:
        raise ValidationFailed("the FAQ file has no question and answer")
    try:
        return [FaqEntry(question=q, answer=a, uri=u) for q, a, u in rows]
    except ValueError as exc:
        raise ValidationFailed(f"FAQ entry rejected: {exc}") from None
