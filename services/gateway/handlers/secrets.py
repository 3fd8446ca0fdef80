"""REST for data source credentials: /v1/secrets (Secrets Manager's shapes; values never returned)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request

from contracts import subjects
from contracts.crawl import SECRET_OPERATIONS, CrawlResult
from services.gateway.auth import require
from services.gateway.domain.keys import Access, Principal
from services.gateway.handlers.indexes import call_operation

router = APIRouter(prefix="/v1/secrets", tags=["crawler"])
OPERATIONS = {op.name: op for op in SECRET_OPERATIONS}
ReadCrawler = Annotated[Principal, Depends(require("crawler", Access.READ))]
WriteCrawler = Annotated[Principal, Depends(require("crawler", Access.WRITE))]
Json = Annotated[dict[str, Any], Body()]


async def _call(request: Request, operation: str, body: dict[str, Any]) -> dict[str, Any]:
    spec = OPERATIONS[operation]
    subject = subjects.crawl_operation(spec.bus_operation)
    return await call_operation(request, spec, subject, body, CrawlResult, "crawler")


@router.post(
    "",
    summary='Create a secret: SecretString {"username", "password"} (CreateSecret)',
    status_code=201,
)
async def create(request: Request, _: WriteCrawler, body: Json) -> dict[str, Any]:
    return await _call(request, "CreateSecret", body)


@router.get("", summary="List secrets, without their values")
async def list_secrets(
    request: Request, _: ReadCrawler, next_token: str | None = None, max_results: int = 100
) -> dict[str, Any]:
    body: dict[str, Any] = {"MaxResults": max_results}
    if next_token:
        body["NextToken"] = next_token
    return await _call(request, "ListSecrets", body)


@router.put("/{name:path}/value", summary="Replace a secret's value (PutSecretValue)")
async def put_value(name: str, request: Request, _: WriteCrawler, body: Json) -> dict[str, Any]:
    return await _call(request, "PutSecretValue", {**body, "SecretId": name})


@router.get("/{name:path}", summary="Describe a secret and the data sources using it")
async def describe(name: str, request: Request, _: ReadCrawler) -> dict[str, Any]:
    return await _call(request, "DescribeSecret", {"SecretId": name})


@router.delete("/{name:path}", summary="Delete a secret no data source uses")
async def delete(name: str, request: Request, _: WriteCrawler) -> dict[str, Any]:
    return await _call(request, "DeleteSecret", {"SecretId": name})
