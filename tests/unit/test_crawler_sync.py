"""Sync jobs: status machine, Kendra metrics, deletion guard, change detection and cron schedules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import get_args

import pytest

from runtime.errors import ValidationFailed
from services.crawler.domain.sync import (
    TERMINAL,
    SyncEvent,
    SyncMetrics,
    SyncMode,
    SyncStatus,
    change_kind,
    deletions_allowed,
    parse_schedule,
    transition,
)

S = SyncStatus
ALLOWED = {
    (S.SYNCING, "crawl_done"): S.SYNCING_INDEXING,
    (S.SYNCING_INDEXING, "indexing_done"): S.SUCCEEDED,
    (S.SYNCING, "failed"): S.FAILED,
    (S.SYNCING_INDEXING, "failed"): S.FAILED,
    (S.SYNCING, "stop_requested"): S.STOPPING,
    (S.SYNCING_INDEXING, "stop_requested"): S.STOPPING,
    (S.STOPPING, "stopped"): S.STOPPED,
    (S.SYNCING, "aborted"): S.ABORTED,
}
EVENTS: tuple[SyncEvent, ...] = get_args(SyncEvent)


def _utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def test_status_and_mode_values_are_kendras() -> None:
    assert {s.value for s in SyncStatus} == {
        "SYNCING",
        "SYNCING_INDEXING",
        "SUCCEEDED",
        "FAILED",
        "STOPPING",
        "STOPPED",
        "ABORTED",
        "INCOMPLETE",
    }
    assert {m.value for m in SyncMode} == {"FULL_CRAWL", "FORCED_FULL_CRAWL"}
    assert TERMINAL == {S.SUCCEEDED, S.FAILED, S.STOPPED, S.ABORTED}


@pytest.mark.parametrize("status", list(SyncStatus))
@pytest.mark.parametrize("event", EVENTS)
def test_state_machine_table(status: SyncStatus, event: SyncEvent) -> None:
    expected = ALLOWED.get((status, event))
    if expected is not None:
        assert transition(status, event) is expected
    else:
        with pytest.raises(ValidationFailed) as caught:
            transition(status, event)
        assert status.value in caught.value.message
        assert event in caught.value.message


def test_terminal_states_take_no_events() -> None:
    for status in TERMINAL:
        for event in EVENTS:
            with pytest.raises(ValidationFailed):
                transition(status, event)


def test_happy_path_and_stop_path() -> None:
    status = S.SYNCING
    for event in ("crawl_done", "indexing_done"):
        status = transition(status, event)
    assert status is S.SUCCEEDED
    assert transition(transition(S.SYNCING_INDEXING, "stop_requested"), "stopped") is S.STOPPED


def test_transition_accepts_the_status_as_its_string_value() -> None:
    assert transition("SYNCING", "crawl_done") is S.SYNCING_INDEXING  # type: ignore[arg-type]
    with pytest.raises(ValidationFailed, match="unknown sync job status 'RUNNING'"):
        transition("RUNNING", "crawl_done")  # type: ignore[arg-type]
    with pytest.raises(ValidationFailed, match="'finished'"):
        transition(S.SYNCING, "finished")  # type: ignore[arg-type]


def test_metrics_in_kendras_shape() -> None:
    metrics = SyncMetrics(scanned=10, added=3, modified=2, deleted=1, unchanged=4, failed=5)
    assert metrics.kendra() == {
        "DocumentsAdded": "3",
        "DocumentsModified": "2",
        "DocumentsDeleted": "1",
        "DocumentsFailed": "5",
        "DocumentsScanned": "10",
    }
    assert SyncMetrics().kendra()["DocumentsScanned"] == "0"


@pytest.mark.parametrize(
    ("previous", "to_delete", "threshold", "allowed"),
    [
        (100, 15, 0.15, True),  # exactly the threshold is allowed
        (100, 16, 0.15, False),
        (100, 0, 0.15, True),
        (20, 3, 0.15, True),
        (20, 4, 0.15, False),
        (7, 1, 0.15, True),  # 1.05 allowed
        (7, 2, 0.15, False),
        (6, 1, 0.15, False),  # 0.9 allowed: one of six is too many
        (100, 29, 0.29, True),  # 0.29 * 100 is 28.999... in floats
        (100, 30, 0.29, False),
        (0, 0, 0.15, True),
        (0, 50, 0.15, True),
        (10, 10, 1.0, True),
        (10, 1, 0.0, False),
        (10, 0, 0.0, True),
        (1_000_000, 150_000, 0.15, True),
        (1_000_000, 150_001, 0.15, False),
    ],
)
def test_deletion_threshold_boundaries(
    previous: int, to_delete: int, threshold: float, allowed: bool
) -> None:
    assert deletions_allowed(previous, to_delete, threshold) is allowed


def test_deletion_threshold_defaults_to_fifteen_percent() -> None:
    assert deletions_allowed(200, 30)
    assert not deletions_allowed(200, 31)


@pytest.mark.parametrize("threshold", [-0.01, 1.01, float("nan"), float("inf")])
def test_deletion_threshold_is_validated(threshold: float) -> None:
    with pytest.raises(ValidationFailed, match="threshold"):
        deletions_allowed(10, 1, threshold)


def test_deletion_counts_are_validated() -> None:
    with pytest.raises(ValidationFailed):
        deletions_allowed(-1, 0)
    with pytest.raises(ValidationFailed):
        deletions_allowed(10, -1)


def test_change_kind() -> None:
    assert change_kind(None, "abc") == "added"
    assert change_kind("abc", "abc") == "unchanged"
    assert change_kind("abc", "abd") == "modified"


# --- cron -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        # Every 15 minutes (AWS "0/15").
        ("cron(0/15 * * * ? *)", _utc(2026, 3, 1, 10, 7), _utc(2026, 3, 1, 10, 15)),
        ("cron(0/15 * * * ? *)", _utc(2026, 3, 1, 10, 45), _utc(2026, 3, 1, 11, 0)),
        # Strictly after: a time on the schedule moves to the next one.
        ("cron(0/15 * * * ? *)", _utc(2026, 3, 1, 10, 15), _utc(2026, 3, 1, 10, 30)),
        ("cron(0/15 * * * ? *)", _utc(2026, 3, 1, 10, 14, 59), _utc(2026, 3, 1, 10, 15)),
        # 10:15 UTC every day.
        ("cron(15 10 * * ? *)", _utc(2026, 3, 1, 10, 16), _utc(2026, 3, 2, 10, 15)),
        # 6 PM Monday to Friday (AWS day-of-week: 1 = SUN, 2 = MON).
        ("cron(0 18 ? * MON-FRI *)", _utc(2026, 3, 6, 18, 0), _utc(2026, 3, 9, 18, 0)),
        ("cron(0 18 ? * 2-6 *)", _utc(2026, 3, 7, 12, 0), _utc(2026, 3, 9, 18, 0)),
        # 8 AM on the first of each month.
        ("cron(0 8 1 * ? *)", _utc(2026, 1, 15), _utc(2026, 2, 1, 8, 0)),
        ("cron(0 8 1 * ? *)", _utc(2026, 12, 1, 8, 0), _utc(2027, 1, 1, 8, 0)),
        # Every 10 min on weekdays (AWS docs example).
        ("cron(0/10 * ? * MON-FRI *)", _utc(2026, 3, 7, 0, 0), _utc(2026, 3, 9, 0, 0)),
        # Every 5 minutes between 8:00 and 17:55 on weekdays.
        ("cron(0/5 8-17 ? * MON-FRI *)", _utc(2026, 3, 9, 17, 56), _utc(2026, 3, 10, 8, 0)),
        # Sundays by number and by name (AWS 1 = SUN, 7 = SAT).
        ("cron(0 9 ? * 1 *)", _utc(2026, 3, 9), _utc(2026, 3, 15, 9, 0)),
        ("cron(0 9 ? * SUN *)", _utc(2026, 3, 9), _utc(2026, 3, 15, 9, 0)),
        ("cron(0 9 ? * 7 *)", _utc(2026, 3, 9), _utc(2026, 3, 14, 9, 0)),  # 7 = SAT
        # Lists, names and years.
        ("cron(0 0 1 JAN,JUL ? *)", _utc(2026, 2, 1), _utc(2026, 7, 1)),
        ("cron(30 12 25 12 ? 2027)", _utc(2026, 1, 1), _utc(2027, 12, 25, 12, 30)),
        ("cron(0 0 29 2 ? *)", _utc(2026, 3, 1), _utc(2028, 2, 29)),
        ("cron(0 0 31 * ? *)", _utc(2026, 4, 1), _utc(2026, 5, 31)),
        ("cron(5,35 */6 * * ? *)", _utc(2026, 3, 1, 6, 36), _utc(2026, 3, 1, 12, 5)),
        ("cron(0 10-20/5 * * ? *)", _utc(2026, 3, 1, 15, 1), _utc(2026, 3, 1, 20, 0)),
        ("CRON(0 12 * * ? *)", _utc(2026, 3, 1, 13), _utc(2026, 3, 2, 12)),
        # Standard 5-field cron (0 and 7 = Sunday, 1 = Monday).
        ("*/15 * * * *", _utc(2026, 3, 1, 10, 7), _utc(2026, 3, 1, 10, 15)),
        ("0 3 * * 1", _utc(2026, 3, 9, 3, 0), _utc(2026, 3, 16, 3, 0)),
        ("0 3 * * 0", _utc(2026, 3, 9), _utc(2026, 3, 15, 3, 0)),
        ("0 3 * * 7", _utc(2026, 3, 9), _utc(2026, 3, 15, 3, 0)),
        ("0 3 * * sun", _utc(2026, 3, 9), _utc(2026, 3, 15, 3, 0)),
        ("0 0 1 * *", _utc(2026, 3, 1), _utc(2026, 4, 1)),
        # Both day fields restricted: standard cron fires on either.
        ("0 0 13 * 5", _utc(2026, 3, 1), _utc(2026, 3, 6)),  # Friday 6th before the 13th
        ("0 0 13 * 5", _utc(2026, 3, 10), _utc(2026, 3, 13)),
        # A day field starting with "*" keeps AND (Vixie cron): odd days that are Mondays.
        ("0 0 */2 * 1", _utc(2026, 3, 1), _utc(2026, 3, 9)),
        ("@daily", _utc(2026, 3, 1, 0, 0), _utc(2026, 3, 2)),
        ("@hourly", _utc(2026, 3, 1, 0, 30), _utc(2026, 3, 1, 1)),
        ("@weekly", _utc(2026, 3, 1), _utc(2026, 3, 8)),
        ("  0 12 * * ?  ", _utc(2026, 3, 1, 13), _utc(2026, 3, 2, 12)),
    ],
)
def test_next_fire_time(expression: str, after: datetime, expected: datetime) -> None:
    assert parse_schedule(expression).next_after(after) == expected


def test_next_after_is_utc_and_accepts_other_zones_and_naive_times() -> None:
    schedule = parse_schedule("cron(0 12 * * ? *)")
    paris = timezone(timedelta(hours=1))
    result = schedule.next_after(datetime(2026, 3, 1, 12, 30, tzinfo=paris))  # 11:30 UTC
    assert result == _utc(2026, 3, 1, 12, 0)
    assert result.tzinfo is UTC
    assert schedule.next_after(datetime(2026, 3, 1, 12, 0)) == _utc(2026, 3, 2, 12, 0)


def test_successive_fire_times_step_through_the_schedule() -> None:
    schedule = parse_schedule("cron(0/20 9 ? * MON *)")
    when = _utc(2026, 3, 9)
    times = []
    for _ in range(4):
        when = schedule.next_after(when)
        times.append(when)
    assert times == [
        _utc(2026, 3, 9, 9, 0),
        _utc(2026, 3, 9, 9, 20),
        _utc(2026, 3, 9, 9, 40),
        _utc(2026, 3, 16, 9, 0),
    ]


def test_parsed_fields() -> None:
    schedule = parse_schedule("cron(0/15 8-10 ? JAN-MAR MON,WED *)")
    assert schedule.minutes == {0, 15, 30, 45}
    assert schedule.hours == {8, 9, 10}
    assert schedule.months == {1, 2, 3}
    assert schedule.weekdays == {0, 2}  # datetime.weekday(): Monday 0
    assert schedule.days_of_month == set(range(1, 32))
    assert schedule.years is None


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("cron(0 12 * * * *)", "exactly one of day-of-month and day-of-week"),
        ("cron(0 12 ? * ? *)", "exactly one of day-of-month and day-of-week"),
        ("cron(0 12 1 * MON *)", "exactly one of day-of-month and day-of-week"),
        ("cron(0 12 * * ?)", "6 fields"),
        ("cron(0 0 12 * * ? *)", "6 fields"),
        ("0 12 * *", "5-field"),
        ("0 0 12 * * ?", "5-field"),
        ("", "5-field"),
        ("rate(5 minutes)", "rate() expressions are not supported"),
        ("cron(60 * * * ? *)", "minutes value 60 is outside 0-59"),
        ("cron(0 24 * * ? *)", "hours value 24 is outside 0-23"),
        ("cron(0 0 0 * ? *)", "day-of-month value 0 is outside 1-31"),
        ("cron(0 0 32 * ? *)", "day-of-month value 32"),
        ("cron(0 0 1 13 ? *)", "month value 13"),
        ("cron(0 0 ? * 8 *)", "day-of-week value 8"),
        ("cron(0 0 ? * 0 *)", "day-of-week value 0"),
        ("cron(0 0 1 * ? 1969)", "year value 1969"),
        ("cron(0 0 1 * ? 2200)", "year value 2200"),
        ("cron(0 0 L * ? *)", "'L' and 'W'"),
        ("cron(0 0 15W * ? *)", "'L' and 'W'"),
        ("cron(0 0 ? * 6L *)", "'L' and 'W'"),
        ("cron(0 0 ? * 6#3 *)", "'#'"),
        ("cron(0/0 * * * ? *)", "step '0'"),
        ("cron(*/x * * * ? *)", "step 'x'"),
        ("cron(30-10 * * * ? *)", "runs backwards"),
        ("cron(1,,2 * * * ? *)", "empty item"),
        ("cron(a * * * ? *)", "not a number"),
        ("cron(٣ * * * ? *)", "not a number"),  # non-ASCII digit
        ("0 0 30 2 *", "never fires"),
        ("cron(0 0 31 4,6,9,11 ? *)", "never fires"),
    ],
)
def test_invalid_schedules_are_refused_clearly(expression: str, message: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_schedule(expression)
    assert message in caught.value.message
    assert repr(expression) in caught.value.message


def test_schedule_that_does_not_fire_within_five_years_gives_up() -> None:
    with pytest.raises(ValidationFailed, match="never fires"):
        parse_schedule("cron(0 0 1 1 ? 2020)").next_after(_utc(2026, 1, 1))
    with pytest.raises(ValidationFailed, match="never fires"):
        parse_schedule("cron(0 0 1 1 ? 2199)").next_after(_utc(2026, 1, 1))
    # Feb 29 only in a non-leap year.
    with pytest.raises(ValidationFailed, match="never fires"):
        parse_schedule("cron(0 0 29 2 ? 2027)").next_after(_utc(2026, 1, 1))
    assert parse_schedule("cron(0 0 1 1 ? 2030)").next_after(_utc(2026, 1, 1)) == _utc(2030, 1, 1)
