"""Fraud Detector operations on the AWS endpoint (more arrive with the fraud service's issue)."""

from __future__ import annotations

from typing import Any

from contracts import subjects
from contracts.fraud import GetKmsEncryptionKeyRequest, KmsEncryptionKey, PutKmsEncryptionKeyCommand
from services.gateway.aws.dispatcher import FRAUD_DETECTOR, AwsCall, AwsOperations, parse
from services.gateway.aws.errors import validation


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


def register(operations: AwsOperations) -> None:
    operations.add(FRAUD_DETECTOR, "GetKMSEncryptionKey", "fraud", get_kms_encryption_key)
    operations.add(FRAUD_DETECTOR, "PutKMSEncryptionKey", "fraud", put_kms_encryption_key)
