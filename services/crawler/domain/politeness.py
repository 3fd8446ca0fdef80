"""Per-host crawl rate limits: when each host may next be fetched, on an injected clock."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable

from runtime.errors import ValidationFailed

MIN_URLS_PER_MINUTE = 1
MAX_URLS_PER_MINUTE = 300
# No per-host rate limit (for one's own sites); a robots.txt Crawl-delay still spaces fetches.
UNLIMITED = 0
WINDOW_S = 60.0
# Callers often compute `now + wait`, which can land an ulp short of the due time.
TOLERANCE_S = 1e-9
# A claimed slot is missed when its start comes this share of an interval late.
LATE_FRACTION = 0.1


def _check_rate(urls_per_minute: int) -> int:
    if (
        isinstance(urls_per_minute, bool)
        or not isinstance(urls_per_minute, int)
        or not (
            urls_per_minute == UNLIMITED
            or MIN_URLS_PER_MINUTE <= urls_per_minute <= MAX_URLS_PER_MINUTE
        )
    ):
        raise ValidationFailed(
            f"urls per host per minute must be an integer from {MIN_URLS_PER_MINUTE} to "
            f"{MAX_URLS_PER_MINUTE} (or {UNLIMITED}: no limit), got {urls_per_minute!r}"
        )
    return urls_per_minute


def _check_delay(delay_s: float | None) -> float | None:
    if delay_s is None:
        return None
    if isinstance(delay_s, bool) or not math.isfinite(delay_s) or delay_s < 0:
        raise ValidationFailed(
            f"crawl delay must be a finite number of seconds >= 0, got {delay_s!r}"
        )
    return float(delay_s)


def claim_slot(next_start: float | None, now: float, interval_s: float) -> tuple[float, float]:
    """Virtual scheduling (GCRA without a burst): the start a claim gets, and the next to store.

    `next_start` is the shared schedule's value (None when there is none yet). A claim takes that
    slot, or `now` when the host has been idle since (missed slots are not made up), and moves
    the schedule one interval on, so claims made at once by several replicas get distinct slots.
    """
    if not math.isfinite(interval_s) or interval_s < 0:
        raise ValueError(f"interval must be a finite number of seconds >= 0, got {interval_s!r}")
    start = now if next_start is None or not math.isfinite(next_start) else max(next_start, now)
    return start, start + interval_s


def missed(slot: float, now: float, interval_s: float) -> bool:
    """Whether a start at `now` is too late for `slot`: it would crowd the next slot's holder."""
    return now - slot > LATE_FRACTION * interval_s


def spacing_s(urls_per_minute: int, crawl_delay_s: float | None) -> float:
    """Seconds between starts at a host: the rate's or the Crawl-delay's, the larger; 0: none."""
    rate = _check_rate(urls_per_minute)
    rate_interval = WINDOW_S / rate if rate else 0.0
    return max(rate_interval, _check_delay(crawl_delay_s) or 0.0)


class HostSchedule:
    """Fetch starts for one host: at most `urls_per_minute` in any 60 s, evenly spaced.

    Starts fall on slots `anchor + k * interval_s`. A caller that is late for a slot by less
    than one interval keeps the phase, so polling jitter does not erode the rate; one later
    than that has been idle and the schedule restarts from its start (missed slots are not
    made up). Because a late start can sit close to the next punctual one, the last
    `urls_per_minute` starts are also kept and the next is held until 60 s after the oldest.
    With `urls_per_minute` UNLIMITED only the crawl delay, if any, spaces the starts.
    """

    def __init__(self, urls_per_minute: int, *, crawl_delay_s: float | None = None) -> None:
        self.urls_per_minute = _check_rate(urls_per_minute)
        self._crawl_delay_s = _check_delay(crawl_delay_s)
        self._anchor: float | None = None
        self._slot = 0
        self._window: deque[float] = deque(maxlen=self.urls_per_minute)

    @property
    def crawl_delay_s(self) -> float | None:
        return self._crawl_delay_s

    @property
    def interval_s(self) -> float:
        return spacing_s(self.urls_per_minute, self._crawl_delay_s)

    def set_crawl_delay(self, delay_s: float | None) -> None:
        """Change the robots.txt Crawl-delay; the new interval counts from the last slot."""
        delay = _check_delay(delay_s)
        if self._anchor is not None:
            self._anchor = self._slot_time()
            self._slot = 0
        self._crawl_delay_s = delay

    def _slot_time(self) -> float:
        assert self._anchor is not None
        return self._anchor + self._slot * self.interval_s

    def due(self) -> float | None:
        """When the next start is due regardless of `now`; None before the first start."""
        if self._anchor is None:
            return None
        due = self._anchor + (self._slot + 1) * self.interval_s
        if self.urls_per_minute and len(self._window) == self.urls_per_minute:
            due = max(due, self._window[0] + WINDOW_S)
        return due

    def next_start(self, now: float) -> float:
        due = self.due()
        return now if due is None else max(due, now)

    def started(self, now: float) -> None:
        due = self.due()
        if due is not None and now < due - TOLERANCE_S:
            raise ValueError(f"start at {now:.6f} is before the next allowed start {due:.6f}")
        at = now if due is None else max(now, due)
        if self._anchor is None or at >= self._anchor + (self._slot + 2) * self.interval_s:
            self._anchor = at
            self._slot = 0
        else:
            self._slot += 1
        self._window.append(at)

    def idle(self, now: float) -> bool:
        """True when this schedule no longer constrains anything (a fresh one would act alike)."""
        if self._anchor is None:
            return True
        return now >= self._anchor + (self._slot + 2) * self.interval_s and (
            not self._window or self._window[-1] + WINDOW_S <= now
        )


class Politeness:
    """Many hosts: which host may start next, and when (UNLIMITED: as their crawl delays allow)."""

    def __init__(self, urls_per_minute: int) -> None:
        self.urls_per_minute = _check_rate(urls_per_minute)
        self._hosts: dict[str, HostSchedule] = {}
        self._delays: dict[str, float] = {}

    def _schedule(self, host: str) -> HostSchedule:
        schedule = self._hosts.get(host)
        if schedule is None:
            schedule = HostSchedule(self.urls_per_minute, crawl_delay_s=self._delays.get(host))
            self._hosts[host] = schedule
        return schedule

    def set_crawl_delay(self, host: str, delay_s: float | None) -> None:
        delay = _check_delay(delay_s)
        if delay is None:
            self._delays.pop(host, None)
        else:
            self._delays[host] = delay
        schedule = self._hosts.get(host)
        if schedule is not None:
            schedule.set_crawl_delay(delay)

    def crawl_delay(self, host: str) -> float | None:
        return self._delays.get(host)

    def interval_s(self, host: str) -> float:
        """Seconds between starts at `host`; 0 when nothing spaces them."""
        return spacing_s(self.urls_per_minute, self._delays.get(host))

    def ready_at(self, host: str, now: float) -> float:
        schedule = self._hosts.get(host)
        return now if schedule is None else schedule.next_start(now)

    def acquire(self, host: str, now: float) -> float:
        """0.0 after recording a start if `host` may start now, else the seconds to wait."""
        schedule = self._schedule(host)
        ready = schedule.next_start(now)
        if ready > now + TOLERANCE_S:
            return ready - now
        schedule.started(now)
        return 0.0

    def hosts_ready(self, hosts: Iterable[str], now: float) -> list[str]:
        """The distinct `hosts` that may start now, the longest overdue first."""
        ready: list[tuple[float, str]] = []
        seen: set[str] = set()
        for host in hosts:
            if host in seen:
                continue
            seen.add(host)
            schedule = self._hosts.get(host)
            due = None if schedule is None else schedule.due()
            if due is None:
                ready.append((now, host))
            elif due <= now + TOLERANCE_S:
                ready.append((due, host))
        ready.sort(key=lambda item: item[0])
        return [host for _, host in ready]

    def forget_idle(self, now: float) -> int:
        """Drop the schedules of hosts that no longer constrain anything; returns how many."""
        idle = [host for host, schedule in self._hosts.items() if schedule.idle(now)]
        for host in idle:
            del self._hosts[host]
        return len(idle)

    def __len__(self) -> int:
        return len(self._hosts)
