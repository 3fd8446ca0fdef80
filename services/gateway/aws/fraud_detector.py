"""Fraud Detector operations on the AWS endpoint (more arrive with the fraud service's issue)."""

from __future__ import annotations

from typing import Any

from contracts import subjects
from contracts.fraud import (
    AFD_OPERATIONS,
    AfdOperation,
    FraudResult,
    GetKmsEncryptionKeyRequest,
    KmsEncryptionKey,
    PutKmsEncryptionKeyCommand,
)
from services.gateway.aws.dispatcher import FRAUD_DETECTOR, AwsCall, AwsOperations, Handler, parse
from services.gateway.aws.errors import validation
from services.gateway.domain.keys import Access


async def get_kms_encryption_key(call: AwsCall, body: dict[str, Any]) -> dict[str, Any]:
    if body:
        raise validation(f"GetKMSEncryptionKey takes no parameters, got {sorted(body)}")
    key = await call.request(
        subjects.FRAUD_GET_KMS_ENCRYPTION_KEY, GetKmsEncryptionKeyRequest(), KmsEncryptionKey
    )
    return {"kmsKey": {"kmsEncryptionKeyArn": key.kms_encryption_key_arn}}


async def put_kms_encryption_key(call: AwsCall, body: dict[str, Any]) -> dict[str, Any]:
    unknown = set(body) - {"kmsEncryptionKeyArn"}
    if unknown:
        raise validation(f"unknown parameters {sorted(unknown)}")
    command = parse(
        PutKmsEncryptionKeyCommand, {"kms_encryption_key_arn": body.get("kmsEncryptionKeyArn")}
    )
    await call.request(subjects.FRAUD_PUT_KMS_ENCRYPTION_KEY, command, KmsEncryptionKey)
    return {}


def afd_operation(operation: AfdOperation) -> Handler:
    """Parse AFD's input into the operation's contract, send it, return AFD's output."""
    subject = subjects.fraud_operation(operation.bus_operation)

    async def handle(call: AwsCall, body: dict[str, Any]) -> dict[str, Any]:
        fixed = dict(operation.fixed)
        clash = set(body) & set(fixed)
        if clash:
            raise validation(f"unknown parameters {sorted(clash)}")
        if operation.name == "GetEventPrediction":
            # AFD's output has no explanations (boto3 drops unknown keys): skip their cost.
            body = {"explain": False, **body}
        request = parse(operation.request, {**body, **fixed})
        result = await call.request(subject, request, FraudResult)
        return result.output

    return handle


def register(operations: AwsOperations) -> None:
    operations.add(FRAUD_DETECTOR, "GetKMSEncryptionKey", "fraud", get_kms_encryption_key)
    operations.add(FRAUD_DETECTOR, "PutKMSEncryptionKey", "fraud", put_kms_encryption_key)
    for operation in AFD_OPERATIONS:
        # Predictions read nothing they change, but they are the service's main use: writers only.
        access = Access.WRITE if operation.name == "GetEventPrediction" else None
        operations.add(
            FRAUD_DETECTOR, operation.name, "fraud", afd_operation(operation), access=access
        )
