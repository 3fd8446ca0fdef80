"""Kendra operations on the AWS endpoint (more arrive with the indexer and crawler issues)."""

from __future__ import annotations

from typing import Any

from contracts import subjects
from contracts.index import ListIndexesReply, ListIndexesRequest
from services.gateway.aws.dispatcher import KENDRA, AwsCall, AwsOperations, parse
from services.gateway.aws.errors import validation


async def list_indices(call: AwsCall, body: dict[str, Any]) -> dict[str, Any]:
    unknown = set(body) - {"NextToken", "MaxResults"}
    if unknown:
        raise validation(f"unknown parameters {sorted(unknown)}")
    request = parse(
        ListIndexesRequest,
        {
            k: v
            for k, v in {
                "next_token": body.get("NextToken"),
                "max_results": body.get("MaxResults"),
            }.items()
            if v is not None
        },
    )
    reply = await call.request(subjects.INDEX_LIST_INDEXES, request, ListIndexesReply)
    result: dict[str, Any] = {
        "IndexConfigurationSummaryItems": [
            {
                "Name": ix.name,
                "Id": ix.id,
                "Edition": ix.edition,
                "CreatedAt": ix.created_at.timestamp(),
                "UpdatedAt": ix.updated_at.timestamp(),
                "Status": ix.status,
            }
            for ix in reply.indexes
        ]
    }
    if reply.next_token:
        result["NextToken"] = reply.next_token
    return result


def register(operations: AwsOperations) -> None:
    operations.add(KENDRA, "ListIndices", "indexer", list_indices)
