"""Data source sync jobs in Kendra's terms: status machine, metrics, deletion guard, cron schedules."""

from __future__ import annotations

import calendar
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from fractions import Fraction
from typing import Literal

from runtime.errors import ValidationFailed


class SyncStatus(StrEnum):
    SYNCING = "SYNCING"
    SYNCING_INDEXING = "SYNCING_INDEXING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"
    ABORTED = "ABORTED"
    INCOMPLETE = "INCOMPLETE"


class SyncMode(StrEnum):
    FULL_CRAWL = "FULL_CRAWL"
    FORCED_FULL_CRAWL = "FORCED_FULL_CRAWL"


SyncEvent = Literal["crawl_done", "indexing_done", "failed", "stop_requested", "stopped", "aborted"]

TERMINAL: frozenset[SyncStatus] = frozenset(
    {SyncStatus.SUCCEEDED, SyncStatus.FAILED, SyncStatus.STOPPED, SyncStatus.ABORTED}
)

_TRANSITIONS: dict[tuple[SyncStatus, str], SyncStatus] = {
    (SyncStatus.SYNCING, "crawl_done"): SyncStatus.SYNCING_INDEXING,
    (SyncStatus.SYNCING_INDEXING, "indexing_done"): SyncStatus.SUCCEEDED,
    (SyncStatus.SYNCING, "failed"): SyncStatus.FAILED,
    (SyncStatus.SYNCING_INDEXING, "failed"): SyncStatus.FAILED,
    (SyncStatus.SYNCING, "stop_requested"): SyncStatus.STOPPING,
    (SyncStatus.SYNCING_INDEXING, "stop_requested"): SyncStatus.STOPPING,
    (SyncStatus.STOPPING, "stopped"): SyncStatus.STOPPED,
    (SyncStatus.SYNCING, "aborted"): SyncStatus.ABORTED,
}


def transition(current: SyncStatus, event: SyncEvent) -> SyncStatus:
    """The status after `event`; ValidationFailed when the machine does not allow it."""
    try:
        status = SyncStatus(current)
    except ValueError:
        raise ValidationFailed(
            f"unknown sync job status {current!r}", status=str(current)
        ) from None
    after = _TRANSITIONS.get((status, event))
    if after is None:
        raise ValidationFailed(
            f"sync job in status {status.value} cannot take event {event!r}",
            status=status.value,
            event=event,
        )
    return after


@dataclass
class SyncMetrics:
    scanned: int = 0
    added: int = 0
    modified: int = 0
    deleted: int = 0
    unchanged: int = 0
    failed: int = 0
    skipped_robots: int = 0
    skipped_pattern: int = 0
    skipped_size: int = 0
    skipped_scope: int = 0
    skipped_duplicate: int = 0

    def kendra(self) -> dict[str, str]:
        """Kendra's DataSourceSyncJobMetrics, whose counts are strings."""
        return {
            "DocumentsAdded": str(self.added),
            "DocumentsModified": str(self.modified),
            "DocumentsDeleted": str(self.deleted),
            "DocumentsFailed": str(self.failed),
            "DocumentsScanned": str(self.scanned),
        }


def deletions_allowed(previous_documents: int, to_delete: int, threshold: float = 0.15) -> bool:
    """False when a sync would delete strictly more than `threshold` of the previous documents."""
    if isinstance(threshold, bool) or not math.isfinite(threshold) or not 0 <= threshold <= 1:
        raise ValidationFailed(f"deletion threshold must be from 0 to 1, got {threshold!r}")
    if previous_documents < 0 or to_delete < 0:
        raise ValidationFailed(
            f"document counts must be >= 0, got previous={previous_documents} delete={to_delete}"
        )
    if previous_documents == 0:
        return True
    # The threshold as written (0.29, not 0.28999...) so boundaries land where people expect.
    return to_delete <= Fraction(repr(float(threshold))) * previous_documents


def change_kind(
    previous_hash: str | None, new_hash: str
) -> Literal["added", "modified", "unchanged"]:
    if previous_hash is None:
        return "added"
    return "unchanged" if previous_hash == new_hash else "modified"


# --- cron -------------------------------------------------------------------------------------

_MONTHS = {name.upper(): i for i, name in enumerate(calendar.month_abbr) if name}
_AWS_DAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
_UNIX_DAYS = {"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_LOOKAHEAD = timedelta(days=5 * 366)


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int] | None = None


_MINUTE = _Field("minutes", 0, 59)
_HOUR = _Field("hours", 0, 23)
_DOM = _Field("day-of-month", 1, 31)
_MONTH = _Field("month", 1, 12, _MONTHS)
_AWS_DOW = _Field("day-of-week", 1, 7, _AWS_DAYS)
_UNIX_DOW = _Field("day-of-week", 0, 7, _UNIX_DAYS)
_YEAR = _Field("year", 1970, 2199)


def _fail(expression: str, why: str) -> ValidationFailed:
    return ValidationFailed(f"invalid schedule {expression!r}: {why}", expression=expression)


def _value(expression: str, spec: _Field, text: str) -> int:
    if spec.names is not None and text.upper() in spec.names:
        return spec.names[text.upper()]
    if not text.isascii() or not text.isdigit():
        upper = text.upper()
        if upper in ("L", "LW") or (upper[:-1].isdigit() and upper[-1:] in ("L", "W")):
            raise _fail(expression, f"'L' and 'W' in the {spec.name} field are not supported")
        raise _fail(expression, f"{spec.name} value {text!r} is not a number or name")
    number = int(text)
    if not spec.low <= number <= spec.high:
        raise _fail(expression, f"{spec.name} value {number} is outside {spec.low}-{spec.high}")
    return number


def _parse_field(expression: str, spec: _Field, text: str) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise _fail(expression, f"empty item in {spec.name} field {text!r}")
        if "#" in item:
            raise _fail(expression, f"'#' in the {spec.name} field is not supported")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isascii() or not step_text.isdigit() or int(step_text) == 0:
                raise _fail(expression, f"step {step_text!r} in {spec.name} must be a number >= 1")
            step = int(step_text)
        if base == "*":
            low, high = spec.low, spec.high
        elif "-" in base:
            first, _, last = base.partition("-")
            low, high = _value(expression, spec, first), _value(expression, spec, last)
            if low > high:
                raise _fail(expression, f"{spec.name} range {base!r} runs backwards")
        else:
            low = _value(expression, spec, base)
            # AWS reads "5/15" as "from 5, every 15"; a bare value is just itself.
            high = spec.high if slash else low
        values.update(range(low, high + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class CronSchedule:
    """A parsed cron schedule, evaluated in UTC at minute resolution.

    Weekdays are stored as datetime.weekday() numbers (Monday 0). With `days_either`, a day
    matches on day-of-month OR day-of-week (standard cron when both are restricted);
    otherwise both must match (an unrestricted one holds every value).
    """

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    years: frozenset[int] | None = None
    days_either: bool = False

    def _day_matches(self, day: datetime) -> bool:
        if day.month not in self.months:
            return False
        if self.years is not None and day.year not in self.years:
            return False
        on_dom = day.day in self.days_of_month
        on_dow = day.weekday() in self.weekdays
        return (on_dom or on_dow) if self.days_either else (on_dom and on_dow)

    def next_after(self, when: datetime) -> datetime:
        """The first fire time strictly after `when` (naive means UTC); the result is UTC-aware."""
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        start = when.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = start + _LOOKAHEAD
        hours = sorted(self.hours)
        minutes = sorted(self.minutes)
        day = start.replace(hour=0, minute=0)
        first = True
        while day <= limit:
            if self._day_matches(day):
                for hour in hours:
                    if first and hour < start.hour:
                        continue
                    for minute in minutes:
                        candidate = day.replace(hour=hour, minute=minute)
                        if candidate >= start:
                            return candidate
            day += timedelta(days=1)
            first = False
        raise ValidationFailed(
            f"schedule {self.expression!r} never fires (not within 5 years after {when.isoformat()})",
            expression=self.expression,
        )


def parse_schedule(expression: str) -> CronSchedule:
    """Parse AWS "cron(Min Hour Day-of-month Month Day-of-week Year)" or a 5-field Unix cron."""
    text = expression.strip()
    lowered = text.lower()
    if lowered.startswith("rate("):
        raise _fail(expression, "rate() expressions are not supported; use cron(...)")
    if lowered.startswith("cron(") and text.endswith(")"):
        fields = text[5:-1].split()
        if len(fields) != 6:
            raise _fail(
                expression,
                "cron(...) needs 6 fields: minutes hours day-of-month month day-of-week year, "
                f"got {len(fields)}",
            )
        schedule = _parse_aws(expression, fields)
    else:
        fields = _MACROS.get(lowered, text).split()
        if len(fields) != 5:
            raise _fail(
                expression,
                "expected cron(minutes hours day-of-month month day-of-week year) or 5-field "
                f"cron (minute hour day-of-month month day-of-week), got {len(fields)} fields",
            )
        schedule = _parse_unix(expression, fields)
    _check_days_exist(expression, schedule)
    return schedule


def _parse_aws(expression: str, fields: list[str]) -> CronSchedule:
    minute, hour, dom, month, dow, year = fields
    if (dom == "?") == (dow == "?"):
        raise _fail(
            expression,
            "AWS cron needs '?' in exactly one of day-of-month and day-of-week",
        )
    all_days = frozenset(range(7))
    days = frozenset(range(1, 32)) if dom == "?" else _parse_field(expression, _DOM, dom)
    weekdays = (
        all_days
        if dow == "?"
        else frozenset((d - 2) % 7 for d in _parse_field(expression, _AWS_DOW, dow))
    )
    return CronSchedule(
        expression=expression,
        minutes=_parse_field(expression, _MINUTE, minute),
        hours=_parse_field(expression, _HOUR, hour),
        days_of_month=days,
        months=_parse_field(expression, _MONTH, month),
        weekdays=weekdays,
        years=None if year == "*" else _parse_field(expression, _YEAR, year),
    )


def _parse_unix(expression: str, fields: list[str]) -> CronSchedule:
    minute, hour, dom, month, dow = fields
    dom = "*" if dom == "?" else dom
    dow = "*" if dow == "?" else dow
    return CronSchedule(
        expression=expression,
        minutes=_parse_field(expression, _MINUTE, minute),
        hours=_parse_field(expression, _HOUR, hour),
        days_of_month=_parse_field(expression, _DOM, dom),
        months=_parse_field(expression, _MONTH, month),
        weekdays=frozenset((d - 1) % 7 for d in _parse_field(expression, _UNIX_DOW, dow)),
        # Vixie cron: a day field starting with "*" does not widen the match to OR.
        days_either=not dom.startswith("*") and not dow.startswith("*"),
    )


def _check_days_exist(expression: str, schedule: CronSchedule) -> None:
    if schedule.days_either:
        return
    longest = max(calendar.monthrange(2000, m)[1] for m in schedule.months)
    if min(schedule.days_of_month) > longest:
        raise _fail(expression, "never fires: no chosen month has that day")
