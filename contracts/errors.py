"""Error replies: how a service tells a requester that its request failed, and why."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar

from pydantic import Field

from contracts.envelope import Message


class ErrorCode(StrEnum):
    VALIDATION = "validation"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    UNAVAILABLE = "unavailable"
    TIMEOUT = "timeout"
    FORBIDDEN = "forbidden"
    INTERNAL = "internal"


class ErrorReply(Message):
    """The body of a reply that reports a failure instead of a result."""

    message_type: ClassVar[str] = "error"

    code: ErrorCode
    message: str = Field(max_length=4000)
    details: dict[str, Any] = Field(default_factory=dict)
