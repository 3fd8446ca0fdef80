"""Query suggestions from the query log and from document titles, and their highlights."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from runtime.errors import ValidationFailed
from services.indexer.domain.suggestions import (
    QueryLog,
    SuggestionSettings,
    highlight_prefix,
    is_blocked,
    title_suggestions,
)
from services.indexer.domain.text import Span

NOW = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
ANY = SuggestionSettings()


def log_of(*entries: tuple[str, str | None, datetime]) -> QueryLog:
    log = QueryLog()
    for query, user, at in entries:
        log.record(query, user, at)
    return log


# ------------------------------------------------------------------ settings


def test_settings_defaults() -> None:
    settings = SuggestionSettings()
    assert settings.min_unique_users == 1
    assert settings.min_query_count == 1
    assert settings.query_log_look_back_days == 180
    assert settings.include_queries_without_user is True
    assert settings.block_list == frozenset()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_unique_users": 0},
        {"min_unique_users": 10_001},
        {"min_query_count": 0},
        {"min_query_count": 10_001},
        {"query_log_look_back_days": 0},
        {"query_log_look_back_days": 3651},
    ],
)
def test_settings_validate(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValidationFailed):
        SuggestionSettings(**kwargs)


# ------------------------------------------------------------------ recording


def test_record_normalises_whitespace_and_case() -> None:
    log = log_of(("  How   TO\tindex ", "u1", NOW), ("how to index", "u2", NOW))
    assert log.suggest("how", ANY, NOW) == ["how to index"]


def test_record_ignores_empty_and_overlong_queries() -> None:
    log = QueryLog()
    log.record("", "u", NOW)
    log.record("   \n", "u", NOW)
    log.record("x" * 1001, "u", NOW)
    assert len(log) == 0
    log.record("x" * 1000, "u", NOW)
    assert len(log) == 1


def test_record_requires_aware_times() -> None:
    with pytest.raises(ValidationFailed):
        QueryLog().record("q", "u", datetime(2026, 1, 1))


def test_log_is_bounded_and_drops_the_oldest() -> None:
    log = QueryLog(max_entries=3)
    for i, query in enumerate(["alpha one", "alpha two", "alpha three", "alpha four"]):
        log.record(query, "u", NOW - (4 - i) * DAY)
    assert len(log) == 3
    assert sorted(log.suggest("alpha", ANY, NOW)) == ["alpha four", "alpha three", "alpha two"]


def test_log_validates_its_size() -> None:
    with pytest.raises(ValidationFailed):
        QueryLog(max_entries=0)


# ------------------------------------------------------------------ suggesting


def test_suggest_ranks_by_count_then_recency() -> None:
    log = log_of(
        ("search tips", "a", NOW - 3 * DAY),
        ("search tips", "b", NOW - 3 * DAY),
        ("search api", "a", NOW - 2 * DAY),
        ("search speed", "a", NOW - DAY),
        ("other", "a", NOW),
    )
    assert log.suggest("sea", ANY, NOW) == ["search tips", "search speed", "search api"]


def test_suggest_prefix_is_case_insensitive_and_whitespace_tolerant() -> None:
    log = log_of(("query suggestions setup", "u", NOW))
    assert log.suggest("QUERY   Sugg", ANY, NOW) == ["query suggestions setup"]


def test_suggest_word_matches_come_after_true_prefix_matches() -> None:
    log = log_of(
        *[("configure index", f"u{i}", NOW) for i in range(5)],
        ("index settings", "u1", NOW),
        ("reindex everything", "u1", NOW),
    )
    assert log.suggest("index", ANY, NOW) == ["index settings", "configure index"]


def test_suggest_trailing_space_means_a_finished_word() -> None:
    log = log_of(("app store", "u", NOW), ("apple pie", "u", NOW))
    assert log.suggest("app ", ANY, NOW) == ["app store"]
    assert sorted(log.suggest("app", ANY, NOW)) == ["app store", "apple pie"]


def test_suggest_requires_distinct_users() -> None:
    log = log_of(
        ("popular query", "alice", NOW),
        ("popular query", "alice", NOW),
        ("popular query", "bob", NOW),
        ("private query", "alice", NOW),
        ("private query", "alice", NOW),
        ("private query", "alice", NOW),
    )
    settings = SuggestionSettings(min_unique_users=2)
    assert log.suggest("p", settings, NOW) == ["popular query"]
    assert log.suggest("p", SuggestionSettings(min_unique_users=3), NOW) == []


def test_suggest_anonymous_queries_count_as_one_user() -> None:
    log = log_of(
        ("anon query", None, NOW),
        ("anon query", None, NOW),
        ("anon query", "carol", NOW),
    )
    two_users = SuggestionSettings(min_unique_users=2)
    assert log.suggest("anon", two_users, NOW) == ["anon query"]
    assert log.suggest("anon", SuggestionSettings(min_unique_users=3), NOW) == []


def test_suggest_can_ignore_queries_without_user() -> None:
    log = log_of(
        ("anon query", None, NOW),
        ("anon query", None, NOW),
        ("anon query", "carol", NOW),
    )
    named_only = SuggestionSettings(include_queries_without_user=False, min_query_count=2)
    assert log.suggest("anon", named_only, NOW) == []
    counted = SuggestionSettings(include_queries_without_user=False)
    assert log.suggest("anon", counted, NOW) == ["anon query"]


def test_suggest_requires_a_minimum_query_count() -> None:
    log = log_of(
        ("twice", "a", NOW),
        ("twice", "a", NOW - DAY),
        ("once", "a", NOW),
    )
    assert log.suggest("t", SuggestionSettings(min_query_count=2), NOW) == ["twice"]
    assert log.suggest("o", SuggestionSettings(min_query_count=2), NOW) == []
    assert log.suggest("o", ANY, NOW) == ["once"]


def test_suggest_excludes_blocked_words_and_phrases() -> None:
    log = log_of(
        ("secret project plan", "a", NOW),
        ("secretary schedule", "a", NOW),
        ("salary bands 2026", "a", NOW),
        ("sales figures", "a", NOW),
    )
    settings = SuggestionSettings(block_list=frozenset({"SECRET", "salary  bands"}))
    assert sorted(log.suggest("s", settings, NOW)) == ["sales figures", "secretary schedule"]


def test_suggest_look_back_window_expires_old_queries() -> None:
    log = log_of(
        ("old query", "a", NOW - 31 * DAY),
        ("edge query", "a", NOW - 30 * DAY),
        ("new query", "a", NOW - DAY),
        ("future query", "a", NOW + DAY),
    )
    settings = SuggestionSettings(query_log_look_back_days=30)
    assert sorted(log.suggest("q", settings, NOW)) == ["edge query", "new query"]
    found = {q for p in ("old", "edge", "new", "future") for q in log.suggest(p, settings, NOW)}
    assert found == {"edge query", "new query"}
    later = {q for p in ("old", "edge", "new") for q in log.suggest(p, settings, NOW + 2 * DAY)}
    assert later == {"new query"}


def test_suggest_counts_only_entries_inside_the_window() -> None:
    log = log_of(
        ("seasonal", "a", NOW - 100 * DAY),
        ("seasonal", "b", NOW - 100 * DAY),
        ("seasonal", "c", NOW),
    )
    settings = SuggestionSettings(min_unique_users=2, query_log_look_back_days=30)
    assert log.suggest("sea", settings, NOW) == []
    assert log.suggest("sea", SuggestionSettings(min_unique_users=2), NOW) == ["seasonal"]


def test_suggest_limits_and_is_distinct() -> None:
    log = log_of(*[(f"topic {i:02d}", "u", NOW - i * DAY) for i in range(20)])
    log.record("topic 00", "v", NOW)
    got = log.suggest("topic", ANY, NOW, max_suggestions=5)
    assert got == ["topic 00", "topic 01", "topic 02", "topic 03", "topic 04"]
    assert len(set(log.suggest("topic", ANY, NOW, max_suggestions=100))) == 20


@pytest.mark.parametrize(("prefix", "limit"), [("", 10), ("   ", 10), ("a", 0)])
def test_suggest_validates(prefix: str, limit: int) -> None:
    with pytest.raises(ValidationFailed):
        QueryLog().suggest(prefix, ANY, NOW, max_suggestions=limit)


def test_suggest_requires_aware_now() -> None:
    with pytest.raises(ValidationFailed):
        QueryLog().suggest("a", ANY, datetime(2026, 1, 1))


# -------------------------------------------------------------------- titles


def test_title_suggestions_order_and_dedup() -> None:
    titles = [
        "Configuring the Search Index",
        "Search",
        "search",
        "Search API reference",
        "Research notes",
        "Advanced search tips",
        "  Search   API  reference ",
    ]
    got = title_suggestions("sea", titles, block_list=frozenset())
    assert got == [
        "Search",
        "Search API reference",
        "Advanced search tips",
        "Configuring the Search Index",
    ]


def test_title_suggestions_exclude_blocked_titles() -> None:
    titles = ["Payroll secrets", "Payroll calendar", "Pay stubs confidential"]
    got = title_suggestions("pay", titles, block_list=frozenset({"secrets", "Confidential"}))
    assert got == ["Payroll calendar"]


def test_title_suggestions_limit_and_punctuation() -> None:
    titles = ["(Beta) Search", "Getting-started guide", "Beta program", "Betamax history"]
    assert title_suggestions("beta", titles, block_list=frozenset(), max_suggestions=2) == [
        "Beta program",
        "Betamax history",
    ]
    assert title_suggestions("started", titles, block_list=frozenset()) == ["Getting-started guide"]


def test_title_suggestions_validate() -> None:
    with pytest.raises(ValidationFailed):
        title_suggestions("", ["x"], block_list=frozenset())
    with pytest.raises(ValidationFailed):
        title_suggestions("x", ["x"], block_list=frozenset(), max_suggestions=0)


# ------------------------------------------------------------------ blocking


def test_is_blocked_whole_words_only() -> None:
    block = frozenset({"cat", "top secret"})
    assert is_blocked("my CAT photos", block)
    assert not is_blocked("concatenate cats", block)
    assert is_blocked("a Top  Secret memo", block)
    assert not is_blocked("top secrets", block)
    assert not is_blocked("anything", frozenset())


# ---------------------------------------------------------------- highlights


def test_highlight_prefix_at_the_start() -> None:
    suggestion = "search tips"
    spans = highlight_prefix(suggestion, "SEA")
    assert spans == [Span(0, 3)]
    assert suggestion[0:3] == "sea"


def test_highlight_prefix_marks_each_word_start() -> None:
    suggestion = "app store apps and an apple"
    spans = highlight_prefix(suggestion, "app")
    assert [suggestion[s.begin : s.end] for s in spans] == ["app", "app", "app"]
    assert spans == [Span(0, 3), Span(10, 13), Span(22, 25)]


def test_highlight_prefix_with_several_words_and_trailing_space() -> None:
    suggestion = "configure query   suggestions"
    assert highlight_prefix(suggestion, "query sugg") == [Span(10, 22)]
    assert highlight_prefix("app store apple", "app ") == [Span(0, 3)]


def test_highlight_prefix_without_match() -> None:
    assert highlight_prefix("search tips", "xyz") == []
    assert highlight_prefix("research", "sea") == []
    assert highlight_prefix("search", "") == []
