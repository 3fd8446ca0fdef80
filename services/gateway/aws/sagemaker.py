"""SageMaker image, app image config, domain and user profile operations on the AWS endpoint."""

from __future__ import annotations

from typing import Any

from contracts import subjects
from contracts.aws import AwsOperation
from contracts.images import SAGEMAKER_OPERATIONS, ImageResult
from services.gateway.aws.dispatcher import SAGEMAKER, AwsCall, AwsOperations, Handler, parse
from services.gateway.aws.errors import AwsError

# SageMaker's own error names (boto3 raises client.exceptions.ResourceNotFound and so on).
_SAGEMAKER_ERRORS = {
    "ResourceNotFoundException": ("ResourceNotFound", 400),
    "ConflictException": ("ResourceInUse", 400),
}


def sagemaker_operation(operation: AwsOperation) -> Handler:
    """Parse SageMaker's input into the operation's contract, send it, return SageMaker's output."""
    subject = subjects.image_operation(operation.bus_operation)

    async def handle(call: AwsCall, body: dict[str, Any]) -> dict[str, Any]:
        request = parse(operation.request, body)
        try:
            result = await call.request(subject, request, ImageResult)
        except AwsError as exc:
            code, status = _SAGEMAKER_ERRORS.get(exc.code, (exc.code, exc.status))
            raise AwsError(code, exc.message, status) from None
        # Trellis additions stay on REST: the AWS endpoint answers SageMaker's shapes only.
        return {k: v for k, v in result.output.items() if k not in {"Findings", "Aliases"}}

    return handle


def register(operations: AwsOperations) -> None:
    for operation in SAGEMAKER_OPERATIONS:
        operations.add(SAGEMAKER, operation.name, "image_builder", sagemaker_operation(operation))
