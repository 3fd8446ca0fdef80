"""Benchmark: the crawler's memory while its frontier grows to 100k URLs on a generated site.

The site is a tree: page i links to pages 10i+1 ... 10i+10, so crawling the first 11,111 pages
(depth 1 to 5) discovers the 100,000 pages of depth 6. The frontier is a JetStream work queue
and the seen-set a KV bucket, so the crawler process should hold no per-URL state: its resident
memory is sampled while the queued count grows, and the sync is stopped once every URL of the
site is queued. The platform runs as `make run` starts it (nats-server, indexer, crawler,
gateway, each its own process).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

import httpx

from bench.common import cpu_model
from bench.crawl import PLATFORM_ENV, SERVICES, Trellis, proc_status_mb
from bench.launch import REPO_ROOT, Platform
from runtime.bus import Bus

DEFAULT_OUTPUT: Final = REPO_ROOT / "bench" / "results" / "crawl_scale.json"
FANOUT: Final = 10
DEPTH: Final = 6  # Kendra counts the seed as depth 1: 1 + 10 + ... + 100,000 pages
SAMPLE_S: Final = 2.0
MILESTONES: Final = (1_000, 10_000, 25_000, 50_000, 75_000, 100_000)


def site_size(depth: int = DEPTH, fanout: int = FANOUT) -> int:
    return sum(fanout**level for level in range(depth))


class GeneratedSite:
    """Pages /p/<i> of a `fanout`-ary tree with `size` pages, served from a thread."""

    def __init__(self, size: int, fanout: int = FANOUT) -> None:
        self.size = size
        self.fanout = fanout
        self.requests = 0
        lock = threading.Lock()
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                with lock:
                    site.requests += 1
                body, status = site.page(self.path)
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def page(self, path: str) -> tuple[bytes, int]:
        if not path.startswith("/p/") or not path[3:].isdigit() or int(path[3:]) >= self.size:
            return b"not found", 404
        i = int(path[3:])
        children = range(self.fanout * i + 1, min(self.fanout * i + self.fanout, self.size - 1) + 1)
        links = "".join(f'<li><a href="/p/{c}">page {c}</a></li>' for c in children)
        text = f"Page {i} of a generated site. Its number in words is {i:,}."
        html = (
            f"<html><head><title>Page {i}</title></head><body><main><h1>Page {i}</h1>"
            f"<p>{text}</p><ul>{links}</ul></main></body></html>"
        )
        return html.encode(), 200

    def close(self) -> None:
        self.server.shutdown()


def at_milestones(samples: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first sample at or past each queued-URL milestone."""
    out = []
    for milestone in MILESTONES:
        reached = next((s for s in samples if s["queued"] >= milestone), None)
        if reached is not None:
            out.append({"milestone": milestone, **reached})
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = args.work
    size = site_size(args.depth)
    platform_ = Platform(work / "platform", env=dict(PLATFORM_ENV))
    nats_url = platform_.start_nats()
    for name in SERVICES:
        platform_.start(name)
    bus = await Bus.connect(nats_url, source="bench")
    site = GeneratedSite(size)
    samples: list[dict[str, Any]] = []
    try:
        async with httpx.AsyncClient(
            base_url=platform_.http_url,
            headers={"Authorization": f"Bearer {platform_.api_key}"},
            timeout=60,
        ) as http:
            await platform_.wait_ready(bus, http, SERVICES, 180)
            trellis = Trellis(platform_, bus, http)
            index_id, source_id = await trellis.source(
                "generated", f"{site.url}/p/0", args.depth, 0
            )
            pid = platform_.procs["crawler"].pid
            await asyncio.sleep(1.0)
            idle_rss = proc_status_mb(pid, "VmRSS")
            began = time.monotonic()
            execution_id = await trellis.start(source_id, index_id)
            print(f"crawling a {size:,}-page site; crawler idle RSS {idle_rss:.0f} MB", flush=True)
            while True:
                await asyncio.sleep(SAMPLE_S)
                platform_.check_alive()
                job = await trellis.job(source_id, index_id, execution_id)
                progress = job.get("Progress") or {}
                elapsed = time.monotonic() - began
                sample: dict[str, Any] = {
                    "t_s": round(elapsed, 1),
                    "queued": int(progress.get("Queued", 0)),
                    "done": int(progress.get("Done", 0)),
                    "fetched": site.requests,
                    "rss_mb": proc_status_mb(pid, "VmRSS"),
                }
                samples.append(sample)
                if len(samples) % 15 == 0:
                    print(f"  {sample}", flush=True)
                every_url_queued = int(progress.get("Queued", 0)) >= size
                if every_url_queued or job["Status"] != "SYNCING" or elapsed > args.max_s:
                    break
            await trellis.call(
                "POST", f"/v1/data-sources/{source_id}/sync-jobs/stop", json={"IndexId": index_id}
            )
            peak = proc_status_mb(pid, "VmHWM")
    finally:
        site.close()
        await bus.close()
        platform_.close()
    rss: list[float] = [float(s["rss_mb"]) for s in samples if s["rss_mb"] is not None]
    later: list[float] = [
        float(s["rss_mb"]) for s in samples if s["queued"] >= 10_000 and s["rss_mb"] is not None
    ]
    return {
        "site_pages": size,
        "depth": args.depth,
        "fanout": FANOUT,
        "cpu": cpu_model(),
        "idle_rss_mb": idle_rss,
        "peak_rss_mb": peak,
        "rss_min_mb": min(rss) if rss else None,
        "rss_max_mb": max(rss) if rss else None,
        # Flat: what the process held once 10k URLs were queued, against the end.
        "rss_growth_after_10k_mb": (later[-1] - later[0]) if len(later) > 1 else None,
        "queued_at_end": samples[-1]["queued"] if samples else 0,
        "fetched_at_end": samples[-1]["fetched"] if samples else 0,
        "seconds": samples[-1]["t_s"] if samples else 0,
        "milestones": at_milestones(samples),
        "samples": samples,
    }


def report(result: dict[str, Any]) -> str:
    lines = [
        f"site: {result['site_pages']:,} pages (fanout {result['fanout']}, depth {result['depth']})",
        f"crawler RSS idle {result['idle_rss_mb']:.0f} MB, peak (VmHWM) {result['peak_rss_mb']:.0f} MB",
        "",
        "| URLs queued | pages fetched | seconds | crawler RSS (MB) |",
        "|---:|---:|---:|---:|",
    ]
    for m in result["milestones"]:
        lines.append(f"| {m['queued']:,} | {m['fetched']:,} | {m['t_s']:.0f} | {m['rss_mb']:.0f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=DEPTH, help="tree depth (6: 111,111 pages)")
    parser.add_argument("--max-s", type=float, default=1200.0, help="stop the sync after this")
    parser.add_argument("--work", type=Path, default=REPO_ROOT / "var" / "bench-crawl-scale")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUTPUT, help="JSON results path")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    result = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(report(result))
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
