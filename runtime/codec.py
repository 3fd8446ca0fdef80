"""Envelope encoding and typed decoding of message bodies."""

from __future__ import annotations

import functools
import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError, create_model

from contracts.envelope import Envelope, EnvelopeMeta, Message, new_message_id, utc_now
from contracts.errors import ErrorReply

M = TypeVar("M", bound=Message)


class DecodeError(ValueError):
    """The bytes are not an envelope, or its body is not the expected message."""


def _json_string(value: str) -> bytes:
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return b'"' + value.encode() + b'"'
    return json.dumps(value).encode()


@functools.lru_cache(maxsize=4096)
def _fixed_parts(message_type: str, source: str, schema_version: str) -> tuple[bytes, bytes]:
    """The envelope bytes that do not change between messages of one type from one source."""
    middle = (
        b',"type":'
        + _json_string(message_type)
        + b',"source":'
        + _json_string(source)
        + b',"time":"'
    )
    tail = b'","schema_version":' + _json_string(schema_version) + b',"correlation_id":'
    return middle, tail


def encode(
    message: Message,
    *,
    source: str,
    correlation_id: str | None = None,
    message_id: str | None = None,
) -> bytes:
    """Serialise `message` in an envelope. Built from cached pieces: this is every hop's hot path.

    A message that starts a conversation (no correlation id) is its own correlation id.
    """
    mid = message_id or new_message_id()
    middle, tail = _fixed_parts(message.message_type, source, message.schema_version)
    return b"".join(
        (
            b'{"id":',
            _json_string(mid),
            middle,
            utc_now().isoformat().encode(),
            tail,
            _json_string(correlation_id or mid),
            b',"data":',
            message.__pydantic_serializer__.to_json(message),
            b"}",
        )
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


@functools.cache
def _typed_envelope(model: type[Message]) -> type[BaseModel]:
    """An envelope whose `data` is `model`, so one Rust-side pass validates both."""
    typed: type[BaseModel] = create_model(
        f"Envelope[{model.__name__}]", __base__=EnvelopeMeta, data=(model, ...)
    )
    return typed


def decode(raw: bytes, model: type[M]) -> tuple[EnvelopeMeta, M]:
    try:
        typed: Any = _typed_envelope(model).model_validate_json(raw)
    except ValidationError:
        # Slow path, for a precise message: which part is wrong, the envelope or the body?
        envelope = decode_envelope(raw)
        decode_body(envelope, model)
        raise DecodeError(f"invalid {model.message_type}") from None
    if typed.type != model.message_type:
        raise DecodeError(f"expected message type {model.message_type!r}, got {typed.type!r}")
    body: M = typed.data
    return typed, body


def decode_reply(raw: bytes, model: type[M]) -> M | ErrorReply:
    try:
        return decode(raw, model)[1]
    except DecodeError:
        try:
            return decode(raw, ErrorReply)[1]
        except DecodeError:
            pass
        raise


def _summary(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:10]:
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)
