"""Durable JetStream consumers on a real NATS: ack, backoff, crash redelivery, dead letters."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from nats.js.api import DeliverPolicy

from contracts import subjects, topology
from contracts.envelope import Envelope, EnvelopeMeta
from contracts.system import DeadLetter
from contracts.topology import ConsumerSpec, StreamSpec
from runtime import codec
from runtime.bus import Bus
from runtime.consumer import DurableConsumer, redelivery_delay
from runtime.topology import ensure_stream
from tests.integration.messages import OrderPlaced


async def _setup(bus: Bus, unique: str, **spec: object) -> tuple[str, ConsumerSpec]:
    subject = f"test.v1.order_{unique}.placed"
    stream = StreamSpec(name=f"TEST_{unique}", subjects=(subject,), description="test")
    await ensure_stream(bus.js, stream)
    options = {"ack_wait_s": 2.0, "backoff_s": (0.05, 0.1), "max_deliver": 3, **spec}
    return subject, ConsumerSpec(
        stream=stream.name, durable=f"c_{unique}", filter_subject=subject, **options
    )


async def _eventually(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def _dead_letters_for(bus: Bus, stream: str) -> list[DeadLetter]:
    sub = await bus.js.subscribe(
        subjects.DEAD_LETTERED, stream=topology.DEAD_LETTERS.name, deliver_policy=DeliverPolicy.ALL
    )
    letters = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=0.5)
            except Exception:
                break
            _, letter = codec.decode(msg.data, DeadLetter)
            if letter.stream == stream:
                letters.append(letter)
    finally:
        await sub.unsubscribe()
    return letters


def recorder(
    fail_times: int = 0,
) -> tuple[list[tuple[str, int]], Callable[[OrderPlaced, EnvelopeMeta], Awaitable[None]]]:
    calls: list[tuple[str, int]] = []

    async def handle(order: OrderPlaced, _: EnvelopeMeta) -> None:
        calls.append((order.order_id, len(calls)))
        if (
            order.order_id.startswith("poison")
            or len([c for c in calls if c[0] == order.order_id]) <= fail_times
        ):
            raise RuntimeError(f"cannot process {order.order_id}")

    return calls, handle


async def test_failed_handler_is_retried_with_backoff_then_acked(bus: Bus, unique: str) -> None:
    subject, spec = await _setup(bus, unique)
    calls, handle = recorder(fail_times=2)
    consumer = DurableConsumer(bus, spec, OrderPlaced, handle)
    await consumer.start()
    try:
        await bus.emit(subject, OrderPlaced(order_id="o1", amount=10))
        await _eventually(lambda: len(calls) == 3)
        await asyncio.sleep(0.3)
        assert [c[0] for c in calls] == ["o1"] * 3  # not redelivered after the ack
        status = await consumer.status()
        assert status.ack_pending == 0 and status.pending == 0
    finally:
        await consumer.stop()
    assert await _dead_letters_for(bus, spec.stream) == []


async def test_poison_message_goes_to_dead_letters_and_the_consumer_goes_on(
    bus: Bus, unique: str
) -> None:
    subject, spec = await _setup(bus, unique)
    calls, handle = recorder()
    consumer = DurableConsumer(bus, spec, OrderPlaced, handle)
    await consumer.start()
    try:
        await bus.emit(subject, OrderPlaced(order_id="poison-1", amount=1))
        await bus.emit(subject, OrderPlaced(order_id="good-1", amount=2))
        await _eventually(lambda: ("good-1", calls[-1][1]) in calls if calls else False)
        await _eventually(lambda: sum(1 for c in calls if c[0] == "poison-1") == spec.max_deliver)
        await asyncio.sleep(0.3)
        assert sum(1 for c in calls if c[0] == "poison-1") == spec.max_deliver
    finally:
        await consumer.stop()
    [letter] = await _dead_letters_for(bus, spec.stream)
    assert letter.deliveries == spec.max_deliver and letter.consumer == spec.durable
    assert "cannot process poison-1" in letter.reason and letter.stream_sequence == 1
    _, original = codec.decode(letter.payload.encode(), OrderPlaced)
    assert original.order_id == "poison-1"


async def test_malformed_message_is_dead_lettered_without_retries(bus: Bus, unique: str) -> None:
    subject, spec = await _setup(bus, unique)
    calls, handle = recorder()
    consumer = DurableConsumer(bus, spec, OrderPlaced, handle)
    await consumer.start()
    try:
        await bus.js.publish(subject, b'{"not": "an envelope"}')
        bad_body = Envelope(
            type=OrderPlaced.message_type, source="t", data={"order_id": "x", "amount": "lots"}
        )
        await bus.js.publish(subject, bad_body.model_dump_json().encode())
        await bus.emit(subject, OrderPlaced(order_id="fine", amount=3))
        await _eventually(lambda: [c[0] for c in calls] == ["fine"])
    finally:
        await consumer.stop()
    letters = await _dead_letters_for(bus, spec.stream)
    assert [letter.deliveries for letter in letters] == [1, 1]
    assert "not a Trellis envelope" in letters[0].reason
    assert "amount" in letters[1].reason and letters[1].error_type == "DecodeError"


async def test_message_in_flight_when_a_consumer_crashes_is_redelivered(
    nats_url: str, unique: str
) -> None:
    doomed = await Bus.connect(nats_url, source="doomed")
    survivor = await Bus.connect(nats_url, source="survivor")
    subject, spec = await _setup(doomed, unique, ack_wait_s=1.0)
    started = asyncio.Event()

    async def hang(order: OrderPlaced, _: EnvelopeMeta) -> None:
        started.set()
        await asyncio.Event().wait()  # never finishes: the process "dies" mid-message

    crashed = DurableConsumer(doomed, spec, OrderPlaced, hang)
    await crashed.start()
    await doomed.emit(subject, OrderPlaced(order_id="o-crash", amount=5))
    await asyncio.wait_for(started.wait(), timeout=5)
    await doomed.nc.close()  # like kill -9: no ack, no nak, the connection is gone
    for task in list(crashed._in_flight):
        task.cancel()

    got: list[tuple[str, int]] = []

    async def record(order: OrderPlaced, _: EnvelopeMeta) -> None:
        got.append((order.order_id, 0))

    replacement = DurableConsumer(survivor, spec, OrderPlaced, record)
    await replacement.start()
    try:
        await _eventually(lambda: got == [("o-crash", 0)], timeout_s=10)
        await asyncio.sleep(0.5)
        assert got == [("o-crash", 0)]
        assert (await replacement.status()).redelivered == 0  # acked: nothing left to redeliver
    finally:
        await replacement.stop()
        await survivor.close()


async def test_lag_is_the_number_of_undelivered_messages(bus: Bus, unique: str) -> None:
    subject, spec = await _setup(bus, unique)
    for i in range(5):
        await bus.emit(subject, OrderPlaced(order_id=f"o{i}", amount=i))
    calls, handle = recorder()
    consumer = DurableConsumer(bus, spec, OrderPlaced, handle)
    await consumer.start()
    await consumer.stop()  # may have taken some; lag + taken must be 5
    status = await consumer.status()
    assert status.pending + len(calls) == 5
    assert bus.metrics is not None
    lag = bus.metrics.consumer_lag.labels(bus.service, spec.stream, spec.durable)._value.get()
    assert lag == status.pending


async def test_emit_with_the_same_message_id_is_stored_once(bus: Bus, unique: str) -> None:
    subject, spec = await _setup(bus, unique)
    first = await bus.emit(subject, OrderPlaced(order_id="o", amount=1), message_id=f"m-{unique}")
    second = await bus.emit(subject, OrderPlaced(order_id="o", amount=1), message_id=f"m-{unique}")
    assert first == second
    info = await bus.js.stream_info(spec.stream)
    assert info.state.messages == 1


def test_redelivery_delay_follows_the_spec() -> None:
    spec = ConsumerSpec(stream="S", durable="d", filter_subject="x", backoff_s=(1.0, 5.0))
    assert [redelivery_delay(spec, n) for n in (1, 2, 3, 9)] == [1.0, 5.0, 5.0, 5.0]
