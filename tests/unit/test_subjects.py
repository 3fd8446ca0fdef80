"""Subject names: built in one module, valid tokens, and streams never swallow requests."""

from __future__ import annotations

import pytest

from contracts import catalog, subjects, topology


def test_event_and_operation_shapes() -> None:
    assert subjects.event("crawl", "document", "added") == "crawl.v1.document.added"
    assert subjects.operation("fraud", "get_event_prediction") == "fraud.v1.get_event_prediction"
    assert subjects.ping("image_builder") == "image.v1.ping"


@pytest.mark.parametrize(
    "token", ["", "Upper", "has.dot", "has space", "1starts_with_digit", "x" * 65, ">"]
)
def test_bad_tokens_are_refused(token: str) -> None:
    with pytest.raises(ValueError, match="invalid subject token"):
        subjects.operation("fraud", token)


def test_unknown_service_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown service"):
        subjects.ping("nope")


def _matches(pattern: str, subject: str) -> bool:
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(p) == len(s)


def test_no_stream_captures_a_request_subject() -> None:
    # A stream listening on a request subject would answer it with a PubAck instead of the service.
    for stream in topology.STREAMS:
        for pattern in stream.subjects:
            for op in catalog.OPERATIONS:
                assert not _matches(pattern, op.subject), (stream.name, op.subject)


def test_every_event_subject_is_in_its_stream() -> None:
    streams = {s.name: s for s in topology.STREAMS}
    for ev in catalog.EVENTS:
        if not ev.stream:  # a core NATS broadcast: no stream may capture it
            assert not any(_matches(p, ev.subject) for s in topology.STREAMS for p in s.subjects)
            continue
        # A templated subject: check one instance of it.
        subject = ev.subject.replace("{build_id}", "b123").replace("{pool}", "local")
        assert any(_matches(p, subject) for p in streams[ev.stream].subjects), ev.subject
