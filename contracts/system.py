"""Messages every service speaks: ping, health poll and dead letters."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from contracts import subjects
from contracts.envelope import Message


class PingRequest(Message):
    message_type: ClassVar[str] = "system.v1.ping_request"


class PingReply(Message):
    message_type: ClassVar[str] = "system.v1.ping_reply"

    service: str
    instance_id: str
    version: str


class HealthPoll(Message):
    """Broadcast to every replica; each answers with its ServiceHealth."""

    message_type: ClassVar[str] = "system.v1.health_poll"


class ConsumerStatus(Message):
    message_type: ClassVar[str] = "system.v1.consumer_status"

    stream: str
    durable: str
    pending: int = Field(ge=0, description="Messages in the stream not yet delivered (lag).")
    ack_pending: int = Field(ge=0)
    redelivered: int = Field(ge=0)


class RecentError(BaseModel):
    """A warning or error a replica logged, for the console's overview."""

    time: datetime
    level: str
    logger: str
    message: str


class ServiceHealth(Message):
    """A replica's own account of itself; also the value of its registry key."""

    message_type: ClassVar[str] = "system.v1.service_health"

    service: str
    instance_id: str
    version: str
    host: str
    pid: int
    started_at: datetime
    ready: bool
    checks: dict[str, str] = Field(
        default_factory=dict, description="Readiness checks by name: 'ok' or the failure."
    )
    in_flight: int = 0
    handled: int = 0
    failed: int = 0
    consumers: list[ConsumerStatus] = Field(default_factory=list)
    details: dict[str, Any] = Field(
        default_factory=dict,
        description="Service-specific state (e.g. loaded models and providers).",
    )
    recent_errors: list[RecentError] = Field(
        default_factory=list, description="The last warnings and errors it logged, oldest first."
    )


class DeadLetter(Message):
    """A message that could not be processed, kept with the reason so nothing is lost."""

    message_type: ClassVar[str] = subjects.DEAD_LETTERED

    service: str
    subject: str
    reason: str = Field(description="The validation or processing error.")
    error_type: str
    payload: str = Field(description="The original message body, as received (UTF-8 or base64).")
    payload_encoding: str = Field(pattern="^(utf-8|base64)$")
    headers: dict[str, Any] = Field(default_factory=dict)
    stream: str | None = None
    consumer: str | None = None
    stream_sequence: int | None = None
    deliveries: int = 1
    dead_lettered_at: datetime
