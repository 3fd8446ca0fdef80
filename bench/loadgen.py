"""Open-loop HTTP/1.1 load generator on raw asyncio protocols, run as its own process.

A Python HTTP client (httpx) spends about a millisecond of CPU per request: at 1,000 requests/s it
needs a core of its own, which a 2-core machine cannot spare for the client. This one writes
pre-built request bytes on keep-alive connections and reads only the status line and
Content-Length of each reply, so a request costs it tens of microseconds.

    python -m bench.loadgen < spec.json > result.json

The spec (`LoadSpec`) names the target, the bodies, the rate and the duration; the result
(`LoadResult`) holds one latency per successful request, counted from its scheduled send time,
so waiting for a free connection is included, as it is for a real client.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import sys
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

if __package__ in (None, ""):  # run as `python bench/loadgen.py`: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.gateway.aws.sigv4 import signing_key

AWS_REGION = "us-east-1"
REPO_ROOT = Path(__file__).resolve().parent.parent
_HEADER_END = b"\r\n\r\n"
TIMER_TICK_S = 0.001


@dataclass
class SigV4Key:
    """An access-key pair; each request is signed as it is sent, as an AWS SDK does."""

    access_key_id: str
    secret_access_key: str
    service: str
    target: str  # X-Amz-Target
    content_type: str = "application/x-amz-json-1.1"
    region: str = AWS_REGION


@dataclass
class LoadSpec:
    host: str
    port: int
    path: str
    bodies: list[str]
    rate: float
    duration_s: float
    connections: int = 64
    timeout_s: float = 10.0
    headers: dict[str, str] = field(default_factory=dict)
    sigv4: SigV4Key | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoadSpec:
        key = data.pop("sigv4", None)
        return cls(**data, sigv4=SigV4Key(**key) if key else None)


@dataclass
class LoadResult:
    sent: int
    ok: int
    elapsed_s: float
    latencies_ms: list[float]
    errors: dict[str, int]
    error_samples: dict[str, str]
    max_send_lag_ms: float
    client_cpu_s: float


class SigV4Signer:
    """The headers an AWS SDK adds to sign one AWS JSON 1.1 call (SigV4, header auth over
    content-type, host, x-amz-date and x-amz-target)."""

    def __init__(self, key: SigV4Key, host: str) -> None:
        self.key = key
        self.host = host
        self._keys: dict[str, bytes] = {}

    def __call__(self, body: bytes) -> dict[str, str]:
        key = self.key
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        day = amz_date[:8]
        derived = self._keys.get(day)
        if derived is None:  # derived once a day, as SDKs cache it
            derived = self._keys[day] = signing_key(
                key.secret_access_key, day, key.region, key.service
            )
        scope = f"{day}/{key.region}/{key.service}/aws4_request"
        signed = "content-type;host;x-amz-date;x-amz-target"
        canonical = (
            f"POST\n/\n\ncontent-type:{key.content_type}\nhost:{self.host}\n"
            f"x-amz-date:{amz_date}\nx-amz-target:{key.target}\n\n{signed}\n"
            + hashlib.sha256(body).hexdigest()
        )
        to_sign = (
            f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n"
            + hashlib.sha256(canonical.encode()).hexdigest()
        )
        signature = hmac.new(derived, to_sign.encode(), hashlib.sha256).hexdigest()
        return {
            "Authorization": f"AWS4-HMAC-SHA256 Credential={key.access_key_id}/{scope},"
            f" SignedHeaders={signed}, Signature={signature}",
            "Content-Type": key.content_type,
            "X-Amz-Date": amz_date,
            "X-Amz-Target": key.target,
        }


def build_request(host: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def parse_head(head: bytes) -> tuple[int, int]:
    """Status code and Content-Length of a response head (without its blank line)."""
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
        elif name.strip().lower() == b"transfer-encoding":
            raise ValueError("chunked replies are not read by this client")
    return status, length


class Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self, on_reply: Callable[[Connection, int, bytes], None]) -> None:
        self.on_reply = on_reply
        self.on_lost: Callable[[Connection, Exception | None], None] | None = None
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.expect: tuple[int, int] | None = None  # (status, body bytes) once the head is read
        self.due = 0.0  # the scheduled send time of the request in flight

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def send(self, data: bytes, due: float) -> None:
        assert self.transport is not None
        self.due = due
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if self.expect is None:
                end = self.buffer.find(_HEADER_END)
                if end < 0:
                    return
                self.expect = parse_head(bytes(self.buffer[:end]))
                del self.buffer[: end + len(_HEADER_END)]
            status, length = self.expect
            if len(self.buffer) < length:
                return
            body = bytes(self.buffer[:length])
            del self.buffer[:length]
            self.expect = None
            self.on_reply(self, status, body)
            if not self.buffer:
                return

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.on_lost is not None:
            self.on_lost(self, exc)


class OpenLoop:
    """Sends requests on a fixed schedule whatever the replies do."""

    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self.host = f"{spec.host}:{spec.port}"
        self.idle: deque[Connection] = deque()
        self.waiting: deque[tuple[int, float]] = deque()  # (request number, due)
        self.in_flight: set[Connection] = set()
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()
        self.samples: dict[str, str] = {}
        self.finished = 0
        self.bodies = [b.encode() for b in spec.bodies]
        sign = SigV4Signer(spec.sigv4, self.host) if spec.sigv4 else None
        if sign is None:  # the same bytes every time: build them once
            built = [build_request(self.host, spec.path, spec.headers, b) for b in self.bodies]
            self.request: Callable[[int], bytes] = lambda i: built[i % len(built)]
        else:
            signer = sign

            def signed(i: int) -> bytes:
                body = self.bodies[i % len(self.bodies)]
                return build_request(self.host, spec.path, {**spec.headers, **signer(body)}, body)

            self.request = signed
        self.all_done = asyncio.Event()
        self.total = 0

    def _error(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        self.samples.setdefault(kind, detail[:300])
        self._finish()

    def _finish(self) -> None:
        self.finished += 1
        if self.finished >= self.total:
            self.all_done.set()

    def _on_reply(self, conn: Connection, status: int, body: bytes) -> None:
        self.in_flight.discard(conn)
        if status == 200:
            self.latencies.append((time.perf_counter() - conn.due) * 1e3)
            self._finish()
        else:
            self._error(f"HTTP {status}", body.decode(errors="replace"))
        self._dispatch(conn)

    def _on_lost(self, conn: Connection, exc: Exception | None) -> None:
        if conn in self.in_flight:
            self.in_flight.discard(conn)
            self._error("connection lost", repr(exc))
        if conn in self.idle:
            self.idle.remove(conn)

    def _dispatch(self, conn: Connection) -> None:
        """Give `conn` the oldest waiting request still within its deadline, else mark it idle."""
        now = time.perf_counter()
        while self.waiting:
            number, due = self.waiting.popleft()
            if now - due > self.spec.timeout_s:
                self._error("timeout", "waited for a connection past the deadline")
                continue
            self.in_flight.add(conn)
            conn.send(self.request(number), due)
            return
        self.idle.append(conn)

    def _submit(self, number: int, due: float) -> None:
        if self.idle:
            conn = self.idle.popleft()
            self.in_flight.add(conn)
            conn.send(self.request(number), due)
        else:
            self.waiting.append((number, due))

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(self.spec.connections):
            _, conn = await loop.create_connection(
                lambda: Connection(self._on_reply), self.spec.host, self.spec.port
            )
            conn.on_lost = self._on_lost
            self.idle.append(conn)

    async def run(self) -> LoadResult:
        spec = self.spec
        self.total = max(1, round(spec.rate * spec.duration_s))
        await self.connect()
        cpu_before = time.process_time()
        lag = 0.0
        began = time.perf_counter() + 0.01
        number = 0
        while number < self.total:
            now = time.perf_counter()
            while number < self.total and began + number / spec.rate <= now:
                due = began + number / spec.rate
                lag = max(lag, now - due)
                self._submit(number, due)
                number += 1
            if number < self.total:
                # The loop's timers tick in milliseconds: a shorter sleep returns at once and the
                # client would spin a core. Requests due within a tick go out together; their
                # latency still counts from their own due time.
                wait = began + number / spec.rate - time.perf_counter()
                await asyncio.sleep(max(wait, TIMER_TICK_S))
        last_due = began + (self.total - 1) / spec.rate
        remaining = last_due + spec.timeout_s - time.perf_counter()
        try:
            await asyncio.wait_for(self.all_done.wait(), timeout=max(0.0, remaining))
        except TimeoutError:
            self.errors["timeout"] += self.total - self.finished
            self.samples.setdefault("timeout", f"no reply within {spec.timeout_s:g} s")
        elapsed = time.perf_counter() - began
        cpu = time.process_time() - cpu_before
        for conn in (*self.idle, *self.in_flight):
            if conn.transport is not None:
                conn.transport.close()
        return LoadResult(
            sent=self.total,
            ok=len(self.latencies),
            elapsed_s=elapsed,
            latencies_ms=self.latencies,
            errors=dict(self.errors),
            error_samples=self.samples,
            max_send_lag_ms=lag * 1e3,
            client_cpu_s=cpu,
        )


async def run_spec(spec: LoadSpec) -> LoadResult:
    return await OpenLoop(spec).run()


async def run_in_process(spec: LoadSpec, *, python: str = sys.executable) -> LoadResult:
    """Run `spec` in a child process (its own interpreter and core) and return its result."""
    child = await asyncio.create_subprocess_exec(
        python,
        "-m",
        "bench.loadgen",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,
    )
    out, _ = await child.communicate(json.dumps(asdict(spec)).encode())
    if child.returncode != 0:
        raise RuntimeError(f"the load generator exited with {child.returncode}")
    return LoadResult(**json.loads(out))


def main() -> int:
    import uvloop

    spec = LoadSpec.from_json(json.load(sys.stdin))
    result = uvloop.run(run_spec(spec))
    json.dump(asdict(result), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
