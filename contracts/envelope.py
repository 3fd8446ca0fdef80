"""The one envelope every message travels in, and the base class of every message body."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field


class Message(BaseModel):
    """Base of every message body. Subclasses set `message_type` (e.g. `crawl.v1.ping`)."""

    model_config = ConfigDict(extra="forbid", frozen=False)

    message_type: ClassVar[str] = ""
    schema_version: ClassVar[str] = "1"


class Command(Message):
    """A request that changes state; a retry with the same client token is idempotent."""

    client_token: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Idempotency token: a retried command with the same token has no new effect.",
    )


def new_message_id() -> str:
    """128 random bits as hex (uuid4's entropy without its formatting cost)."""
    return os.urandom(16).hex()


def utc_now() -> datetime:
    return datetime.now(UTC)


class EnvelopeMeta(BaseModel):
    """Everything in an envelope but the body: what handlers get beside the typed message."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(default_factory=new_message_id, min_length=1, max_length=64)
    type: str = Field(min_length=1, max_length=200)
    source: str = Field(min_length=1, max_length=200)
    time: datetime = Field(default_factory=utc_now)
    schema_version: str = "1"
    correlation_id: str = Field(default_factory=new_message_id, min_length=1, max_length=128)


class Envelope(EnvelopeMeta):
    """What goes on the wire: metadata around a message body kept as plain JSON data."""

    data: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def wrap(cls, message: Message, *, source: str, correlation_id: str | None = None) -> Envelope:
        return cls(
            type=message.message_type,
            source=source,
            schema_version=message.schema_version,
            correlation_id=correlation_id or new_message_id(),
            data=message.model_dump(mode="json"),
        )
