"""REST for the crawler: /v1/data-sources and their sync jobs (Kendra's shapes)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request

from contracts import subjects
from contracts.crawl import CRAWL_OPERATIONS, SECRET_OPERATIONS, CrawlResult
from services.gateway.auth import require
from services.gateway.domain.keys import Access, Principal
from services.gateway.handlers.indexes import call_operation

router = APIRouter(prefix="/v1/data-sources", tags=["crawler"])
OPERATIONS = {op.name: op for op in (*CRAWL_OPERATIONS, *SECRET_OPERATIONS)}
ReadCrawler = Annotated[Principal, Depends(require("crawler", Access.READ))]
WriteCrawler = Annotated[Principal, Depends(require("crawler", Access.WRITE))]
Json = Annotated[dict[str, Any], Body()]


async def call_crawler(request: Request, operation: str, body: dict[str, Any]) -> dict[str, Any]:
    """A crawler operation (data sources, syncs, secrets) by its AWS name, over the bus."""
    spec = OPERATIONS[operation]
    subject = subjects.crawl_operation(spec.bus_operation)
    return await call_operation(request, spec, subject, body, CrawlResult, "crawler")


@router.post(
    "", summary="Create a web crawler data source (Kendra CreateDataSource)", status_code=201
)
async def create(request: Request, _: WriteCrawler, body: Json) -> dict[str, Any]:
    return await call_crawler(request, "CreateDataSource", body)


@router.get("", summary="List an index's data sources")
async def list_sources(request: Request, _: ReadCrawler, index_id: str) -> dict[str, Any]:
    return await call_crawler(request, "ListDataSources", {"IndexId": index_id})


@router.get("/{source_id}", summary="Describe a data source")
async def describe(
    source_id: str, request: Request, _: ReadCrawler, index_id: str
) -> dict[str, Any]:
    return await call_crawler(request, "DescribeDataSource", {"Id": source_id, "IndexId": index_id})


@router.patch("/{source_id}", summary="Update a data source")
async def update(source_id: str, request: Request, _: WriteCrawler, body: Json) -> dict[str, Any]:
    return await call_crawler(request, "UpdateDataSource", {**body, "Id": source_id})


@router.delete("/{source_id}", summary="Delete a data source")
async def delete(
    source_id: str, request: Request, _: WriteCrawler, index_id: str
) -> dict[str, Any]:
    return await call_crawler(request, "DeleteDataSource", {"Id": source_id, "IndexId": index_id})


@router.post("/{source_id}/sync-jobs", summary="Start a sync", status_code=201)
async def start_sync(
    source_id: str, request: Request, _: WriteCrawler, body: Json
) -> dict[str, Any]:
    return await call_crawler(request, "StartDataSourceSyncJob", {**body, "Id": source_id})


@router.post("/{source_id}/sync-jobs/stop", summary="Stop the running sync")
async def stop_sync(
    source_id: str, request: Request, _: WriteCrawler, body: Json
) -> dict[str, Any]:
    return await call_crawler(request, "StopDataSourceSyncJob", {**body, "Id": source_id})


@router.get("/{source_id}/sync-jobs", summary="Sync history with metrics and errors")
async def history(
    source_id: str,
    request: Request,
    _: ReadCrawler,
    index_id: str,
    next_token: str | None = None,
    max_results: int | None = None,
    status: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"Id": source_id, "IndexId": index_id}
    for name, value in (
        ("NextToken", next_token),
        ("MaxResults", max_results),
        ("StatusFilter", status),
    ):
        if value is not None:
            body[name] = value
    return await call_crawler(request, "ListDataSourceSyncJobs", body)
