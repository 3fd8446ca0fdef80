"""Secrets for data source credentials: names, ARNs, the stored record and the value's shape."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import BaseModel, Field

from contracts.crawl import MAX_SECRET_BYTES, SECRETS_MANAGER_NAME
from runtime.errors import ValidationFailed

_NAME = re.compile(SECRETS_MANAGER_NAME)
_ARN = re.compile(r"^arn:aws:secretsmanager:([a-z0-9-]{1,63}):(\d{12}):secret:(.+)$")


class SecretRecord(BaseModel):
    """A stored secret: its value only as a Fernet token."""

    name: str
    arn: str
    description: str | None = None
    sealed_value: str
    version_id: str
    created_at: datetime
    changed_at: datetime
    tags: list[dict[str, str]] = Field(default_factory=list)

    def __repr__(self) -> str:  # the token is useless without the key, but keep it out anyway
        return f"SecretRecord(name={self.name!r}, arn={self.arn!r})"


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)


def secret_arn(region: str, account_id: str, name: str) -> str:
    return f"arn:aws:secretsmanager:{region}:{account_id}:secret:{name}"


def secret_key(name: str) -> str:
    """The KV key of a secret: names may hold characters KV keys may not (`+`, `@`)."""
    return hashlib.sha256(name.encode()).hexdigest()


def is_reference(reference: str) -> bool:
    """A secret name or a Secrets Manager secret ARN (syntax only)."""
    if _NAME.match(reference):
        return True
    match = _ARN.match(reference)
    return match is not None and _NAME.match(match.group(3)) is not None


def secret_name(reference: str, region: str, account_id: str) -> str:
    """The name a reference (name or ARN) stands for; an ARN must be of this region and account."""
    match = _ARN.match(reference)
    if match is None:
        if not _NAME.match(reference):
            raise ValidationFailed(
                f"{reference[:200]!r} is neither a secret name (1-128 of A-Z a-z 0-9 /_+=.@-) "
                "nor a secret ARN"
            )
        return reference
    region_of, account_of, name = match.groups()
    if (region_of, account_of) != (region, account_id) or not _NAME.match(name):
        raise ValidationFailed(
            f"{reference[:300]!r} is not a secret of this Trellis "
            f"(arn:aws:secretsmanager:{region}:{account_id}:secret:<name>)"
        )
    return name


def parse_secret_string(text: str) -> Credentials:
    """SecretString: a JSON object with non-empty "username" and "password" strings.

    Errors never quote the value.
    """
    if len(text.encode()) > MAX_SECRET_BYTES:
        raise ValidationFailed(f"SecretString is larger than {MAX_SECRET_BYTES} bytes")
    try:
        value = json.loads(text)
    except ValueError:
        raise ValidationFailed(
            'SecretString must be a JSON object: {"username": "...", "password": "..."}'
        ) from None
    if not isinstance(value, dict):
        raise ValidationFailed(
            'SecretString must be a JSON object: {"username": "...", "password": "..."}'
        )
    for key in ("username", "password"):
        if not isinstance(value.get(key), str) or not value[key]:
            raise ValidationFailed(f'SecretString needs a non-empty string "{key}"')
    return Credentials(value["username"], value["password"])
