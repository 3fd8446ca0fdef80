"""The open-loop load generator: schedule, latency from the due time, errors, SigV4 headers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from bench.loadgen import LoadSpec, OpenLoop, SigV4Key, SigV4Signer, build_request, parse_head
from services.gateway.aws.sigv4 import SignedRequest, SigV4Error, verify


class _Server(asyncio.Protocol):
    """HTTP/1.1 keep-alive responder: 200 with the request body echoed, 500 for a body "fail"."""

    received: list[bytes]
    delay_s = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, rest = self.buffer.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            if len(rest) < length:
                return
            body, self.buffer = rest[:length], rest[length:]
            self.received.append(head + b"\r\n\r\n" + body)
            asyncio.get_running_loop().call_later(self.delay_s, self._reply, body)

    def _reply(self, body: bytes) -> None:
        status = b"500 Internal Server Error" if body == b"fail" else b"200 OK"
        self.transport.write(  # type: ignore[attr-defined]
            b"HTTP/1.1 " + status + b"\r\ncontent-length: %d\r\n\r\n" % len(body) + body
        )


@pytest.fixture
async def server() -> AsyncIterator[tuple[int, list[bytes]]]:
    received: list[bytes] = []
    protocol = type("Server", (_Server,), {"received": received})
    srv = await asyncio.get_running_loop().create_server(protocol, "127.0.0.1", 0)
    yield srv.sockets[0].getsockname()[1], received
    srv.close()
    await srv.wait_closed()


def test_parse_head_reads_status_and_length() -> None:
    assert parse_head(b"HTTP/1.1 404 Not Found\r\nContent-Length: 12\r\nX: y") == (404, 12)
    with pytest.raises(ValueError, match="chunked"):
        parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked")


def test_build_request_counts_the_body() -> None:
    data = build_request("h:1", "/p", {"A": "b"}, b"{}")
    assert data == b"POST /p HTTP/1.1\r\nHost: h:1\r\nContent-Length: 2\r\nA: b\r\n\r\n{}"


async def test_sends_at_the_rate_on_few_connections(server: tuple[int, list[bytes]]) -> None:
    port, received = server
    spec = LoadSpec(
        host="127.0.0.1",
        port=port,
        path="/x",
        bodies=['{"n": 1}', '{"n": 2}'],
        rate=400.0,
        duration_s=0.5,
        connections=2,
        headers={"Authorization": "Bearer k"},
    )
    result = await OpenLoop(spec).run()
    assert result.sent == result.ok == len(received) == 200
    assert not result.errors
    assert 0.45 < result.elapsed_s < 2.0
    assert all(latency >= 0 for latency in result.latencies_ms)
    assert {r.rsplit(b"\r\n\r\n", 1)[1] for r in received} == {b'{"n": 1}', b'{"n": 2}'}
    assert all(b"Authorization: Bearer k" in r for r in received)


async def test_waiting_for_a_connection_counts_in_latency(server: tuple[int, list[bytes]]) -> None:
    port, _ = server
    _Server.delay_s = 0.02
    try:
        spec = LoadSpec(
            host="127.0.0.1", port=port, path="/", bodies=["x"], rate=200.0, duration_s=0.2,
            connections=1,
        )  # fmt: skip
        result = await OpenLoop(spec).run()
    finally:
        _Server.delay_s = 0.0
    # One connection serves a request every 20 ms while one is due every 5 ms: the queue grows.
    assert result.ok == 40
    assert max(result.latencies_ms) > 500


async def test_errors_are_counted_with_a_sample(server: tuple[int, list[bytes]]) -> None:
    port, _ = server
    spec = LoadSpec(
        host="127.0.0.1", port=port, path="/", bodies=["ok", "fail"], rate=100.0, duration_s=0.2
    )
    result = await OpenLoop(spec).run()
    assert result.ok == 10
    assert result.errors == {"HTTP 500": 10}
    assert result.error_samples["HTTP 500"] == "fail"


def test_sigv4_headers_verify_with_the_secret() -> None:
    key = SigV4Key("AKID", "secret", service="frauddetector", target="T.Op")
    body = json.dumps({"a": 1}).encode()
    headers = SigV4Signer(key, "127.0.0.1:8080")(body)
    request = SignedRequest("POST", "/", "", [("host", "127.0.0.1:8080"), *headers.items()], body)
    lookup = {"AKID": "secret"}.get
    caller = verify(request, lookup, datetime.now(UTC))
    assert (caller.access_key_id, caller.service) == ("AKID", "frauddetector")
    with pytest.raises(SigV4Error):
        verify(request, {"AKID": "other"}.get, datetime.now(UTC))
