"""REST for data source credentials: /v1/secrets (Secrets Manager's shapes; values never returned)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from services.gateway.handlers.data_sources import Json, ReadCrawler, WriteCrawler, call_crawler

router = APIRouter(prefix="/v1/secrets", tags=["crawler"])


@router.post(
    "",
    summary='Create a secret: SecretString {"username", "password"} (CreateSecret)',
    status_code=201,
)
async def create(request: Request, _: WriteCrawler, body: Json) -> dict[str, Any]:
    return await call_crawler(request, "CreateSecret", body)


@router.get("", summary="List secrets, without their values")
async def list_secrets(
    request: Request, _: ReadCrawler, next_token: str | None = None, max_results: int = 100
) -> dict[str, Any]:
    body: dict[str, Any] = {"MaxResults": max_results}
    if next_token:
        body["NextToken"] = next_token
    return await call_crawler(request, "ListSecrets", body)


@router.put("/{name:path}/value", summary="Replace a secret's value (PutSecretValue)")
async def put_value(name: str, request: Request, _: WriteCrawler, body: Json) -> dict[str, Any]:
    return await call_crawler(request, "PutSecretValue", {**body, "SecretId": name})


@router.get("/{name:path}", summary="Describe a secret and the data sources using it")
async def describe(name: str, request: Request, _: ReadCrawler) -> dict[str, Any]:
    return await call_crawler(request, "DescribeSecret", {"SecretId": name})


@router.delete("/{name:path}", summary="Delete a secret no data source uses")
async def delete(name: str, request: Request, _: WriteCrawler) -> dict[str, Any]:
    return await call_crawler(request, "DeleteSecret", {"SecretId": name})
