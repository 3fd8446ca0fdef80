"""API keys and AWS access keys: formats, hashing and scope rules (pure)."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field, field_validator

from contracts.subjects import BACKEND_SERVICES

ADMIN = "admin"
PLATFORM = "platform"  # the gateway's own resources: services, health, metrics
SCOPED_AREAS = (*BACKEND_SERVICES, PLATFORM)
_SCOPE = re.compile(rf"^({'|'.join(SCOPED_AREAS)}):(read|write)$")
API_KEY_PREFIX = "trk"
_API_TOKEN = re.compile(rf"^{API_KEY_PREFIX}_([0-9a-f]{{16}})_([A-Za-z0-9_-]{{32,128}})$")
ACCESS_KEY_PREFIX = "TRLS"
_ACCESS_KEY_ID = re.compile(rf"^{ACCESS_KEY_PREFIX}[A-Z2-7]{{16}}$")


class Access(StrEnum):
    READ = "read"
    WRITE = "write"


def required_scope(area: str, access: Access) -> str:
    if area not in SCOPED_AREAS:
        raise ValueError(f"unknown scope area {area!r}")
    return f"{area}:{access.value}"


def allows(granted: frozenset[str] | set[str], required: str) -> bool:
    """`admin` allows everything; `x:write` also allows `x:read`."""
    if ADMIN in granted or required in granted:
        return True
    area, _, access = required.partition(":")
    return access == Access.READ and f"{area}:{Access.WRITE.value}" in granted


def validate_scopes(scopes: list[str]) -> list[str]:
    if not scopes:
        raise ValueError("at least one scope is required")
    bad = [s for s in scopes if s != ADMIN and not _SCOPE.match(s)]
    if bad:
        raise ValueError(
            f"unknown scopes {bad}: use 'admin' or '<area>:read|write' with area in {list(SCOPED_AREAS)}"
        )
    return sorted(set(scopes))


def hash_secret(secret: str) -> str:
    # The secrets are 256-bit random: a fast hash is enough, no password stretching needed.
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def new_api_token() -> tuple[str, str, str]:
    """(key id, secret, the bearer token the user keeps)."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return key_id, secret, f"{API_KEY_PREFIX}_{key_id}_{secret}"


def parse_api_token(token: str) -> tuple[str, str] | None:
    match = _API_TOKEN.match(token)
    return (match.group(1), match.group(2)) if match else None


def new_access_key() -> tuple[str, str]:
    """(access key id, secret access key), shaped like AWS's."""
    alphabet = string.ascii_uppercase + "234567"
    key_id = ACCESS_KEY_PREFIX + "".join(secrets.choice(alphabet) for _ in range(16))
    return key_id, secrets.token_urlsafe(30)[:40]


def is_access_key_id(value: str) -> bool:
    return bool(_ACCESS_KEY_ID.match(value))


class KeyRequest(BaseModel):
    """What an admin sends to create a key."""

    model_config = {"extra": "forbid"}

    name: str = Field(min_length=1, max_length=128, pattern=r"^[\w .@:/-]+$")
    scopes: list[str] = Field(min_length=1, max_length=32)

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: list[str]) -> list[str]:
        return validate_scopes(value)


class ApiKey(BaseModel):
    """A stored REST API key: only the hash of its secret is kept."""

    id: str
    name: str
    scopes: list[str]
    secret_hash: str
    created_at: datetime
    revoked_at: datetime | None = None


class AccessKey(BaseModel):
    """A stored AWS access-key pair: SigV4 needs the secret itself, so it is kept sealed."""

    id: str
    name: str
    scopes: list[str]
    sealed_secret: str
    created_at: datetime
    revoked_at: datetime | None = None


class Principal(BaseModel):
    """Who is calling, after authentication."""

    key_id: str
    name: str
    scopes: frozenset[str]
    bootstrap: bool = False
