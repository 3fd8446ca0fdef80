"""TtlCache: bounded staleness, one load per key at a time, background refresh, clear()."""

from __future__ import annotations

import asyncio

import pytest

from runtime.cache import TtlCache


class Source:
    """A value that changes, read through a slow load that counts its calls."""

    def __init__(self) -> None:
        self.value = 0
        self.loads = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = False

    async def load(self) -> int:
        self.loads += 1
        value = self.value
        await self.gate.wait()
        if self.fail:
            raise LookupError("gone")
        return value


async def _started(source: Source, loads: int) -> None:
    for _ in range(100):
        if source.loads >= loads:
            return
        await asyncio.sleep(0)


async def test_concurrent_misses_share_one_load() -> None:
    cache, source = TtlCache(ttl_s=60), Source()
    source.gate.clear()
    readers = [asyncio.create_task(cache.get("k", source.load)) for _ in range(50)]
    await asyncio.sleep(0)
    source.gate.set()
    assert await asyncio.gather(*readers) == [0] * 50
    assert source.loads == 1


async def test_a_change_shows_after_the_ttl() -> None:
    cache, source = TtlCache(ttl_s=0.05), Source()
    assert await cache.get("k", source.load) == 0
    source.value = 1
    assert await cache.get("k", source.load) == 0
    await asyncio.sleep(0.06)
    assert await cache.get("k", source.load) == 1


async def test_stale_value_is_answered_while_one_refresh_runs() -> None:
    cache, source = TtlCache(ttl_s=0.05, stale_s=10), Source()
    assert await cache.get("k", source.load) == 0
    await asyncio.sleep(0.06)
    source.value, source.gate = 1, asyncio.Event()  # the refresh will block
    answers = [await cache.get("k", source.load) for _ in range(20)]
    await _started(source, 2)
    assert answers == [0] * 20 and source.loads == 2  # no caller waited; one refresh started
    source.gate.set()
    await asyncio.sleep(0.01)
    assert await cache.get("k", source.load) == 1


async def test_too_stale_values_are_loaded_before_answering() -> None:
    cache, source = TtlCache(ttl_s=0.02, stale_s=0.02), Source()
    assert await cache.get("k", source.load) == 0
    source.value = 1
    await asyncio.sleep(0.05)
    assert await cache.get("k", source.load) == 1


async def test_load_errors_reach_the_callers_and_are_not_cached() -> None:
    cache, source = TtlCache(ttl_s=60), Source()
    source.fail = True
    with pytest.raises(LookupError):
        await cache.get("k", source.load)
    source.fail = False
    assert await cache.get("k", source.load) == 0 and source.loads == 2


async def test_a_failed_background_refresh_keeps_the_stale_value_until_it_is_too_old() -> None:
    cache, source = TtlCache(ttl_s=0.03, stale_s=0.05), Source()
    assert await cache.get("k", source.load) == 0
    await asyncio.sleep(0.04)
    source.fail = True
    assert await cache.get("k", source.load) == 0
    await asyncio.sleep(0.05)
    with pytest.raises(LookupError):
        await cache.get("k", source.load)


async def test_clear_drops_values_and_loads_begun_before_it() -> None:
    cache, source = TtlCache(ttl_s=60), Source()
    source.gate.clear()
    early = asyncio.create_task(cache.get("k", source.load))
    await _started(source, 1)
    source.value = 1
    cache.clear()
    late = asyncio.create_task(cache.get("k", source.load))
    await asyncio.sleep(0)
    source.gate.set()
    assert await early == 0  # its caller still gets what it asked for
    assert await late == 1
    assert await cache.get("k", source.load) == 1  # the load begun before clear() was not kept


async def test_a_cancelled_caller_does_not_cancel_the_shared_load() -> None:
    cache, source = TtlCache(ttl_s=60), Source()
    source.gate.clear()
    first = asyncio.create_task(cache.get("k", source.load))
    second = asyncio.create_task(cache.get("k", source.load))
    await asyncio.sleep(0)
    first.cancel()
    source.gate.set()
    assert await second == 0 and source.loads == 1
