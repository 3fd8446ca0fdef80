"""A small time-bounded cache for read-mostly state on hot paths (resources read per request)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any


class TtlCache:
    """Values live `ttl_s` seconds: changes made elsewhere show up within that bound."""

    def __init__(self, ttl_s: float = 1.0, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._values: dict[Any, tuple[float, Any]] = {}

    async def get(self, key: Any, load: Callable[[], Awaitable[Any]]) -> Any:
        now = time.monotonic()
        hit = self._values.get(key)
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]
        value = await load()
        if len(self._values) >= self.max_entries:
            self._values.clear()
        self._values[key] = (now, value)
        return value

    def clear(self) -> None:
        self._values.clear()
