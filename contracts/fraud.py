"""Fraud Detector messages (filled in by the fraud service's issue)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from contracts.envelope import Command, Message

DEFAULT_KMS_KEY = "DEFAULT"


class GetKmsEncryptionKeyRequest(Message):
    message_type: ClassVar[str] = "fraud.v1.get_kms_encryption_key_request"


class KmsEncryptionKey(Message):
    message_type: ClassVar[str] = "fraud.v1.kms_encryption_key"

    kms_encryption_key_arn: str = Field(min_length=7, max_length=90)


class PutKmsEncryptionKeyCommand(Command):
    message_type: ClassVar[str] = "fraud.v1.put_kms_encryption_key_command"

    kms_encryption_key_arn: str = Field(
        min_length=7,
        max_length=90,
        pattern=r"^(DEFAULT|arn:[a-zA-Z0-9-]+:kms:[a-zA-Z0-9-]+:\d{12}:key\/\w{8}-\w{4}-\w{4}-\w{4}-\w{12})$",
    )
