"""Account-level Fraud Detector settings."""

from __future__ import annotations

from pydantic import BaseModel

from contracts.fraud import DEFAULT_KMS_KEY

ACCOUNT_KEY = "account"


class AccountSettings(BaseModel):
    kms_encryption_key_arn: str = DEFAULT_KMS_KEY
