"""Pure logic: restart backoff, fleet summaries, index paging, log redaction."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest

from contracts.system import ServiceHealth
from runtime.errors import ValidationFailed
from runtime.logs import JsonFormatter, correlation, redact
from services.gateway.domain.fleet import platform_ready, summarize
from services.indexer.domain.indexes import Index, page_after
from trellis.supervisor import next_backoff

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_backoff_doubles_on_quick_crashes_and_resets_after_a_stable_run() -> None:
    kw = {"initial_s": 0.5, "max_s": 4.0, "stable_s": 30.0}
    delays = []
    delay = 0.0
    for _ in range(5):
        delay = next_backoff(delay, 1.0, **kw)
        delays.append(delay)
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert next_backoff(4.0, 31.0, **kw) == 0.5


def _health(service: str, instance: str, ready: bool) -> ServiceHealth:
    return ServiceHealth(
        service=service,
        instance_id=instance,
        version="1",
        host="h",
        pid=1,
        started_at=NOW,
        ready=ready,
    )


def test_fleet_summary_counts_replicas_and_readiness() -> None:
    reports = [
        _health("fraud", "a", True),
        _health("fraud", "b", False),
        _health("crawler", "c", True),
    ]
    by_name = {s.name: s for s in summarize(reports)}
    assert (
        by_name["fraud"].replicas,
        by_name["fraud"].ready_replicas,
        by_name["fraud"].status,
    ) == (2, 1, "degraded")
    assert by_name["indexer"].status == "down" and by_name["indexer"].replicas == 0
    assert not platform_ready(summarize(reports))
    everyone = [_health(name, "x", True) for name in by_name]
    assert platform_ready(summarize(everyone))


def test_index_pages_follow_the_token() -> None:
    indexes = [Index(id=f"ix{i}", name=f"n{i}", created_at=NOW, updated_at=NOW) for i in (3, 1, 2)]
    page, token = page_after(indexes, 2, None)
    assert [ix.id for ix in page] == ["ix1", "ix2"] and token == "ix2"
    page, token = page_after(indexes, 2, token)
    assert [ix.id for ix in page] == ["ix3"] and token is None
    with pytest.raises(ValidationFailed):
        page_after(indexes, 2, " ")


def test_redaction_masks_secret_keys_and_bearer_tokens() -> None:
    cleaned = redact(
        {
            "api_key": "k",
            "access_key_id": "TRLS1",
            "nested": {"password": "p"},
            "note": "Authorization: Bearer abc.def",
        }
    )
    assert cleaned["api_key"] == "[redacted]" and cleaned["nested"]["password"] == "[redacted]"
    assert cleaned["access_key_id"] == "TRLS1"
    assert "abc.def" not in cleaned["note"]


def test_json_log_lines_carry_the_correlation_id() -> None:
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "sent Bearer s3cr3t-token", None, None
    )
    record.secret_access_key = "hunter2"
    with correlation("cid-42"):
        line = json.loads(JsonFormatter("fraud").format(record))
    assert line["correlation_id"] == "cid-42" and line["service"] == "fraud"
    assert "s3cr3t-token" not in line["message"] and line["secret_access_key"] == "[redacted]"
