"""Thin handlers of the fraud service: decode, call the domain and stores, reply."""

from __future__ import annotations

from contracts.envelope import EnvelopeMeta
from contracts.fraud import GetKmsEncryptionKeyRequest, KmsEncryptionKey, PutKmsEncryptionKeyCommand
from runtime.errors import NotFound
from runtime.kv import ResourceStore
from services.fraud.domain.account import ACCOUNT_KEY, AccountSettings


class FraudHandlers:
    def __init__(self, account: ResourceStore[AccountSettings]) -> None:
        self.account = account

    async def _settings(self) -> AccountSettings:
        try:
            return (await self.account.get(ACCOUNT_KEY)).value
        except NotFound:
            return AccountSettings()

    async def get_kms_encryption_key(
        self, _: GetKmsEncryptionKeyRequest, __: EnvelopeMeta
    ) -> KmsEncryptionKey:
        settings = await self._settings()
        return KmsEncryptionKey(kms_encryption_key_arn=settings.kms_encryption_key_arn)

    async def put_kms_encryption_key(
        self, command: PutKmsEncryptionKeyCommand, _: EnvelopeMeta
    ) -> KmsEncryptionKey:
        updated = (await self._settings()).model_copy(
            update={"kms_encryption_key_arn": command.kms_encryption_key_arn}
        )
        await self.account.put(ACCOUNT_KEY, updated)
        return KmsEncryptionKey(kms_encryption_key_arn=updated.kms_encryption_key_arn)
