"""Secrets in the crawler's KV bucket, values sealed with Fernet; sealing for other crawler state."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from cryptography.fernet import Fernet, InvalidToken
from nats.js.kv import KeyValue

from runtime.errors import Conflict, NotFound, ValidationFailed
from runtime.kv import ResourceStore, Versioned
from services.crawler.domain.secrets import (
    Credentials,
    SecretRecord,
    parse_secret_string,
    secret_arn,
    secret_key,
    secret_name,
)


class SecretStore:
    def __init__(self, kv: KeyValue, sealer: Fernet, region: str, account_id: str) -> None:
        self.records = ResourceStore(kv, SecretRecord, "secret", prefix="secret.")
        self.sealer = sealer
        self.region = region
        self.account_id = account_id

    def arn(self, name: str) -> str:
        return secret_arn(self.region, self.account_id, name)

    def name_of(self, reference: str) -> str:
        return secret_name(reference, self.region, self.account_id)

    def seal(self, data: bytes) -> bytes:
        return self.sealer.encrypt(data)

    def unseal(self, token: bytes) -> bytes:
        try:
            return self.sealer.decrypt(token)
        except InvalidToken:
            raise ValidationFailed(
                "a sealed value does not open with this crawler's key: every crawler replica "
                "needs the same TRELLIS_CRAWLER_SECRETS_KEY"
            ) from None

    async def _get(self, reference: str) -> Versioned[SecretRecord]:
        name = self.name_of(reference)
        try:
            return await self.records.get(secret_key(name))
        except NotFound:
            raise NotFound(
                f"Secrets Manager can't find the specified secret: {reference[:300]}",
                kind="secret",
                id=name,
            ) from None

    async def get(self, reference: str) -> SecretRecord:
        return (await self._get(reference)).value

    async def all(self) -> list[SecretRecord]:
        return sorted((v.value for v in await self.records.list()), key=lambda r: r.name)

    async def create(
        self,
        name: str,
        secret_string: str,
        *,
        description: str | None = None,
        tags: list[dict[str, str]] | None = None,
        client_token: str | None = None,
    ) -> SecretRecord:
        parse_secret_string(secret_string)
        now = datetime.now(UTC)
        record = SecretRecord(
            name=name,
            arn=self.arn(name),
            description=description,
            sealed_value=self.seal(secret_string.encode()).decode(),
            version_id=client_token or str(uuid.uuid4()),
            created_at=now,
            changed_at=now,
            tags=tags or [],
        )
        try:
            stored = await self.records.create(secret_key(name), record, client_token=client_token)
        except Conflict:
            raise Conflict(
                f"The operation failed because the secret {name} already exists.",
                kind="secret",
                id=name,
            ) from None
        return stored.value

    async def put_value(
        self, reference: str, secret_string: str, *, client_token: str | None = None
    ) -> SecretRecord:
        parse_secret_string(secret_string)
        current = await self._get(reference)
        sealed = self.seal(secret_string.encode()).decode()
        version_id = client_token or str(uuid.uuid4())

        def change(record: SecretRecord) -> SecretRecord:
            if client_token is not None and record.version_id == client_token:
                return record  # a retry of the put that made this version
            return record.model_copy(
                update={
                    "sealed_value": sealed,
                    "version_id": version_id,
                    "changed_at": datetime.now(UTC),
                }
            )

        return (await self.records.mutate(current.key, change)).value

    async def delete(self, reference: str) -> SecretRecord:
        current = await self._get(reference)
        await self.records.delete(current.key, expected_revision=current.revision)
        return current.value

    async def credentials(self, reference: str) -> Credentials:
        """The unsealed value: for the crawler's own requests, never for a reply."""
        record = await self.get(reference)
        return parse_secret_string(self.unseal(record.sealed_value.encode()).decode())
