"""A small time-bounded cache for read-mostly state on hot paths (resources read per request)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any


class TtlCache:
    """Values live `ttl_s` seconds: changes made elsewhere show up within that bound.

    Concurrent misses of one key share one load. With `stale_s`, a value up to `ttl_s + stale_s`
    old is still answered at once while one load refreshes it in the background, so a hot key
    never makes requests wait for its reload; older values are loaded before answering.
    """

    def __init__(self, ttl_s: float = 1.0, max_entries: int = 10_000, stale_s: float = 0.0) -> None:
        self.ttl_s = ttl_s
        self.stale_s = stale_s
        self.max_entries = max_entries
        self._values: dict[Any, tuple[float, Any]] = {}
        self._loading: dict[Any, asyncio.Future[Any]] = {}
        self._generation = 0  # bumped by clear(): a load begun before it is not kept

    async def get(self, key: Any, load: Callable[[], Awaitable[Any]]) -> Any:
        hit = self._values.get(key)
        if hit is not None:
            age = time.monotonic() - hit[0]
            if age < self.ttl_s:
                return hit[1]
            if age < self.ttl_s + self.stale_s:
                self._load(key, load)
                return hit[1]
        return await asyncio.shield(self._load(key, load))

    def _load(self, key: Any, load: Callable[[], Awaitable[Any]]) -> asyncio.Future[Any]:
        pending = self._loading.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._fill(key, load))
            # A background refresh may have no awaiter: its error is the next caller's to see.
            pending.add_done_callback(_retrieve)
            self._loading[key] = pending
        return pending

    async def _fill(self, key: Any, load: Callable[[], Awaitable[Any]]) -> Any:
        started, generation = time.monotonic(), self._generation
        try:
            value = await load()
        finally:
            if self._loading.get(key) is asyncio.current_task():
                del self._loading[key]
        if generation != self._generation:
            return value
        if len(self._values) >= self.max_entries:
            self._values.clear()
        self._values[key] = (started, value)
        return value

    def clear(self) -> None:
        self._values.clear()
        self._loading.clear()
        self._generation += 1


def _retrieve(future: asyncio.Future[Any]) -> None:
    with contextlib.suppress(BaseException):
        future.exception()
