"""Envelope encoding and typed decoding of message bodies."""

from __future__ import annotations

import json
from typing import TypeVar

from pydantic import ValidationError

from contracts.envelope import Envelope, Message, new_message_id, utc_now
from contracts.errors import ErrorReply

M = TypeVar("M", bound=Message)


class DecodeError(ValueError):
    """The bytes are not an envelope, or its body is not the expected message."""


def encode(
    message: Message, *, source: str, correlation_id: str, message_id: str | None = None
) -> bytes:
    """Serialise `message` in an envelope; built by hand because this is every hop's hot path."""
    head = json.dumps(
        {
            "id": message_id or new_message_id(),
            "type": message.message_type,
            "source": source,
            "time": utc_now().isoformat(),
            "schema_version": message.schema_version,
            "correlation_id": correlation_id,
        },
        separators=(",", ":"),
    )
    return (
        head[:-1].encode() + b',"data":' + message.__pydantic_serializer__.to_json(message) + b"}"
    )


def decode_envelope(raw: bytes) -> Envelope:
    try:
        return Envelope.model_validate_json(raw)
    except ValidationError as exc:
        raise DecodeError(f"not a Trellis envelope: {_summary(exc)}") from exc


def decode_body(envelope: Envelope, model: type[M]) -> M:
    if envelope.type != model.message_type:
        raise DecodeError(f"expected message type {model.message_type!r}, got {envelope.type!r}")
    try:
        return model.model_validate(envelope.data)
    except ValidationError as exc:
        raise DecodeError(f"invalid {model.message_type}: {_summary(exc)}") from exc


def decode(raw: bytes, model: type[M]) -> tuple[Envelope, M]:
    envelope = decode_envelope(raw)
    return envelope, decode_body(envelope, model)


def decode_reply(raw: bytes, model: type[M]) -> M | ErrorReply:
    envelope = decode_envelope(raw)
    if envelope.type == ErrorReply.message_type:
        return decode_body(envelope, ErrorReply)
    return decode_body(envelope, model)


def _summary(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:10]:
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)
