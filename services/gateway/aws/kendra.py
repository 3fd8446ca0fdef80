"""Kendra operations on the AWS endpoint: the indexer's (indexes, documents, search) and the crawler's."""

from __future__ import annotations

from typing import Any

from contracts import subjects
from contracts.crawl import CRAWL_OPERATIONS, CrawlResult
from contracts.index import (
    KENDRA_OPERATIONS,
    IndexResult,
    KendraOperation,
    ListIndexesReply,
    ListIndexesRequest,
)
from services.gateway.aws.dispatcher import KENDRA, AwsCall, AwsOperations, Handler, parse
from services.gateway.aws.errors import validation

# Trellis extensions that boto3 cannot send; refused on the AWS endpoint to keep it Kendra's.
REST_ONLY = frozenset(
    {"RankingMode", "DocumentsWithoutAclVisible", "BlockList", "Text", "SyncMode"}
)


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


def kendra_operation(
    operation: KendraOperation, subject: str, reply: type[IndexResult | CrawlResult]
) -> Handler:
    """Parse Kendra's input into the operation's contract, send it, return Kendra's output."""

    async def handle(call: AwsCall, body: dict[str, Any]) -> dict[str, Any]:
        extensions = REST_ONLY & set(body)
        if extensions:
            raise validation(f"unknown parameters {sorted(extensions)}")
        request = parse(operation.request, body)
        result = await call.request(subject, request, reply)
        return result.output

    return handle


def register(operations: AwsOperations) -> None:
    operations.add(KENDRA, "ListIndices", "indexer", list_indices)
    for operation in KENDRA_OPERATIONS:
        if operation.name == "DescribeFeedback":
            continue  # a Trellis report, REST only
        subject = subjects.index_operation(operation.bus_operation)
        operations.add(
            KENDRA, operation.name, "indexer", kendra_operation(operation, subject, IndexResult)
        )
    for operation in CRAWL_OPERATIONS:
        subject = subjects.crawl_operation(operation.bus_operation)
        operations.add(
            KENDRA, operation.name, "crawler", kendra_operation(operation, subject, CrawlResult)
        )
