"""API keys and AWS access keys in the gateway's KV bucket; access-key secrets sealed with Fernet."""

from __future__ import annotations

import hmac
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from nats.js.kv import KeyValue

from contracts.envelope import utc_now
from runtime.cache import TtlCache
from runtime.errors import NotFound
from runtime.kv import ResourceStore
from services.gateway.adapters.bootstrap import BootstrapCredentials
from services.gateway.domain.keys import (
    ADMIN,
    AccessKey,
    ApiKey,
    KeyRequest,
    Principal,
    hash_secret,
    is_access_key_id,
    new_access_key,
    new_api_token,
    parse_api_token,
    secret_matches,
)

BOOTSTRAP_ID = "bootstrap-admin"


class KeyStore:
    def __init__(self, kv: KeyValue, sealer: Fernet, bootstrap: BootstrapCredentials) -> None:
        self.api_keys = ResourceStore(kv, ApiKey, "API key", prefix="api.")
        self.access_keys = ResourceStore(kv, AccessKey, "access key", prefix="aws.")
        self.sealer = sealer
        self.bootstrap = bootstrap
        # Every request authenticates: key records are read at most once a second per gateway,
        # so a revocation elsewhere takes effect within a second (here, at once).
        self._recent = TtlCache(ttl_s=1.0)

    # -- REST API keys ---------------------------------------------------------------------

    async def create_api_key(self, request: KeyRequest) -> tuple[ApiKey, str]:
        key_id, secret, token = new_api_token()
        key = ApiKey(
            id=key_id,
            name=request.name,
            scopes=request.scopes,
            secret_hash=hash_secret(secret),
            created_at=utc_now(),
        )
        await self.api_keys.create(key_id, key)
        return key, token

    async def list_api_keys(self) -> list[ApiKey]:
        return [v.value for v in await self.api_keys.list()]

    async def revoke_api_key(self, key_id: str) -> ApiKey:
        stored = await self.api_keys.mutate(
            key_id,
            lambda key: key if key.revoked_at else key.model_copy(update={"revoked_at": utc_now()}),
        )
        self._recent.clear()
        return stored.value

    async def authenticate_bearer(self, token: str) -> Principal | None:
        if hmac.compare_digest(token.encode(), self.bootstrap.api_key.encode()):
            return Principal(
                key_id=BOOTSTRAP_ID,
                name="bootstrap admin",
                scopes=frozenset({ADMIN}),
                bootstrap=True,
            )
        parsed = parse_api_token(token)
        if parsed is None:
            return None
        key_id, secret = parsed
        try:
            key: ApiKey = await self._recent.get(
                ("api", key_id), lambda: self._value(self.api_keys, key_id)
            )
        except NotFound:
            return None
        if key.revoked_at is not None or not secret_matches(secret, key.secret_hash):
            return None
        return Principal(key_id=key.id, name=key.name, scopes=frozenset(key.scopes))

    # -- AWS access keys -------------------------------------------------------------------

    async def create_access_key(self, request: KeyRequest) -> tuple[AccessKey, str]:
        key_id, secret = new_access_key()
        key = AccessKey(
            id=key_id,
            name=request.name,
            scopes=request.scopes,
            sealed_secret=self.sealer.encrypt(secret.encode()).decode(),
            created_at=utc_now(),
        )
        await self.access_keys.create(key_id, key)
        return key, secret

    async def list_access_keys(self) -> list[AccessKey]:
        return [v.value for v in await self.access_keys.list()]

    async def revoke_access_key(self, key_id: str) -> AccessKey:
        stored = await self.access_keys.mutate(
            key_id,
            lambda key: key if key.revoked_at else key.model_copy(update={"revoked_at": utc_now()}),
        )
        self._recent.clear()
        return stored.value

    async def access_key(self, key_id: str) -> tuple[str, Principal] | None:
        """The secret and principal of an active access key, for SigV4 verification."""
        if key_id == self.bootstrap.access_key_id:
            principal = Principal(
                key_id=key_id, name="bootstrap admin", scopes=frozenset({ADMIN}), bootstrap=True
            )
            return self.bootstrap.secret_access_key, principal
        if not is_access_key_id(key_id):
            return None
        try:
            # Opened once per cache period, not per request: unsealing is a Fernet decryption.
            opened: tuple[str, Principal] | None = await self._recent.get(
                ("aws", key_id), lambda: self._open_access_key(key_id)
            )
        except NotFound:
            return None
        return opened

    async def _open_access_key(self, key_id: str) -> tuple[str, Principal] | None:
        key: AccessKey = await self._value(self.access_keys, key_id)
        if key.revoked_at is not None:
            return None
        try:
            secret = self.sealer.decrypt(key.sealed_secret.encode()).decode()
        except InvalidToken:
            return None
        return secret, Principal(key_id=key.id, name=key.name, scopes=frozenset(key.scopes))

    @staticmethod
    async def _value(store: ResourceStore[Any], key_id: str) -> Any:
        return (await store.get(key_id)).value
