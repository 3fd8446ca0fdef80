"""REST for the indexer: /v1/indexes resources, search, documents, FAQs and uploads."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request

from contracts import subjects, topology
from contracts.aws import AwsMessage, AwsOperation
from contracts.crawl import CrawlResult
from contracts.images import ImageResult
from contracts.index import (
    KENDRA_OPERATIONS,
    IndexResult,
    ListIndexesReply,
    ListIndexesRequest,
)
from runtime.errors import ValidationFailed
from runtime.object_store import open_object_store
from services.gateway.auth import require
from services.gateway.aws.dispatcher import parse_model
from services.gateway.domain.keys import Access, Principal

router = APIRouter(prefix="/v1/indexes", tags=["search"])
OPERATIONS = {op.name: op for op in KENDRA_OPERATIONS}
ReadIndex = Annotated[Principal, Depends(require("indexer", Access.READ))]
WriteIndex = Annotated[Principal, Depends(require("indexer", Access.WRITE))]
Json = Annotated[dict[str, Any], Body()]


async def call_operation(
    request: Request,
    spec: AwsOperation,
    subject: str,
    body: dict[str, Any],
    reply: type[IndexResult | CrawlResult | ImageResult],
    service: str,
) -> dict[str, Any]:
    """An AWS-shaped operation from REST: validate the body as its contract, ask the service."""
    message: AwsMessage = parse_model(spec.request, body)
    result: IndexResult | CrawlResult | ImageResult = await request.app.state.bus.request(
        subject,
        message,
        reply,
        timeout_s=request.app.state.settings.request_timeout_s,
        service=service,
    )
    return result.output


async def _call(request: Request, operation: str, body: dict[str, Any]) -> dict[str, Any]:
    spec = OPERATIONS[operation]
    subject = subjects.index_operation(spec.bus_operation)
    return await call_operation(request, spec, subject, body, IndexResult, "indexer")


@router.get("", summary="List indexes")
async def list_indexes(
    request: Request, _: ReadIndex, next_token: str | None = None, max_results: int = 100
) -> dict[str, Any]:
    message = parse_model(
        ListIndexesRequest, {"next_token": next_token, "max_results": max_results}
    )
    reply: ListIndexesReply = await request.app.state.bus.request(
        subjects.INDEX_LIST_INDEXES,
        message,
        ListIndexesReply,
        timeout_s=request.app.state.settings.request_timeout_s,
        service="indexer",
    )
    out: dict[str, Any] = {
        "Indexes": [
            {
                "Id": ix.id,
                "Name": ix.name,
                "Edition": ix.edition,
                "Status": ix.status,
                "CreatedAt": ix.created_at.isoformat(),
                "UpdatedAt": ix.updated_at.isoformat(),
            }
            for ix in reply.indexes
        ]
    }
    if reply.next_token:
        out["NextToken"] = reply.next_token
    return out


@router.post("", summary="Create an index (Kendra CreateIndex)", status_code=201)
async def create_index(request: Request, _: WriteIndex, body: Json) -> dict[str, Any]:
    return await _call(request, "CreateIndex", body)


@router.get("/{index_id}", summary="Describe an index, with its statistics")
async def describe_index(index_id: str, request: Request, _: ReadIndex) -> dict[str, Any]:
    return await _call(request, "DescribeIndex", {"Id": index_id})


@router.patch("/{index_id}", summary="Update an index (Kendra UpdateIndex)")
async def update_index(
    index_id: str, request: Request, _: WriteIndex, body: Json
) -> dict[str, Any]:
    return await _call(request, "UpdateIndex", {**body, "Id": index_id})


@router.delete("/{index_id}", summary="Delete an index and everything in it")
async def delete_index(index_id: str, request: Request, _: WriteIndex) -> dict[str, Any]:
    return await _call(request, "DeleteIndex", {"Id": index_id})


@router.post("/{index_id}/documents", summary="Put up to 10 documents (BatchPutDocument)")
async def put_documents(
    index_id: str, request: Request, _: WriteIndex, body: Json
) -> dict[str, Any]:
    return await _call(request, "BatchPutDocument", {**body, "IndexId": index_id})


@router.post("/{index_id}/documents/delete", summary="Delete documents (BatchDeleteDocument)")
async def delete_documents(
    index_id: str, request: Request, _: WriteIndex, body: Json
) -> dict[str, Any]:
    return await _call(request, "BatchDeleteDocument", {**body, "IndexId": index_id})


@router.post("/{index_id}/query", summary="Query: answers, FAQ answers and documents")
async def query(index_id: str, request: Request, _: ReadIndex, body: Json) -> dict[str, Any]:
    return await _call(request, "Query", {**body, "IndexId": index_id})


@router.post("/{index_id}/retrieve", summary="Retrieve passages for retrieval-augmented generation")
async def retrieve(index_id: str, request: Request, _: ReadIndex, body: Json) -> dict[str, Any]:
    return await _call(request, "Retrieve", {**body, "IndexId": index_id})


@router.post("/{index_id}/suggestions", summary="Query suggestions (GetQuerySuggestions)")
async def suggestions(index_id: str, request: Request, _: ReadIndex, body: Json) -> dict[str, Any]:
    return await _call(request, "GetQuerySuggestions", {**body, "IndexId": index_id})


@router.put("/{index_id}/suggestions/config", summary="Query suggestion settings and block list")
async def suggestions_config(
    index_id: str, request: Request, _: WriteIndex, body: Json
) -> dict[str, Any]:
    return await _call(request, "UpdateQuerySuggestionsConfig", {**body, "IndexId": index_id})


@router.get("/{index_id}/suggestions/config", summary="Query suggestion settings")
async def describe_suggestions_config(
    index_id: str, request: Request, _: ReadIndex
) -> dict[str, Any]:
    return await _call(request, "DescribeQuerySuggestionsConfig", {"IndexId": index_id})


@router.post("/{index_id}/feedback", summary="Clicks and relevance votes (SubmitFeedback)")
async def feedback(index_id: str, request: Request, _: ReadIndex, body: Json) -> dict[str, Any]:
    return await _call(request, "SubmitFeedback", {**body, "IndexId": index_id})


@router.get("/{index_id}/feedback", summary="Feedback stored per document")
async def feedback_report(index_id: str, request: Request, _: ReadIndex) -> dict[str, Any]:
    return await _call(request, "DescribeFeedback", {"IndexId": index_id})


@router.post("/{index_id}/faqs", summary="Create an FAQ from an uploaded file", status_code=201)
async def create_faq(index_id: str, request: Request, _: WriteIndex, body: Json) -> dict[str, Any]:
    return await _call(request, "CreateFaq", {**body, "IndexId": index_id})


@router.get("/{index_id}/faqs", summary="List FAQs")
async def list_faqs(index_id: str, request: Request, _: ReadIndex) -> dict[str, Any]:
    return await _call(request, "ListFaqs", {"IndexId": index_id})


@router.get("/{index_id}/faqs/{faq_id}", summary="Describe an FAQ")
async def describe_faq(
    index_id: str, faq_id: str, request: Request, _: ReadIndex
) -> dict[str, Any]:
    return await _call(request, "DescribeFaq", {"IndexId": index_id, "Id": faq_id})


@router.delete("/{index_id}/faqs/{faq_id}", summary="Delete an FAQ")
async def delete_faq(index_id: str, faq_id: str, request: Request, _: WriteIndex) -> dict[str, Any]:
    return await _call(request, "DeleteFaq", {"IndexId": index_id, "Id": faq_id})


uploads = APIRouter(prefix="/v1/index-uploads", tags=["search"])


@uploads.put("/{name}", summary="Upload an FAQ file; use the returned S3Path in CreateFaq")
async def upload(name: str, request: Request, _: WriteIndex) -> dict[str, Any]:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}", name):
        raise ValidationFailed("upload names are 1-200 characters: letters, digits, '.', '_', '-'")
    data = await request.body()
    if not data:
        raise ValidationFailed("the upload is empty")
    store = await open_object_store(
        request.app.state.bus.js, topology.INDEX_UPLOADS, "FAQ files uploaded through the gateway"
    )
    await store.put(name, data)
    bucket = topology.UPLOADS_LOCATION.removeprefix("s3://").rstrip("/")
    return {"S3Path": {"Bucket": bucket, "Key": name}, "Size": len(data)}
