"""Benchmark: the Trellis runtime bus against raw nats-py on a real, locally started nats-server."""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import timeit
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

if __package__ in (None, ""):  # run as `python bench/bus.py`: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from bench.common import nats_server_version, package_version, process_cpu_s
from contracts.envelope import EnvelopeMeta, Message, new_message_id
from contracts.topology import StreamSpec
from runtime import codec
from runtime.bus import Bus
from runtime.embedded_nats import EmbeddedNats
from runtime.topology import ensure_platform, ensure_stream

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO_ROOT / "bench" / "results" / "bus.json"

PEERS = ("runtime", "raw")
TIMEOUT_S = 5.0
THROUGHPUT_GOAL = 0.85  # runtime keeps at least 85% of raw nats-py throughput
P99_GOAL_MS = 2.0  # request/reply p99 on loopback (sequential, i.e. unloaded)

TAGS = ["card-present", "retail", "eu-west", "priority"]
ECHO_TEXT = "the quick brown fox jumps over the lazy dog, then asks for a reply"


# -- messages ----------------------------------------------------------------------------------


class SampleRecorded(Message):
    message_type: ClassVar[str] = "bench.v1.sample_recorded"

    id: str
    account_id: str
    amount: float
    currency: str
    merchant: str
    tags: list[str]
    created_at: datetime


class EchoRequest(Message):
    message_type: ClassVar[str] = "bench.v1.echo_request"

    id: str
    text: str
    n: int


class EchoReply(Message):
    message_type: ClassVar[str] = "bench.v1.echo_reply"

    id: str
    text: str
    n: int


# Resolve the string annotations from this module's own namespace: under a wrapper such as
# `python -m cProfile -m bench.bus` the module runs as __main__ without being sys.modules["__main__"].
for _model in (SampleRecorded, EchoRequest, EchoReply):
    _model.model_rebuild()


def sample_fields(i: int, now: datetime) -> dict[str, Any]:
    return {
        "id": f"smp-{i:012d}",
        "account_id": "acct-7f3c2a9e41b04d6e",
        "amount": 1234.5 + i % 100,
        "currency": "EUR",
        "merchant": "Corner Bakery & Coffee, 12 Rue de la Paix",
        "tags": TAGS,
        "created_at": now,
    }


# -- peers -------------------------------------------------------------------------------------

Op = Callable[[int], Awaitable[None]]


@dataclass
class Peer:
    """One side of the comparison: the operations it benchmarks and the stream it writes to."""

    name: str
    js: JetStreamContext
    stream: str
    publish: Op
    request: Op


async def runtime_peer(url: str, tag: str) -> tuple[Peer, list[Bus]]:
    client = await Bus.connect(url, source="bench")
    server = await Bus.connect(url, source="bench-echo")
    pub_subject = f"bench.v1.sample.recorded.{tag}"
    req_subject = f"bench.{tag}.echo"
    stream = f"BENCH_{tag.upper()}"
    await ensure_platform(client.js)
    await ensure_stream(
        client.js, StreamSpec(name=stream, subjects=(pub_subject,), description="bench")
    )

    async def echo(msg: EchoRequest, envelope: EnvelopeMeta) -> EchoReply:
        return EchoReply(id=msg.id, text=msg.text, n=msg.n)

    await server.serve(req_subject, EchoRequest, echo)
    await server.nc.flush()

    async def publish(i: int) -> None:
        await client.emit(pub_subject, SampleRecorded(**sample_fields(i, datetime.now(UTC))))

    async def request(i: int) -> None:
        reply = await client.request(
            req_subject,
            EchoRequest(id=f"req-{i:012d}", text=ECHO_TEXT, n=i),
            EchoReply,
            timeout_s=TIMEOUT_S,
        )
        if reply.n != i:
            raise RuntimeError(f"runtime echo mismatch: sent {i}, got {reply.n}")

    return Peer(tag, client.js, stream, publish, request), [client, server]


async def raw_peer(url: str, tag: str) -> tuple[Peer, list[NATS]]:
    client = await nats.connect(servers=[url], name="bench-raw")
    server = await nats.connect(servers=[url], name="bench-raw-echo")
    js = client.jetstream()
    pub_subject = f"bench.v1.sample.recorded.{tag}"
    req_subject = f"bench.{tag}.echo"
    stream = f"BENCH_{tag.upper()}"
    # Same stream configuration as the runtime peer's (file storage, same duplicate window).
    await ensure_stream(js, StreamSpec(name=stream, subjects=(pub_subject,), description="bench"))

    async def echo(msg: Msg) -> None:
        body = json.loads(msg.data)
        await msg.respond(
            json.dumps({"id": body["id"], "text": body["text"], "n": body["n"]}).encode()
        )

    await server.subscribe(req_subject, cb=echo)
    await server.flush()

    async def publish(i: int) -> None:
        body = sample_fields(i, datetime.now(UTC))
        body["created_at"] = body["created_at"].isoformat()
        await js.publish(pub_subject, json.dumps(body).encode(), timeout=TIMEOUT_S)

    async def request(i: int) -> None:
        payload = json.dumps({"id": f"req-{i:012d}", "text": ECHO_TEXT, "n": i}).encode()
        msg = await client.request(req_subject, payload, timeout=TIMEOUT_S)
        if json.loads(msg.data)["n"] != i:
            raise RuntimeError(f"raw echo mismatch: sent {i}")

    return Peer(tag, js, stream, publish, request), [client, server]


# -- measurement -------------------------------------------------------------------------------


@dataclass
class Sample:
    """One timed run of one workload by one peer."""

    ops: int
    elapsed_ns: int
    latencies_ns: list[int] = field(default_factory=list)
    client_cpu_s: float = 0.0  # this process: the requester *and* the responder
    server_cpu_s: float | None = None  # nats-server, when /proc is readable

    @property
    def rate(self) -> float:
        return self.ops / (self.elapsed_ns / 1e9)

    def percentile_ms(self, q: float) -> float:
        """Nearest-rank percentile."""
        ordered = sorted(self.latencies_ns)
        rank = min(len(ordered), max(1, math.ceil(q / 100 * len(ordered))))
        return ordered[rank - 1] / 1e6


async def run_sequential(op: Op, count: int, start: int) -> Sample:
    latencies = [0] * count
    clock = time.perf_counter_ns
    began = clock()
    for k in range(count):
        t0 = clock()
        await op(start + k)
        latencies[k] = clock() - t0
    return Sample(count, clock() - began, latencies)


async def run_window(op: Op, count: int, start: int, window: int) -> Sample:
    """`window` workers share the `count` operations, so at most `window` are in flight."""
    latencies = [0] * count
    cursor = [0]
    clock = time.perf_counter_ns

    async def worker() -> None:
        while cursor[0] < count:
            k = cursor[0]
            cursor[0] += 1
            t0 = clock()
            await op(start + k)
            latencies[k] = clock() - t0

    began = clock()
    await asyncio.gather(*(worker() for _ in range(min(window, count))))
    return Sample(count, clock() - began, latencies)


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    unit: str
    publishes: bool
    window: int  # 1 = sequential
    latency_metrics: tuple[str, ...]


def workloads(window: int, concurrency: int) -> tuple[Workload, ...]:
    return (
        Workload("js_publish_seq", "JetStream publish+ack, sequential", "msgs/s", True, 1,
                 ("p50", "p99")),
        Workload(f"js_publish_window{window}", f"JetStream publish+ack, {window} in flight",
                 "msgs/s", True, window, ()),
        Workload("request_seq", "Request/reply, sequential", "req/s", False, 1, ("p50", "p99")),
        Workload(f"request_c{concurrency}", f"Request/reply, concurrency {concurrency}",
                 "req/s", False, concurrency, ("p99",)),
    )  # fmt: skip


ServerCpu = Callable[[], float | None]


async def measure(
    peer: Peer, load: Workload, count: int, start: int, server_cpu: ServerCpu
) -> Sample:
    op = peer.publish if load.publishes else peer.request
    if load.publishes:
        await peer.js.purge_stream(peer.stream)  # every round starts from an empty stream
    gc.collect()
    cpu0, srv0 = time.process_time(), server_cpu()
    if load.window == 1:
        sample = await run_sequential(op, count, start)
    else:
        sample = await run_window(op, count, start, load.window)
    sample.client_cpu_s = time.process_time() - cpu0
    srv1 = server_cpu()
    if srv0 is not None and srv1 is not None:
        sample.server_cpu_s = srv1 - srv0
    return sample


def micro_timings(number: int = 5000, repeat: int = 5) -> dict[str, float]:
    """Per-call cost (µs, best of `repeat`) of the per-message work each peer does in Python."""
    now = datetime.now(UTC)
    sample = SampleRecorded(**sample_fields(1, now))
    request = EchoRequest(id="req-000000000001", text=ECHO_TEXT, n=1)
    envelope = codec.encode(request, source="bench", correlation_id=new_message_id())
    reply = codec.encode(
        EchoReply(id=request.id, text=request.text, n=request.n),
        source="bench-echo",
        correlation_id=new_message_id(),
    )
    raw_request = json.dumps({"id": request.id, "text": request.text, "n": request.n}).encode()

    def raw_build_and_dumps() -> bytes:
        body = sample_fields(1, datetime.now(UTC))
        body["created_at"] = body["created_at"].isoformat()
        return json.dumps(body).encode()

    cases: dict[str, Callable[[], object]] = {
        "runtime: construct SampleRecorded (validates)": lambda: SampleRecorded(
            **sample_fields(1, datetime.now(UTC))
        ),
        "runtime: codec.encode, new correlation id (as emit)": lambda: codec.encode(
            sample, source="bench", correlation_id=new_message_id()
        ),
        "runtime: new_message_id() (uuid4().hex)": new_message_id,
        "runtime: pydantic to_json of the body alone": lambda: (
            sample.__pydantic_serializer__.to_json(sample)
        ),
        "runtime: codec.decode(EchoRequest envelope)": lambda: codec.decode(envelope, EchoRequest),
        "runtime: codec.decode_reply(EchoReply envelope)": lambda: codec.decode_reply(
            reply, EchoReply
        ),
        "raw: build dict + json.dumps (sample)": raw_build_and_dumps,
        "raw: json.loads (echo request)": lambda: json.loads(raw_request),
    }
    return {
        name: min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6
        for name, fn in cases.items()
    }


# -- reporting ---------------------------------------------------------------------------------


def metrics_of(load: Workload, sample: Sample) -> dict[str, float]:
    out = {"throughput": sample.rate, "client_cpu_us": sample.client_cpu_s / sample.ops * 1e6}
    if sample.server_cpu_s is not None:
        out["server_cpu_us"] = sample.server_cpu_s / sample.ops * 1e6
    for name in load.latency_metrics:
        out[f"{name}_ms"] = sample.percentile_ms(float(name[1:]))
    return out


def summarise(
    loads: Sequence[Workload], rounds: dict[str, dict[str, list[dict[str, float]]]]
) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for load in loads:
        per_peer = rounds[load.key]
        medians = {
            peer: {
                m: statistics.median(r[m] for r in per_peer[peer])
                for m in per_peer[peer][0]
                if all(m in r for r in per_peer[peer])  # server CPU is missing without /proc
            }
            for peer in PEERS
        }
        paired = [
            rt["throughput"] / raw["throughput"]
            for rt, raw in zip(per_peer["runtime"], per_peer["raw"], strict=True)
        ]
        summary[load.key] = {
            "title": load.title,
            "unit": load.unit,
            "median": medians,
            "ratio": medians["runtime"]["throughput"] / medians["raw"]["throughput"],
            "paired_ratio_min": min(paired),
            "paired_ratio_max": max(paired),
        }
    return summary


def goals(loads: Sequence[Workload], summary: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for load in loads:
        ratio = summary[load.key]["ratio"]
        out.append(
            {
                "goal": f"runtime >= {THROUGHPUT_GOAL:.0%} of raw throughput: {load.title}",
                "value": round(ratio, 3),
                "pass": ratio >= THROUGHPUT_GOAL,
            }
        )
    p99 = summary["request_seq"]["median"]["runtime"]["p99_ms"]
    out.append(
        {
            "goal": f"runtime request/reply p99 < {P99_GOAL_MS:g} ms on loopback (sequential)",
            "value": round(p99, 3),
            "pass": p99 < P99_GOAL_MS,
        }
    )
    return out


def markdown_table(loads: Sequence[Workload], summary: dict[str, Any]) -> str:
    lines = [
        "| Workload | Metric | runtime | raw nats-py | runtime/raw | paired ratio range |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for load in loads:
        s = summary[load.key]
        rt, raw = s["median"]["runtime"], s["median"]["raw"]
        lines.append(
            f"| {load.title} | {load.unit} | {rt['throughput']:,.0f} | {raw['throughput']:,.0f}"
            f" | {s['ratio']:.2f} | {s['paired_ratio_min']:.2f} to {s['paired_ratio_max']:.2f} |"
        )
        for name in load.latency_metrics:
            key = f"{name}_ms"
            lines.append(
                f"| {load.title} | {name} latency (ms) | {rt[key]:.3f} | {raw[key]:.3f} | | |"
            )
    return "\n".join(lines)


def cpu_table(loads: Sequence[Workload], summary: dict[str, Any]) -> str:
    def cell(values: dict[str, float], key: str) -> str:
        return f"{values[key]:.1f}" if key in values else "n/a"

    lines = [
        "| Workload | client CPU µs/op: runtime | raw | nats-server CPU µs/op: runtime | raw |",
        "|---|---:|---:|---:|---:|",
    ]
    for load in loads:
        rt, raw = summary[load.key]["median"]["runtime"], summary[load.key]["median"]["raw"]
        lines.append(
            f"| {load.title} | {cell(rt, 'client_cpu_us')} | {cell(raw, 'client_cpu_us')}"
            f" | {cell(rt, 'server_cpu_us')} | {cell(raw, 'server_cpu_us')} |"
        )
    return "\n".join(lines)


def micro_table(micro: dict[str, float]) -> str:
    lines = ["| Per-message step | µs per call |", "|---|---:|"]
    lines += [f"| {name} | {us:.2f} |" for name, us in micro.items()]
    return "\n".join(lines)


def machine_info(loop_name: str) -> dict[str, Any]:
    server_version = nats_server_version()
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "nats_py": package_version("nats-py"),
        "pydantic": package_version("pydantic"),
        "nats_server": server_version,
        "event_loop": loop_name,
    }


# -- driver ------------------------------------------------------------------------------------


async def bench(args: argparse.Namespace, loop_name: str) -> dict[str, Any]:
    loads = workloads(args.window, args.concurrency)
    with tempfile.TemporaryDirectory(prefix="trellis-bench-") as tmp:
        server = EmbeddedNats(Path(tmp), port=0)
        url = server.start()
        pid = server.process.pid if server.process is not None else -1

        def server_cpu() -> float | None:
            return process_cpu_s(pid)

        closers: list[Callable[[], Awaitable[None]]] = []
        try:
            rt, buses = await runtime_peer(url, "runtime")
            closers += [b.close for b in buses]
            raw, conns = await raw_peer(url, "raw")
            closers += [c.close for c in conns]
            peers = {"runtime": rt, "raw": raw}

            print(f"nats-server at {url}; warming up ({args.warmup} ops per workload/peer)")
            for load in loads:
                for name in PEERS:
                    await measure(peers[name], load, args.warmup, 10**9, server_cpu)

            rounds: dict[str, dict[str, list[dict[str, float]]]] = {
                load.key: {name: [] for name in PEERS} for load in loads
            }
            started = time.perf_counter()
            for r in range(args.rounds):
                # ABBA order across rounds so neither peer always runs first.
                order = PEERS if r % 2 == 0 else PEERS[::-1]
                for load in loads:
                    for name in order:
                        sample = await measure(
                            peers[name], load, args.count, r * args.count, server_cpu
                        )
                        rounds[load.key][name].append(metrics_of(load, sample))
                print(
                    f"round {r + 1}/{args.rounds} done ({time.perf_counter() - started:.1f}s)",
                    flush=True,
                )
        finally:
            for close in closers:
                await close()
            server.stop()

    summary = summarise(loads, rounds)
    micro = {} if args.no_micro else micro_timings()
    return {
        "benchmark": "bench/bus.py",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {
            "rounds": args.rounds,
            "count": args.count,
            "warmup": args.warmup,
            "window": args.window,
            "concurrency": args.concurrency,
        },
        "machine": machine_info(loop_name),
        "rounds": rounds,
        "summary": summary,
        "goals": goals(loads, summary),
        "micro_us": micro,
        "table_markdown": markdown_table(loads, summary),
        "cpu_table_markdown": cpu_table(loads, summary),
        "micro_table_markdown": micro_table(micro) if micro else "",
    }


def loop_factory() -> tuple[Callable[[], asyncio.AbstractEventLoop] | None, str]:
    """uvloop when it is installed (it is not a dependency), else the default asyncio loop."""
    if importlib.util.find_spec("uvloop") is None:
        return None, "asyncio"
    uvloop = importlib.import_module("uvloop")
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory, "uvloop"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--count", type=int, default=5000, help="operations per round (5000)")
    parser.add_argument("--warmup", type=int, default=500, help="warm-up operations (500)")
    parser.add_argument("--window", type=int, default=64, help="publishes in flight (64)")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight (16)")
    parser.add_argument(
        "--no-micro", action="store_true", help="skip the per-step micro-timings (for profiling)"
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results path")
    args = parser.parse_args(argv)
    if min(args.rounds, args.count, args.warmup, args.window, args.concurrency) < 1:
        parser.error("--rounds, --count, --warmup, --window and --concurrency must be >= 1")

    factory, loop_name = loop_factory()
    with asyncio.Runner(loop_factory=factory) as runner:
        result = runner.run(bench(args, loop_name))

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")

    m = result["machine"]
    print()
    print(
        f"## Bus: runtime vs raw nats-py: median of {args.rounds} rounds x {args.count} ops"
        f" ({m['cpu_count']} CPUs, Python {m['python']}, nats-py {m['nats_py']},"
        f" {m['nats_server']}, {loop_name})"
    )
    print()
    print(result["table_markdown"])
    print()
    print("Where the time goes: CPU per operation (median of rounds; the client process runs")
    print("both requester and responder), and single-threaded cost of the per-message steps:")
    print()
    print(result["cpu_table_markdown"])
    print()
    if result["micro_table_markdown"]:
        print(result["micro_table_markdown"])
        print()
    for goal in result["goals"]:
        print(f"{'PASS' if goal['pass'] else 'MISS'}  {goal['goal']} (measured {goal['value']})")
    print(f"\nresults written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
