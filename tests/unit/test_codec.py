"""Envelope encoding and typed decoding."""

from __future__ import annotations

import json
from typing import ClassVar

import pytest

from contracts.envelope import Command, Envelope
from contracts.errors import ErrorCode, ErrorReply
from runtime import codec


class Sample(Command):
    message_type: ClassVar[str] = "test.v1.sample"
    amount: float
    tags: list[str] = []


def test_round_trip_keeps_body_and_metadata() -> None:
    raw = codec.encode(Sample(amount=1.5, tags=["a"]), source="svc/1", correlation_id="cid-1")
    envelope, body = codec.decode(raw, Sample)
    assert body == Sample(amount=1.5, tags=["a"])
    assert (envelope.type, envelope.source, envelope.correlation_id) == (
        "test.v1.sample",
        "svc/1",
        "cid-1",
    )
    assert Envelope.model_validate_json(raw).data["amount"] == 1.5


def test_wrong_type_is_a_decode_error() -> None:
    raw = codec.encode(
        ErrorReply(code=ErrorCode.INTERNAL, message="x"), source="s", correlation_id="c"
    )
    with pytest.raises(codec.DecodeError, match=r"expected message type 'test\.v1\.sample'"):
        codec.decode(raw, Sample)


def test_unknown_fields_are_rejected() -> None:
    raw = json.loads(codec.encode(Sample(amount=1), source="s", correlation_id="c"))
    raw["data"]["surprise"] = True
    with pytest.raises(codec.DecodeError, match="surprise"):
        codec.decode(json.dumps(raw).encode(), Sample)


@pytest.mark.parametrize("raw", [b"", b"not json", b"[]", b'{"type": "x"}', b"\xff\xfe"])
def test_garbage_is_a_decode_error(raw: bytes) -> None:
    with pytest.raises(codec.DecodeError):
        codec.decode(raw, Sample)


def test_error_replies_decode_as_errors() -> None:
    raw = codec.encode(
        ErrorReply(code=ErrorCode.NOT_FOUND, message="gone"), source="s", correlation_id="c"
    )
    reply = codec.decode_reply(raw, Sample)
    assert isinstance(reply, ErrorReply) and reply.code is ErrorCode.NOT_FOUND


def test_hand_built_envelope_escapes_awkward_strings() -> None:
    awkward = 'svc "quoted" \\ back\u00e9\n'
    raw = codec.encode(Sample(amount=2), source=awkward, correlation_id=awkward)
    envelope = Envelope.model_validate_json(raw)
    assert envelope.source == awkward and envelope.correlation_id == awkward


def test_a_new_conversation_uses_the_message_id_as_correlation_id() -> None:
    envelope = Envelope.model_validate_json(codec.encode(Sample(amount=2), source="s"))
    assert envelope.correlation_id == envelope.id and len(envelope.id) == 32
