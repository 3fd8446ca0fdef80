"""Thin handlers of the fraud service: decode, call the operation, reply with AFD's output shape."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from contracts.envelope import EnvelopeMeta
from contracts.fraud import (
    FraudResult,
    GetKmsEncryptionKeyRequest,
    KmsEncryptionKey,
    PutKmsEncryptionKeyCommand,
)
from runtime.bus import RequestHandler
from runtime.errors import NotFound
from runtime.kv import ResourceStore
from services.fraud.domain.account import ACCOUNT_KEY, AccountSettings

M = TypeVar("M")


def afd_handler(operation: Callable[[M], Awaitable[dict[str, Any]]]) -> RequestHandler[Any]:
    async def handle(request: M, _: EnvelopeMeta) -> FraudResult:
        return FraudResult(output=await operation(request))

    return handle


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
