"""Per-host crawl rate limits, driven by a simulated clock: one replica's schedule, and the slots
every replica claims from a shared one."""

from __future__ import annotations

import heapq
import random
from bisect import bisect_left
from itertools import pairwise

import pytest

from runtime.errors import ValidationFailed
from services.crawler.domain.politeness import (
    UNLIMITED,
    HostSchedule,
    Politeness,
    claim_slot,
    missed,
    spacing_s,
)

RATES = (1, 7, 60, 120, 300)
MINUTES = 10
RUN_S = 60.0 * MINUTES


def _max_in_window(starts: list[float], slack: float = 0.0) -> int:
    """The most starts in any half-open window [s, s + 60 - slack) that begins at a start."""
    return max(
        (bisect_left(starts, s + 60.0 - slack) - i for i, s in enumerate(starts)),
        default=0,
    )


def _greedy(politeness: Politeness, host: str, begin: float, end: float) -> list[float]:
    """A caller that starts as soon as it is allowed, waiting exactly what acquire says."""
    starts: list[float] = []
    now = begin
    while now < end:
        wait = politeness.acquire(host, now)
        if wait == 0.0:
            starts.append(now)
        else:
            assert wait > 0.0
            now += wait
    return starts


@pytest.mark.parametrize("rate", RATES)
def test_greedy_caller_gets_exactly_the_rate_and_never_more_per_minute(rate: int) -> None:
    starts = _greedy(Politeness(rate), "example.com", 0.0, RUN_S)
    assert _max_in_window(starts) <= rate
    assert abs(len(starts) - rate * MINUTES) <= 1
    gaps = [b - a for a, b in pairwise(starts)]
    assert min(gaps) == pytest.approx(60.0 / rate)
    assert max(gaps) == pytest.approx(60.0 / rate)


def test_sixty_per_minute_is_one_start_per_second() -> None:
    starts = _greedy(Politeness(60), "h", 100.0, 110.0)
    assert starts == pytest.approx([100.0 + i for i in range(10)])


@pytest.mark.parametrize("rate", RATES)
def test_jittery_polling_caller_keeps_the_rate_within_five_percent(rate: int) -> None:
    rng = random.Random(rate)
    politeness = Politeness(rate)
    lateness = min(0.9 * 60.0 / rate, 0.5)
    starts: list[float] = []
    now = 0.0
    while now < RUN_S:
        wait = politeness.acquire("h", now)
        if wait == 0.0:
            starts.append(now)
        else:
            # Each sleep overruns, like timers on a busy event loop.
            now += wait + rng.uniform(0.0, lateness)
    assert _max_in_window(starts) <= rate
    assert abs(len(starts) - rate * MINUTES) <= 0.05 * rate * MINUTES


@pytest.mark.parametrize("rate", RATES)
def test_coarse_ticks_do_not_erode_the_rate(rate: int) -> None:
    politeness = Politeness(rate)
    starts: list[float] = []
    tick = 0
    while tick * 0.05 < RUN_S:
        now = tick * 0.05
        while politeness.acquire("h", now) == 0.0:
            starts.append(now)
        tick += 1
    # Tick times carry float noise; a start within 1e-9 s of its due time counts as on time.
    assert _max_in_window(starts, slack=1e-6) <= rate
    assert abs(len(starts) - rate * MINUTES) <= max(1, 0.05 * rate * MINUTES)


@pytest.mark.parametrize("rate", RATES)
def test_bursts_after_idle_periods_respect_the_sliding_window(rate: int) -> None:
    rng = random.Random(1000 + rate)
    politeness = Politeness(rate)
    starts: list[float] = []
    now = 0.0
    while now < 5 * RUN_S:
        # Busy for a while, then idle for a random stretch, then greedy again.
        busy_until = now + rng.uniform(0.0, 90.0)
        while now < busy_until:
            wait = politeness.acquire("h", now)
            if wait == 0.0:
                starts.append(now)
            else:
                now += wait * rng.choice((1.0, 1.0, 1.7))
        now += rng.uniform(0.0, 120.0)
    assert len(starts) > rate
    assert _max_in_window(starts) <= rate


def test_window_guard_stops_a_late_start_followed_by_punctual_ones() -> None:
    schedule = HostSchedule(2)  # one slot every 30 s
    schedule.started(0.0)
    schedule.started(59.9)  # slot 30 taken late; the grid stays at 0, 30, 60, ...
    assert schedule.next_start(59.9) == pytest.approx(60.0)
    schedule.started(60.0)
    # Slot 90 is on the grid, but it would be a third start within 60 s of 59.9.
    assert schedule.next_start(60.0) == pytest.approx(119.9)
    assert schedule.next_start(200.0) == 200.0


def test_idle_schedule_restarts_without_making_up_missed_slots() -> None:
    schedule = HostSchedule(60)
    schedule.started(0.0)
    schedule.started(10.0)
    assert schedule.next_start(10.0) == pytest.approx(11.0)
    assert schedule.next_start(10.5) == pytest.approx(11.0)


@pytest.mark.parametrize("rate", (300, 120, 31))
def test_crawl_delay_slows_a_host_down(rate: int) -> None:
    politeness = Politeness(rate)
    politeness.set_crawl_delay("slow.example", 2.0)
    starts = _greedy(politeness, "slow.example", 0.0, RUN_S)
    assert len(starts) == 30 * MINUTES
    assert _max_in_window(starts) == 30


def test_crawl_delay_can_only_slow_down() -> None:
    assert HostSchedule(300, crawl_delay_s=2.0).interval_s == 2.0
    assert HostSchedule(10, crawl_delay_s=2.0).interval_s == 6.0
    assert HostSchedule(10, crawl_delay_s=0.0).interval_s == 6.0
    assert HostSchedule(60).interval_s == 1.0


def test_crawl_delay_change_applies_from_the_last_start() -> None:
    politeness = Politeness(60)
    assert politeness.acquire("h", 0.0) == 0.0
    politeness.set_crawl_delay("h", 5.0)
    assert politeness.ready_at("h", 0.5) == pytest.approx(5.0)
    assert politeness.crawl_delay("h") == 5.0
    politeness.set_crawl_delay("h", None)
    assert politeness.ready_at("h", 0.5) == pytest.approx(1.0)
    assert politeness.crawl_delay("h") is None


def test_crawl_delay_set_before_the_first_fetch_is_kept() -> None:
    politeness = Politeness(300)
    politeness.set_crawl_delay("h", 3.0)
    assert politeness.acquire("h", 0.0) == 0.0
    assert politeness.acquire("h", 1.0) == pytest.approx(2.0)


def test_hosts_are_independent() -> None:
    politeness = Politeness(60)
    starts_a: list[float] = []
    starts_b: list[float] = []
    now = 0.0
    while now < RUN_S:
        for host, starts in (("a.example", starts_a), ("b.example", starts_b)):
            if politeness.acquire(host, now) == 0.0:
                starts.append(now)
        now = min(politeness.ready_at("a.example", now), politeness.ready_at("b.example", now))
    assert len(starts_a) == len(starts_b) == 60 * MINUTES
    assert _max_in_window(starts_a) == _max_in_window(starts_b) == 60


def test_a_slow_host_does_not_hold_back_another() -> None:
    politeness = Politeness(60)
    politeness.set_crawl_delay("slow", 30.0)
    assert politeness.acquire("slow", 0.0) == 0.0
    assert politeness.acquire("fast", 0.0) == 0.0
    assert politeness.acquire("slow", 1.0) == pytest.approx(29.0)
    assert politeness.acquire("fast", 1.0) == 0.0


def test_acquire_records_nothing_when_it_asks_to_wait() -> None:
    politeness = Politeness(60)
    assert politeness.acquire("h", 0.0) == 0.0
    for t in (0.1, 0.2, 0.5, 0.9):
        assert politeness.acquire("h", t) == pytest.approx(1.0 - t)
    assert politeness.acquire("h", 1.0) == 0.0
    assert politeness.ready_at("h", 1.0) == pytest.approx(2.0)


def test_ready_at_for_unknown_host_is_now() -> None:
    assert Politeness(1).ready_at("new", 42.0) == 42.0


def test_hosts_ready_lists_the_longest_overdue_first() -> None:
    politeness = Politeness(60)
    politeness.acquire("a", 0.0)  # due at 1.0
    politeness.acquire("b", 0.5)  # due at 1.5
    politeness.acquire("c", 0.8)  # due at 1.8
    assert politeness.hosts_ready(["c", "b", "a", "new"], 1.6) == ["a", "b", "new"]
    assert politeness.hosts_ready(["c", "b", "a", "c"], 0.9) == []
    assert politeness.hosts_ready(["new", "c", "b", "a"], 2.0) == ["a", "b", "c", "new"]


def test_started_refuses_an_early_start() -> None:
    schedule = HostSchedule(60)
    schedule.started(0.0)
    with pytest.raises(ValueError, match="before the next allowed start"):
        schedule.started(0.5)
    schedule.started(1.0 - 1e-12)  # float noise from `now + wait` is tolerated
    assert schedule.next_start(1.0) == pytest.approx(2.0)


def test_forget_idle_drops_only_schedules_that_no_longer_matter() -> None:
    politeness = Politeness(2)
    politeness.acquire("a", 0.0)
    politeness.acquire("b", 50.0)
    assert len(politeness) == 2
    assert politeness.forget_idle(61.0) == 1  # "a": its window and its next slot have passed
    assert len(politeness) == 1
    assert politeness.acquire("b", 70.0) == pytest.approx(10.0)
    assert politeness.forget_idle(200.0) == 1
    assert len(politeness) == 0


def test_without_a_rate_limit_only_the_crawl_delay_spaces_starts() -> None:
    politeness = Politeness(UNLIMITED)
    # No delay: every start is allowed at once, however many.
    assert all(politeness.acquire("fast", 5.0) == 0.0 for _ in range(1000))
    politeness.set_crawl_delay("slow", 2.5)
    starts = _greedy(politeness, "slow", 0.0, 10.0)
    assert starts == pytest.approx([0.0, 2.5, 5.0, 7.5])
    # A delay learnt after the first start applies from it.
    politeness.acquire("late", 0.0)
    politeness.set_crawl_delay("late", 1.0)
    assert politeness.acquire("late", 0.2) == pytest.approx(0.8)
    politeness.set_crawl_delay("late", None)
    assert politeness.acquire("late", 0.3) == 0.0
    assert politeness.forget_idle(100.0) == 3


def test_unlimited_schedule_with_a_delay_behaves_like_one_start_per_delay() -> None:
    schedule = HostSchedule(UNLIMITED, crawl_delay_s=4.0)
    assert schedule.interval_s == 4.0 and schedule.due() is None
    schedule.started(10.0)
    assert schedule.next_start(11.0) == pytest.approx(14.0)
    assert HostSchedule(UNLIMITED).interval_s == 0.0


@pytest.mark.parametrize("rate", (301, -5, 1.5, True, "60"))
def test_rate_must_be_an_integer_from_1_to_300(rate: object) -> None:
    with pytest.raises(ValidationFailed, match="1 to 300"):
        HostSchedule(rate)  # type: ignore[arg-type]
    with pytest.raises(ValidationFailed):
        Politeness(rate)  # type: ignore[arg-type]


@pytest.mark.parametrize("delay", (-1.0, float("nan"), float("inf")))
def test_crawl_delay_must_be_finite_and_not_negative(delay: float) -> None:
    with pytest.raises(ValidationFailed, match="crawl delay"):
        HostSchedule(60, crawl_delay_s=delay)
    with pytest.raises(ValidationFailed):
        Politeness(60).set_crawl_delay("h", delay)


def _replicas_claiming(
    rate: int, replicas: int, concurrency: int, seed: int, *, interval_s: float | None = None
) -> list[float]:
    """Starts when `replicas` x `concurrency` workers claim slots from one stored schedule.

    Each worker claims (in clock order: compare-and-set makes the claims one sequence), waits
    for its slot, fetches for a random while, then claims again.
    """
    rng = random.Random(seed)
    interval = spacing_s(rate, None) if interval_s is None else interval_s
    stored: float | None = None
    claims = [(rng.uniform(0.0, 1.0), worker) for worker in range(replicas * concurrency)]
    heapq.heapify(claims)
    starts: list[float] = []
    while claims:
        now, worker = heapq.heappop(claims)
        start, stored = claim_slot(stored, now, interval)
        assert start >= now
        if start >= RUN_S:
            continue
        starts.append(start)
        heapq.heappush(claims, (start + rng.uniform(0.001, 1.0), worker))
    return sorted(starts)


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("replicas", (1, 2, 5))
def test_replicas_claiming_one_schedule_keep_one_rate(rate: int, replicas: int) -> None:
    starts = _replicas_claiming(rate, replicas, concurrency=8, seed=rate * replicas)
    gaps = [b - a for a, b in pairwise(starts)]
    assert min(gaps) >= 60.0 / rate - 1e-9
    assert _max_in_window(starts, slack=1e-6) <= rate  # slots 60 s apart, up to float noise
    # Busy workers keep every slot taken: the rate is reached, not only respected.
    assert len(starts) >= rate * MINUTES * 0.95


def test_a_claim_takes_the_stored_slot_or_now_after_idle() -> None:
    assert claim_slot(None, 100.0, 2.0) == (100.0, 102.0)
    assert claim_slot(102.0, 100.5, 2.0) == (102.0, 104.0)  # waits for its slot
    assert claim_slot(102.0, 150.0, 2.0) == (150.0, 152.0)  # idle: missed slots are not made up
    assert claim_slot(float("nan"), 7.0, 2.0) == (7.0, 9.0)  # unreadable: starts again


def test_claims_made_at_once_get_distinct_slots() -> None:
    stored: float | None = None
    starts = []
    for _ in range(5):
        start, stored = claim_slot(stored, 10.0, 0.5)
        starts.append(start)
    assert starts == [10.0, 10.5, 11.0, 11.5, 12.0] and stored == 12.5


def test_a_slot_is_missed_a_tenth_of_an_interval_late() -> None:
    assert not missed(10.0, 10.0, 2.0)
    assert not missed(10.0, 10.2, 2.0)
    assert missed(10.0, 10.21, 2.0)
    assert missed(10.0, 16.01, 60.0) and not missed(10.0, 15.9, 60.0)


@pytest.mark.parametrize("interval", (-1.0, float("nan"), float("inf")))
def test_a_claim_needs_a_finite_interval(interval: float) -> None:
    with pytest.raises(ValueError, match="interval"):
        claim_slot(None, 0.0, interval)


def test_spacing_is_the_rate_or_the_crawl_delay_whichever_is_slower() -> None:
    assert spacing_s(60, None) == 1.0
    assert spacing_s(300, 2.0) == 2.0
    assert spacing_s(10, 2.0) == 6.0
    assert spacing_s(UNLIMITED, None) == 0.0
    assert spacing_s(UNLIMITED, 4.0) == 4.0
    politeness = Politeness(30)
    politeness.set_crawl_delay("slow", 5.0)
    assert politeness.interval_s("slow") == 5.0 and politeness.interval_s("other") == 2.0
    # A Crawl-delay shared by several replicas spaces their starts as it does one's.
    starts = _replicas_claiming(UNLIMITED, 3, 4, seed=1, interval_s=spacing_s(UNLIMITED, 4.0))
    assert min(b - a for a, b in pairwise(starts)) >= 4.0 - 1e-9
