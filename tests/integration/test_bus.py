"""Typed request/reply over a real NATS: replies, errors, no responders, timeouts, bad input."""

from __future__ import annotations

import asyncio
import time

import pytest
from nats.js.api import DeliverPolicy

from contracts import subjects, topology
from contracts.envelope import Envelope, EnvelopeMeta
from contracts.errors import ErrorCode
from contracts.system import DeadLetter
from runtime import codec
from runtime.bus import Bus
from runtime.errors import (
    NotFound,
    RemoteError,
    RequestTimeout,
    ServiceUnavailable,
    ValidationFailed,
)
from runtime.logs import correlation
from tests.integration.messages import Echo, Echoed


async def echo(request: Echo, envelope: EnvelopeMeta) -> Echoed:
    if request.text == "missing":
        raise NotFound("no such thing", id="missing")
    if request.text == "boom":
        raise RuntimeError("secret internals")
    await asyncio.sleep(request.delay_s)
    return Echoed(text=request.text, correlation_id=envelope.correlation_id)


async def latest_dead_letter(bus: Bus, subject: str) -> DeadLetter:
    sub = await bus.js.subscribe(
        subjects.DEAD_LETTERED, stream=topology.DEAD_LETTERS.name, deliver_policy=DeliverPolicy.LAST
    )
    try:
        msg = await sub.next_msg(timeout=5)
    finally:
        await sub.unsubscribe()
    _, letter = codec.decode(msg.data, DeadLetter)
    assert letter.subject == subject
    return letter


async def test_request_reply_is_typed_and_carries_the_correlation_id(bus: Bus, unique: str) -> None:
    subject = f"test.v1.echo_{unique}"
    await bus.serve(subject, Echo, echo, queue="q")
    with correlation("cid-from-caller"):
        reply = await bus.request(subject, Echo(text="hi"), Echoed, timeout_s=2)
    assert reply == Echoed(text="hi", correlation_id="cid-from-caller")


async def test_domain_errors_come_back_typed(bus: Bus, unique: str) -> None:
    subject = f"test.v1.echo_{unique}"
    await bus.serve(subject, Echo, echo)
    with pytest.raises(RemoteError) as caught:
        await bus.request(subject, Echo(text="missing"), Echoed, timeout_s=2)
    assert caught.value.code is ErrorCode.NOT_FOUND and caught.value.details == {"id": "missing"}
    with pytest.raises(RemoteError) as crashed:
        await bus.request(subject, Echo(text="boom"), Echoed, timeout_s=2)
    assert crashed.value.code is ErrorCode.INTERNAL
    assert "secret internals" not in crashed.value.message
    # The responder survived both and still answers.
    assert (await bus.request(subject, Echo(text="ok"), Echoed, timeout_s=2)).text == "ok"


async def test_nobody_listening_is_unavailable_at_once(bus: Bus, unique: str) -> None:
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable) as caught:
        await bus.request(
            f"fraud.v1.nobody_{unique}", Echo(text="x"), Echoed, timeout_s=5, service="fraud"
        )
    assert caught.value.service == "fraud"
    assert time.monotonic() - started < 1.0


async def test_slow_responder_times_out(bus: Bus, unique: str) -> None:
    subject = f"test.v1.echo_{unique}"
    await bus.serve(subject, Echo, echo)
    with pytest.raises(RequestTimeout):
        await bus.request(subject, Echo(text="slow", delay_s=1.0), Echoed, timeout_s=0.2)


async def test_malformed_request_is_refused_and_dead_lettered(bus: Bus, unique: str) -> None:
    subject = f"test.v1.echo_{unique}"
    await bus.serve(subject, Echo, echo)
    bad = Envelope(type=Echo.message_type, source="t", data={"text": "x", "unknown": 1})
    response = await bus.nc.request(subject, bad.model_dump_json().encode(), timeout=2)
    reply = codec.decode_reply(response.data, Echoed)
    assert (
        not isinstance(reply, Echoed)
        and reply.code is ErrorCode.VALIDATION
        and "unknown" in reply.message
    )
    letter = await latest_dead_letter(bus, subject)
    assert "unknown" in letter.reason and letter.error_type == "DecodeError"
    assert Envelope.model_validate_json(letter.payload).data == {"text": "x", "unknown": 1}

    await bus.nc.request(subject, b"\xff\x00 not json", timeout=2)
    binary = await latest_dead_letter(bus, subject)
    assert binary.payload_encoding == "base64"
    # Still serving.
    assert (await bus.request(subject, Echo(text="after"), Echoed, timeout_s=2)).text == "after"


async def test_queue_group_splits_requests_and_gather_reaches_everyone(
    nats_url: str, unique: str
) -> None:
    subject = f"test.v1.echo_{unique}"
    replicas = [await Bus.connect(nats_url, source=f"replica{i}") for i in range(3)]
    caller = await Bus.connect(nats_url, source="caller")
    try:
        seen: list[str] = []
        for replica in replicas:

            async def handler(
                request: Echo, envelope: EnvelopeMeta, name: str = replica.source
            ) -> Echoed:
                seen.append(name)
                return Echoed(text=name, correlation_id=envelope.correlation_id)

            await replica.serve(subject, Echo, handler, queue="workers")
            await replica.serve(f"{subject}_all", Echo, handler)  # no queue group: everyone answers
        for _ in range(30):
            await caller.request(subject, Echo(text="x"), Echoed, timeout_s=2)
        assert len(seen) == 30 and len(set(seen)) > 1
        seen.clear()
        answers = await caller.gather(
            f"{subject}_all", Echo(text="all"), Echoed, window_s=2, expected=3
        )
        assert sorted(a.text for a in answers) == ["replica0", "replica1", "replica2"]
    finally:
        for b in (*replicas, caller):
            await b.close()


async def test_graceful_stop_finishes_in_flight_requests(nats_url: str, unique: str) -> None:
    subject = f"test.v1.echo_{unique}"
    server = await Bus.connect(nats_url, source="server")
    caller = await Bus.connect(nats_url, source="caller")
    try:
        await server.serve(subject, Echo, echo)
        pending = asyncio.create_task(
            caller.request(subject, Echo(text="slow", delay_s=0.5), Echoed, timeout_s=3)
        )
        await asyncio.sleep(0.1)
        await server.stop_serving(timeout_s=5)
        assert (await pending).text == "slow"
        with pytest.raises(ServiceUnavailable):
            await caller.request(subject, Echo(text="late"), Echoed, timeout_s=1)
    finally:
        await server.close()
        await caller.close()


async def test_validation_failures_raised_by_handlers_reach_the_caller(
    bus: Bus, unique: str
) -> None:
    subject = f"test.v1.validate_{unique}"

    async def strict(request: Echo, _: EnvelopeMeta) -> Echoed:
        raise ValidationFailed("text must be shouted", field="text")

    await bus.serve(subject, Echo, strict)
    with pytest.raises(RemoteError) as caught:
        await bus.request(subject, Echo(text="quiet"), Echoed, timeout_s=2)
    assert caught.value.code is ErrorCode.VALIDATION and "shouted" in caught.value.message
