"""The dynamic batcher on its own: batching, delays, preferred sizes, timeouts, isolation of bad items."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from services.inference.domain.batcher import BatchTooLarge, DynamicBatcher, QueueTimeout


class Recorder:
    def __init__(self, delay_s: float = 0.0) -> None:
        self.batches: list[list[int]] = []
        self.delay_s = delay_s
        self.lock = threading.Lock()

    def __call__(self, items: list[int]) -> list[int]:
        if any(i < 0 for i in items):
            raise ValueError("negative input")
        time.sleep(self.delay_s)
        with self.lock:
            self.batches.append(list(items))
        return [i * 10 for i in items]


async def test_concurrent_requests_share_batches() -> None:
    run = Recorder()
    batcher = DynamicBatcher(run, max_batch_size=8, max_queue_delay_s=0.05)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(20)))
    assert results == [i * 10 for i in range(20)]
    assert all(len(b) <= 8 for b in run.batches) and len(run.batches) <= 4
    await batcher.close()


async def test_a_lone_request_waits_at_most_the_queue_delay() -> None:
    batcher = DynamicBatcher(Recorder(), max_batch_size=64, max_queue_delay_s=0.02)
    started = time.monotonic()
    assert await batcher.submit(1) == 10
    assert time.monotonic() - started < 0.5
    await batcher.close()


async def test_preferred_size_closes_the_batch_early() -> None:
    run = Recorder()
    batcher = DynamicBatcher(
        run, max_batch_size=64, max_queue_delay_s=5.0, preferred_batch_sizes=[4]
    )
    started = time.monotonic()
    await asyncio.gather(*(batcher.submit(i) for i in range(4)))
    assert time.monotonic() - started < 2.0 and run.batches == [[0, 1, 2, 3]]
    await batcher.close()


async def test_rows_count_toward_the_batch_size_and_oversize_is_refused() -> None:
    run = Recorder()
    batcher = DynamicBatcher(run, max_batch_size=4, max_queue_delay_s=0.05)
    await asyncio.gather(batcher.submit(1, rows=3), batcher.submit(2, rows=3))
    assert sorted(len(b) for b in run.batches) == [1, 1]
    with pytest.raises(BatchTooLarge):
        await batcher.submit(3, rows=5)
    await batcher.close()


async def test_one_bad_item_fails_alone() -> None:
    batcher = DynamicBatcher(Recorder(), max_batch_size=8, max_queue_delay_s=0.05)
    outcomes = await asyncio.gather(
        *(batcher.submit(i) for i in (1, -1, 2)), return_exceptions=True
    )
    assert outcomes[0] == 10 and outcomes[2] == 20
    assert isinstance(outcomes[1], ValueError)
    await batcher.close()


async def test_queue_timeout_and_instances_limit() -> None:
    run = Recorder(delay_s=0.3)
    batcher = DynamicBatcher(
        run, max_batch_size=1, max_queue_delay_s=0.0, instances=1, timeout_s=0.5
    )
    outcomes = await asyncio.gather(*(batcher.submit(i) for i in range(4)), return_exceptions=True)
    assert outcomes[0] == 0
    assert any(isinstance(o, QueueTimeout) for o in outcomes)
    await batcher.close()


async def test_observer_sees_rows_and_times() -> None:
    seen: list[tuple[int, float, float]] = []
    batcher = DynamicBatcher(
        Recorder(),
        max_batch_size=8,
        max_queue_delay_s=0.01,
        observe=lambda r, q, s: seen.append((r, q, s)),
    )
    await asyncio.gather(*(batcher.submit(i) for i in range(3)))
    await batcher.close()
    assert sum(r for r, _, _ in seen) == 3 and all(q >= 0 and s >= 0 for _, q, s in seen)


async def test_disabled_batching_runs_every_request_alone() -> None:
    run = Recorder()
    batcher = DynamicBatcher(
        run, max_batch_size=8, max_queue_delay_s=0.05, combine=False, instances=2
    )
    assert await asyncio.gather(*(batcher.submit(i) for i in range(6))) == [
        i * 10 for i in range(6)
    ]
    assert all(len(b) == 1 for b in run.batches) and len(run.batches) == 6
    await batcher.close()


async def test_requests_arriving_while_instances_are_busy_join_the_next_batch() -> None:
    run = Recorder(delay_s=0.2)
    batcher = DynamicBatcher(run, max_batch_size=64, max_queue_delay_s=0.0, instances=1)
    first = asyncio.ensure_future(batcher.submit(0))
    await asyncio.sleep(0.05)  # the first batch is running
    rest = await asyncio.gather(*(batcher.submit(i) for i in range(1, 11)))
    assert await first == 0 and rest == [i * 10 for i in range(1, 11)]
    assert run.batches == [[0], list(range(1, 11))]
    await batcher.close()
