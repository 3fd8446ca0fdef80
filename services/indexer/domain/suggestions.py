"""Kendra query suggestions: an in-memory query log, title suggestions and prefix highlights."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache

from runtime.errors import ValidationFailed
from services.indexer.domain.text import Span

MAX_QUERY_CHARS = 1000
MIN_THRESHOLD = 1
MAX_THRESHOLD = 10_000
MAX_LOOK_BACK_DAYS = 3650
_ANONYMOUS = object()


def _normalise(text: str) -> str:
    return " ".join(text.split()).lower()


def _normalise_prefix(prefix: str) -> str:
    # A trailing space means the user finished the word: "app " must not suggest "apple".
    norm = _normalise(prefix)
    if norm and prefix[-1:].isspace():
        norm += " "
    return norm


@dataclass
class SuggestionSettings:
    min_unique_users: int = 1
    min_query_count: int = 1
    query_log_look_back_days: int = 180
    include_queries_without_user: bool = True
    block_list: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        for name, value in (
            ("min_unique_users", self.min_unique_users),
            ("min_query_count", self.min_query_count),
        ):
            if not MIN_THRESHOLD <= value <= MAX_THRESHOLD:
                raise ValidationFailed(f"{name} must be from {MIN_THRESHOLD} to {MAX_THRESHOLD}")
        if not 1 <= self.query_log_look_back_days <= MAX_LOOK_BACK_DAYS:
            raise ValidationFailed(
                f"query_log_look_back_days must be from 1 to {MAX_LOOK_BACK_DAYS}"
            )


@lru_cache(maxsize=64)
def _block_pattern(block_list: frozenset[str]) -> re.Pattern[str] | None:
    phrases = sorted({_normalise(p) for p in block_list} - {""})
    if not phrases:
        return None
    alternatives = (r"\s+".join(re.escape(w) for w in p.split()) for p in phrases)
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)


def is_blocked(text: str, block_list: frozenset[str]) -> bool:
    """Whether text contains a blocked word or phrase (case-insensitive, whole words)."""
    pattern = _block_pattern(block_list)
    return pattern is not None and pattern.search(text) is not None


def _prefix_pattern(prefix: str) -> re.Pattern[str]:
    body = r"\s+".join(re.escape(w) for w in prefix.split())
    if prefix.endswith(" "):
        body += r"\s"
    return re.compile(r"(?<!\w)" + body, re.IGNORECASE)


def _match_tier(text: str, pattern: re.Pattern[str]) -> int | None:
    """0 when text starts with the prefix, 1 when a later word does, None otherwise."""
    match = pattern.search(text)
    if match is None:
        return None
    return 0 if match.start() == 0 else 1


def _check_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValidationFailed(f"{name} must be timezone-aware")


def _check_prefix(prefix: str, max_suggestions: int) -> str:
    if max_suggestions < 1:
        raise ValidationFailed("max_suggestions must be at least 1")
    norm = _normalise_prefix(prefix)
    if not norm.strip():
        raise ValidationFailed("query suggestion prefix is empty")
    return norm


@dataclass(frozen=True)
class _Entry:
    query: str
    user_id: str | None
    at: datetime


class QueryLog:
    """Bounded in-memory log of queries, oldest dropped first."""

    def __init__(self, *, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValidationFailed("max_entries must be at least 1")
        self._entries: deque[_Entry] = deque(maxlen=max_entries)

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    def record(self, query: str, user_id: str | None, at: datetime) -> None:
        """Log one query; empty queries and those over 1000 characters are ignored."""
        _check_aware(at, "query time")
        norm = _normalise(query)
        if not norm or len(norm) > MAX_QUERY_CHARS:
            return
        self._entries.append(_Entry(norm, user_id, at))

    def suggest(
        self,
        prefix: str,
        settings: SuggestionSettings,
        now: datetime,
        *,
        max_suggestions: int = 10,
    ) -> list[str]:
        """Popular past queries for the prefix: true prefix matches first, then by count and recency."""
        _check_aware(now, "now")
        pattern = _prefix_pattern(_check_prefix(prefix, max_suggestions))
        since = now - timedelta(days=settings.query_log_look_back_days)
        counts: dict[str, int] = {}
        users: dict[str, set[object]] = {}
        latest: dict[str, datetime] = {}
        for entry in self._entries:
            if not since <= entry.at <= now:
                continue
            if entry.user_id is None and not settings.include_queries_without_user:
                continue
            counts[entry.query] = counts.get(entry.query, 0) + 1
            user = _ANONYMOUS if entry.user_id is None else entry.user_id
            users.setdefault(entry.query, set()).add(user)
            if entry.query not in latest or entry.at > latest[entry.query]:
                latest[entry.query] = entry.at
        ranked: list[tuple[int, int, float, str]] = []
        for query, count in counts.items():
            if count < settings.min_query_count:
                continue
            if len(users[query]) < settings.min_unique_users:
                continue
            tier = _match_tier(query, pattern)
            if tier is None or is_blocked(query, settings.block_list):
                continue
            ranked.append((tier, -count, -latest[query].timestamp(), query))
        ranked.sort()
        return [query for *_, query in ranked[:max_suggestions]]


def title_suggestions(
    prefix: str, titles: Iterable[str], *, block_list: frozenset[str], max_suggestions: int = 10
) -> list[str]:
    """Document titles with a word starting with the prefix: prefix-of-title first, then shorter."""
    pattern = _prefix_pattern(_check_prefix(prefix, max_suggestions))
    seen: set[str] = set()
    ranked: list[tuple[int, int, str, int, str]] = []
    for position, title in enumerate(titles):
        clean = " ".join(title.split())
        key = clean.lower()
        if not clean or key in seen:
            continue
        seen.add(key)
        tier = _match_tier(clean, pattern)
        if tier is None or is_blocked(clean, block_list):
            continue
        ranked.append((tier, len(clean), key, position, clean))
    ranked.sort()
    return [title for *_, title in ranked[:max_suggestions]]


def highlight_prefix(suggestion: str, prefix: str) -> list[Span]:
    """Spans of the suggestion where a word starts with the prefix (Kendra SuggestionHighlight)."""
    norm = _normalise_prefix(prefix)
    if not norm.strip():
        return []
    spans: list[Span] = []
    for match in _prefix_pattern(norm).finditer(suggestion):
        end = match.end()
        # The matched trailing space of a finished word is not part of the highlight.
        while end > match.start() and suggestion[end - 1].isspace():
            end -= 1
        spans.append(Span(match.start(), end))
    return spans
