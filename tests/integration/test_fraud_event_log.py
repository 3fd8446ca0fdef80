"""Group commit of stored events on a real JetStream stream, and what the event store makes of it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from contracts import subjects, topology
from contracts.fraud import EventSent, EventsSent
from runtime import codec
from runtime.bus import Bus
from runtime.errors import NotFound
from runtime.topology import ensure_stream
from services.fraud.adapters.event_log import EventLog
from services.fraud.adapters.event_store import EventStore

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def event(event_type: str, event_id: str, ip: str, minutes: int = 0) -> EventSent:
    return EventSent(
        event_type=event_type,
        event_id=event_id,
        event_timestamp=T0 + timedelta(minutes=minutes),
        entity_type="customer",
        entity_id=f"c-{event_id}",
        variables={"ip": ip},
    )


async def read_back(bus: Bus, sequences: set[int]) -> list[tuple[int, str, list[EventSent]]]:
    found = []
    for sequence in sorted(sequences):
        msg = await bus.js.get_msg(topology.FRAUD_EVENTS.name, sequence)
        assert msg.subject is not None and msg.data is not None
        if msg.subject == subjects.FRAUD_EVENTS_SENT:
            events = codec.decode(msg.data, EventsSent)[1].events
        else:
            events = [codec.decode(msg.data, EventSent)[1]]
        found.append((sequence, msg.subject, events))
    return found


async def test_events_sent_together_share_messages_in_their_order(
    bus: Bus, unique: str, tmp_path: Path
) -> None:
    await ensure_stream(bus.js, topology.FRAUD_EVENTS)
    log = EventLog(bus, max_events=4)
    kind = f"log{unique}"
    alone = event(kind, "e0", "10.0.0.0")
    first = await log.append(alone)
    together = [event(kind, f"e{i}", f"10.0.0.{i}", minutes=i) for i in range(1, 10)]
    # The same event id and time again, later in the same burst: the later copy must win.
    together.append(event(kind, "e3", "99.9.9.9", minutes=3))
    sequences = await asyncio.gather(*(log.append(e) for e in together))

    messages = await read_back(bus, {first, *sequences})
    assert messages[0] == (first, subjects.FRAUD_EVENT_SENT, [alone])  # alone: a plain message
    assert [e for _, _, events in messages for e in events] == [alone, *together]
    assert log.messages == len(messages) < 1 + len(together)
    assert all(len(events) <= 4 for _, _, events in messages)
    assert any(subject == subjects.FRAUD_EVENTS_SENT for _, subject, _ in messages)
    for event_, sequence in zip(together, sequences, strict=True):  # each got its message's
        assert any(s == sequence and event_ in events for s, _, events in messages)

    # Applied as the service applies them (one sequence for a message's events), in memory
    # and from Parquet, the later copy of e3 wins.
    store = EventStore(tmp_path)
    for sequence, _, events in messages:
        for sent in events:
            store.apply_sent(sequence, sent)
    for _ in range(2):
        stored = store.events(kind)
        ips = dict(zip(stored["EVENT_ID"], stored["ip"], strict=True))
        assert stored.height == 10 and ips["e3"] == "99.9.9.9" and ips["e4"] == "10.0.0.4"
        store.flush()


async def test_the_service_keeps_the_good_events_of_a_message_and_dead_letters_a_bad_one(
    nats_url: str, data_dir: Path, unique: str
) -> None:
    from contracts.fraud import AFD_OPERATIONS, FraudResult
    from contracts.system import DeadLetter
    from runtime.settings import SharedSettings
    from services.fraud.app import build
    from services.fraud.config import Settings

    operations = {op.name: op for op in AFD_OPERATIONS}
    bus = await Bus.connect(nats_url, source="fraud")
    client = await Bus.connect(nats_url, source="test")
    service = await build(bus, Settings(flush_interval_s=0.2), SharedSettings(data_dir=data_dir))
    await service.start()

    async def call(operation: str, /, **body: object) -> dict[str, Any]:
        spec = operations[operation]
        message = spec.request.model_validate({**body, **dict(spec.fixed)})
        subject = subjects.fraud_operation(spec.bus_operation)
        reply = await client.request(subject, message, FraudResult, timeout_s=10)
        return reply.output

    try:
        kind = f"batch{unique}"
        await call(
            "CreateVariable",
            name="ip",
            dataType="STRING",
            dataSource="EVENT",
            defaultValue="0.0.0.0",
            variableType="IP_ADDRESS",
        )
        await call("PutEntityType", name="customer")
        await call("PutLabel", name="fraud")
        await call(
            "PutEventType",
            name=kind,
            eventVariables=["ip"],
            labels=["fraud"],
            entityTypes=["customer"],
        )
        letters = await client.js.subscribe(
            subjects.DEAD_LETTERED, stream=topology.DEAD_LETTERS.name
        )
        good = [event(kind, f"g{i}", f"10.1.1.{i}", minutes=i) for i in range(3)]
        bad = event("no/such/type", "b0", "1.1.1.1")  # refused by the store, not by the contract
        sequence = await client.emit(
            subjects.FRAUD_EVENTS_SENT, EventsSent(events=[good[0], bad, good[1], good[2]])
        )
        for sent in good:
            for _ in range(50):  # the service's view applies the message soon after the ack
                try:
                    found = await call("GetEvent", eventId=sent.event_id, eventTypeName=kind)
                    break
                except NotFound:
                    await asyncio.sleep(0.1)
            assert found["event"]["eventVariables"] == {"ip": sent.variables["ip"]}
        while True:  # the stream keeps earlier tests' letters: find this one
            msg = await letters.next_msg(timeout=5)
            letter = codec.decode(msg.data, DeadLetter)[1]
            if letter.stream_sequence == sequence and "no/such/type" in letter.reason:
                break
        assert letter.subject == subjects.FRAUD_EVENT_SENT
        assert codec.decode(letter.payload.encode(), EventSent)[1] == bad
        await letters.unsubscribe()
    finally:
        await service.stop()
        await bus.js.delete_key_value("fraud_resources")
        await bus.js.delete_key_value("fraud_settings")
        await bus.js.delete_stream(topology.FRAUD_EVENTS.name)
        await bus.close()
        await client.close()
