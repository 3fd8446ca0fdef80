"""Secrets Manager operations on the AWS endpoint, for data source credentials.

CreateSecret, DescribeSecret, ListSecrets, PutSecretValue and DeleteSecret only: no operation
returns a value (there is no GetSecretValue), so the AWS API cannot read a secret back.
"""

from __future__ import annotations

from typing import Any

from contracts import subjects
from contracts.aws import AwsOperation as SecretOperation
from contracts.crawl import SECRET_OPERATIONS, CrawlResult
from services.gateway.aws.dispatcher import SECRETS_MANAGER, AwsCall, AwsOperations, Handler, parse
from services.gateway.aws.errors import AwsError

# Secrets Manager's names for Trellis' error kinds; a conflict on create is an existing name.
_CODES = {
    "ValidationException": "InvalidParameterException",
    "ConflictException": "InvalidRequestException",
    "InternalServerException": "InternalServiceError",
}


def secrets_operation(operation: SecretOperation, subject: str) -> Handler:
    async def handle(call: AwsCall, body: dict[str, Any]) -> dict[str, Any]:
        try:
            request = parse(operation.request, body)
            result = await call.request(subject, request, CrawlResult)
        except AwsError as exc:
            code = _CODES.get(exc.code, exc.code)
            if exc.code == "ConflictException" and operation.name == "CreateSecret":
                code = "ResourceExistsException"
            raise AwsError(code, exc.message, exc.status) from None
        return result.output

    return handle


def register(operations: AwsOperations) -> None:
    for operation in SECRET_OPERATIONS:
        subject = subjects.crawl_operation(operation.bus_operation)
        operations.add(
            SECRETS_MANAGER, operation.name, "crawler", secrets_operation(operation, subject)
        )
