"""Benchmark: crawling the Python docs from loopback, Trellis's crawler against Scrapy, and per-host rates."""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Final
from urllib.parse import unquote, urlsplit

if __package__ in (None, ""):  # run as `python bench/crawl.py`: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench.common import (
    cpu_model,
    fmt,
    loadavg,
    nats_server_version,
    package_version,
    process_cpu_s,
)
from bench.launch import REPO_ROOT, Platform, free_port
from runtime.bus import Bus

DEFAULT_DOCS = Path("/usr/share/doc/python3.11/html")
DEFAULT_OUTPUT = REPO_ROOT / "bench" / "results" / "crawl.json"
LIBRARIES = ("scrapy", "twisted", "lxml", "parsel", "httpx", "nats-py")

SERVICES: Final = ("indexer", "crawler", "gateway")
PLATFORM_ENV: Final = {
    "TRELLIS_CRAWLER_ALLOWED_NETWORKS": "127.0.0.0/8",
    "TRELLIS_LOG_LEVEL": "WARNING",
}
ROBOTS_PATH: Final = "/robots.txt"
DISALLOWED: Final = ("/_sources/", "/_static/")
ROBOTS_TXT: Final = "User-agent: *\n" + "".join(f"Disallow: {p}\n" for p in DISALLOWED)
SCRAPY_DENY: Final = ("/_sources/", "/_static/", "/_images/")
SCRAPY_CONCURRENCY: Final = 16
MAX_LINKS_PER_PAGE: Final = 1000
RATES: Final = (60, 300)
RATE_RUN_S: Final = 75.0  # a rate run is stopped this long after its first request (plus a margin)
WINDOW_S: Final = 60.0
WINDOW_STARTS_S: Final = (5.0, 15.0)  # windows start at the requests this long after the first
AFTER_STOP_S: Final = 8.0  # long enough for 8 in-flight fetches at 60/min
POLL_S: Final = 0.2
SYNC_TIMEOUT_S: Final = 300.0
INDEXED_TIMEOUT_S: Final = 90.0
SPEED_GOAL: Final = 2.0  # Trellis pages/s at least twice Scrapy's
TERMINAL: Final = frozenset({"SUCCEEDED", "FAILED", "STOPPED", "ABORTED", "INCOMPLETE"})

SPIDER_SOURCE: Final = '''\
"""Scrapy's side of bench/crawl.py: the same site, scope, depth and robots rules as Trellis."""

import json
from urllib.parse import urlsplit

import scrapy
from scrapy.http import HtmlResponse
from scrapy.linkextractors import LinkExtractor

TEXT = "//body//text()[not(ancestor::script) and not(ancestor::style)]"


class DocsSpider(scrapy.Spider):
    name = "docs"

    def __init__(self, start_url, stats_path, **kwargs):
        super().__init__(**kwargs)
        self.start_urls = [start_url]
        self.allowed_domains = [urlsplit(start_url).hostname]
        self.netloc = urlsplit(start_url).netloc  # host and port, as Trellis's HOST_ONLY
        self.stats_path = stats_path
        self.links = LinkExtractor(deny=__DENY__, tags=("a",), attrs=("href",))

    def parse(self, response):
        if not isinstance(response, HtmlResponse):
            return
        title = response.css("title::text").get(default="").strip()
        words = (t.strip() for t in response.xpath(TEXT).getall())
        yield {"url": response.url, "title": title, "text": " ".join(w for w in words if w)}
        for link in self.links.extract_links(response):
            if urlsplit(link.url).netloc == self.netloc:
                yield scrapy.Request(link.url, callback=self.parse)

    def closed(self, reason):
        with open(self.stats_path, "w", encoding="utf-8") as out:
            json.dump({"finish_reason": reason, **self.crawler.stats.get_stats()}, out, default=str)
'''.replace("__DENY__", repr(SCRAPY_DENY))


# -- pure helpers --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One request as the docs server logged it."""

    mono: float  # time.monotonic() when the request line was read (system-wide clock)
    wall: float
    status: int
    content_type: str
    path: str
    user_agent: str

    @property
    def robots(self) -> bool:
        return urlsplit(self.path).path == ROBOTS_PATH

    @property
    def html_page(self) -> bool:
        return self.status == 200 and self.content_type.startswith("text/html")


def format_request(request: Request) -> str:
    fields = (
        f"{request.mono:.6f}",
        f"{request.wall:.6f}",
        str(request.status),
        request.content_type,
        request.path,
        request.user_agent,
    )
    return "\t".join(f.replace("\t", " ").replace("\n", " ") for f in fields) + "\n"


def parse_request(line: str) -> Request | None:
    parts = line.rstrip("\n").split("\t")
    if len(parts) != 6:
        return None
    try:
        return Request(float(parts[0]), float(parts[1]), int(parts[2]), *parts[3:])
    except ValueError:
        return None


def read_requests(path: Path) -> list[Request]:
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return sorted(
        (r for r in (parse_request(line) for line in lines) if r is not None),
        key=lambda r: r.mono,
    )


def page_key(path: str) -> str:
    """The page a request path names: query dropped, escapes decoded, '/x/' as '/x/index.html'."""
    page = unquote(urlsplit(path).path) or "/"
    return page + "index.html" if page.endswith("/") else page


def page_counts(requests: Iterable[Request]) -> dict[str, Any]:
    """What a crawl fetched: distinct HTML pages, repeats, other requests by status."""
    items = list(requests)
    html = Counter(page_key(r.path) for r in items if r.html_page)
    statuses = Counter(str(r.status) for r in items)
    return {
        "requests": len(items),
        "robots_requests": sum(1 for r in items if r.robots),
        "html_pages": len(html),
        "html_requests": sum(html.values()),
        "html_repeated": sorted(p for p, n in html.items() if n > 1),
        "other_requests": sum(1 for r in items if not r.html_page and not r.robots),
        "by_status": dict(sorted(statuses.items())),
        "span_s": items[-1].mono - items[0].mono if len(items) > 1 else 0.0,
    }


def window_counts(
    times: Sequence[float],
    *,
    window_s: float = WINDOW_S,
    starts_s: tuple[float, float] = WINDOW_STARTS_S,
    end: float | None = None,
) -> list[int]:
    """Requests in each window [t, t + window_s) where t is a request `starts_s` after the first.

    Windows that would run past `end` (when the observation stopped) are left out.
    """
    ordered = sorted(times)
    if not ordered:
        return []
    first = ordered[0]
    counts: list[int] = []
    for start in dict.fromkeys(ordered):
        if start < first + starts_s[0]:
            continue
        if start > first + starts_s[1]:
            break
        if end is not None and start + window_s > end:
            continue
        counts.append(
            bisect.bisect_left(ordered, start + window_s) - bisect.bisect_left(ordered, start)
        )
    return counts


def tightest_span(times: Sequence[float], n: int) -> float | None:
    """The shortest time in which `n` consecutive requests arrived; None with fewer requests."""
    ordered = sorted(times)
    if n < 1 or len(ordered) < n:
        return None
    return min(ordered[i + n - 1] - ordered[i] for i in range(len(ordered) - n + 1))


def spread(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "min": float(min(values)),
        "median": float(statistics.median(values)),
        "max": float(max(values)),
    }


def median_of(rounds: Sequence[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rounds if r.get(key) is not None]
    return float(statistics.median(values)) if values else None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def scrapy_argv(
    spider: Path, start_url: str, depth: int, feed: Path, stats: Path, log: Path
) -> list[str]:
    """`scrapy runspider` with the same scope, depth and robots rules as the Trellis sync.

    Trellis counts the seed as depth 1, Scrapy as depth 0: CrawlDepth N is DEPTH_LIMIT N - 1.
    """
    settings = {
        "ROBOTSTXT_OBEY": "True",
        "DEPTH_LIMIT": str(depth - 1),
        "CONCURRENT_REQUESTS": str(SCRAPY_CONCURRENCY),
        "CONCURRENT_REQUESTS_PER_DOMAIN": str(SCRAPY_CONCURRENCY),
        "DOWNLOAD_DELAY": "0",
        "AUTOTHROTTLE_ENABLED": "False",
        "TELNETCONSOLE_ENABLED": "False",
        "LOG_LEVEL": "WARNING",
        "LOG_FILE": str(log),
        "USER_AGENT": "ScrapyBench/1.0",
    }
    argv = [sys.executable, "-m", "scrapy", "runspider", str(spider)]
    argv += ["-a", f"start_url={start_url}", "-a", f"stats_path={stats}"]
    for name, value in settings.items():
        argv += ["-s", f"{name}={value}"]
    return [*argv, "-O", f"{feed}:jsonlines"]


def proc_status_mb(pid: int, field: str) -> float | None:
    """A memory field of /proc/<pid>/status (VmHWM, VmRSS) in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return None


# -- the docs server -----------------------------------------------------------------------------


def serve(directory: Path, port: int, log_path: Path) -> None:
    """Serve `directory` on 127.0.0.1:`port`, one log line per request; never returns."""
    lock = threading.Lock()
    log = log_path.open("a", encoding="utf-8", buffering=1)
    robots = ROBOTS_TXT.encode()

    class Handler(SimpleHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        began = 0.0
        began_wall = 0.0
        code = 0
        content_type = ""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(directory), **kwargs)

        def do_GET(self) -> None:
            self.began, self.began_wall = time.monotonic(), time.time()
            self.content_type = ""
            if urlsplit(self.path).path == ROBOTS_PATH:
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(robots)))
                self.end_headers()
                self.wfile.write(robots)
                return
            super().do_GET()

        def do_HEAD(self) -> None:
            self.began, self.began_wall = time.monotonic(), time.time()
            self.content_type = ""
            super().do_HEAD()

        def list_directory(self, path: str | os.PathLike[str]) -> None:
            self.send_error(404, "no directory listings")  # a static site has none
            return None

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            self.code = int(code) if str(code).isdigit() else 0

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def send_header(self, keyword: str, value: str) -> None:
            if keyword.lower() == "content-type":
                self.content_type = value
            super().send_header(keyword, value)

        def end_headers(self) -> None:
            super().end_headers()
            if not self.began:  # a malformed request: send_error before do_GET
                self.began, self.began_wall = time.monotonic(), time.time()
            line = format_request(
                Request(
                    self.began,
                    self.began_wall,
                    self.code,
                    self.content_type,
                    self.path,
                    self.headers.get("User-Agent", "") if self.headers else "",
                )
            )
            with lock:
                log.write(line)
            self.began = 0.0

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 128

    with Server(("127.0.0.1", port), Handler) as server:
        server.serve_forever()


class DocsServer:
    """The docs server in its own process (`python -m bench.crawl --serve`), one per crawl."""

    def __init__(self, docs: Path, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.crawl",
                "--serve",
                str(docs),
                str(self.port),
                str(log_path),
            ],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log_path.with_suffix(".stderr").open("wb"),
        )
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the docs server exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the docs server did not start in 30 s") from None
                time.sleep(0.05)

    def requests(self) -> list[Request]:
        return read_requests(self.log_path)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> DocsServer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


# -- Scrapy --------------------------------------------------------------------------------------


def scrapy_round(work: Path, docs: Path, depth: int, label: str) -> dict[str, Any]:
    """One Scrapy crawl in a fresh process; CPU and peak RSS from wait4's rusage of that process."""
    spider = work / "docs_spider.py"
    spider.write_text(SPIDER_SOURCE, encoding="utf-8")
    feed, stats_path, log = (work / f"{label}{ext}" for ext in (".jsonl", ".stats.json", ".log"))
    with DocsServer(docs, work / f"{label}.requests.log") as server:
        argv = scrapy_argv(spider, f"{server.url}/index.html", depth, feed, stats_path, log)
        began = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            cwd=work,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log.open("ab"),
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - began
        proc.returncode = os.waitstatus_to_exitcode(status)
        requests = server.requests()
    pages = page_counts(requests)
    items = sum(1 for _ in feed.open(encoding="utf-8")) if feed.exists() else 0
    stats: dict[str, Any] = (
        json.loads(stats_path.read_text(encoding="utf-8")) if stats_path.exists() else {}
    )
    cpu = usage.ru_utime + usage.ru_stime
    log_lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    out: dict[str, Any] = {
        "label": label,
        "returncode": proc.returncode,
        "wall_s": wall,
        "fetch_span_s": pages["span_s"],
        "pages": pages["html_pages"],
        "server": pages,
        "items": items,
        "pages_per_s": pages["html_pages"] / wall if wall else None,
        "pages_per_s_fetch_span": (
            pages["html_pages"] / pages["span_s"] if pages["span_s"] else None
        ),
        "cpu_s": cpu,
        "cpu_ms_per_page": 1000 * cpu / pages["html_pages"] if pages["html_pages"] else None,
        "peak_rss_mb": usage.ru_maxrss / 1024.0,
        "stats": {
            k: v
            for k, v in stats.items()
            if k.startswith(("downloader/request_count", "downloader/response_status"))
            or k.startswith(("robotstxt/", "item_scraped", "request_depth", "finish_reason"))
            or k in ("offsite/filtered", "dupefilter/filtered", "log_count/WARNING")
            or k.startswith("log_count/ERROR")
        },
        "log_warnings": [line for line in log_lines if "WARNING" in line or "ERROR" in line][:10],
        "_paths": sorted({page_key(r.path) for r in requests if r.html_page}),
    }
    if proc.returncode != 0:
        print(f"  scrapy exited with {proc.returncode}; see {log}", flush=True)
    return out


# -- Trellis -------------------------------------------------------------------------------------


def web_crawler(seed: str, depth: int, rate: int) -> dict[str, Any]:
    return {
        "WebCrawlerConfiguration": {
            "Urls": {"SeedUrlConfiguration": {"SeedUrls": [seed], "WebCrawlerMode": "HOST_ONLY"}},
            "CrawlDepth": depth,
            "MaxLinksPerPage": MAX_LINKS_PER_PAGE,
            "MaxUrlsPerMinuteCrawlRate": rate,
        }
    }


def cpu_of(platform_: Platform) -> dict[str, float | None]:
    return {name: process_cpu_s(pid) for name, pid in platform_.pids().items()}


def cpu_delta(
    before: dict[str, float | None], after: dict[str, float | None]
) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name, value in after.items():
        start = before.get(name)
        out[name] = value - start if value is not None and start is not None else None
    return out


class Trellis:
    """The platform as `make run` starts it, driven over REST."""

    def __init__(self, platform_: Platform, bus: Bus, http: httpx.AsyncClient) -> None:
        self.platform = platform_
        self.bus = bus
        self.http = http

    async def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = await self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: HTTP {response.status_code} {response.text}")
        body: dict[str, Any] = response.json()
        return body

    async def source(self, name: str, seed: str, depth: int, rate: int) -> tuple[str, str]:
        index_id = str((await self.call("POST", "/v1/indexes", json={"Name": name}))["Id"])
        created = await self.call(
            "POST",
            "/v1/data-sources",
            json={
                "Name": name,
                "IndexId": index_id,
                "Type": "WEBCRAWLER",
                "Configuration": web_crawler(seed, depth, rate),
            },
        )
        return index_id, str(created["Id"])

    async def job(self, source_id: str, index_id: str, execution_id: str) -> dict[str, Any]:
        history = await self.call(
            "GET", f"/v1/data-sources/{source_id}/sync-jobs", params={"index_id": index_id}
        )
        for job in history["History"]:
            if job["ExecutionId"] == execution_id:
                found: dict[str, Any] = job
                return found
        raise RuntimeError(f"sync {execution_id} is not in the history of {source_id}")

    async def start(self, source_id: str, index_id: str) -> str:
        started = await self.call(
            "POST", f"/v1/data-sources/{source_id}/sync-jobs", json={"IndexId": index_id}
        )
        return str(started["ExecutionId"])

    async def wait_terminal(
        self, source_id: str, index_id: str, execution_id: str, timeout_s: float
    ) -> dict[str, Any]:
        deadline = time.perf_counter() + timeout_s
        while True:
            job = await self.job(source_id, index_id, execution_id)
            if job["Status"] in TERMINAL:
                return job
            if time.perf_counter() > deadline:
                raise RuntimeError(f"sync {execution_id} not finished after {timeout_s:g} s: {job}")
            self.platform.check_alive()
            await asyncio.sleep(POLL_S)

    async def indexed(self, index_id: str) -> int:
        described = await self.call("GET", f"/v1/indexes/{index_id}")
        return int(
            described["IndexStatistics"]["TextDocumentStatistics"]["IndexedTextDocumentsCount"]
        )

    async def restart_crawler(self) -> float:
        """A fresh crawler process, so its VmHWM is this crawl's, as Scrapy's is its run's."""
        self.platform.stop("crawler")
        self.platform.start("crawler")
        return await self.platform.wait_ready(self.bus, self.http, ["crawler"], 120)


async def trellis_round(
    trellis: Trellis, work: Path, docs: Path, depth: int, label: str
) -> dict[str, Any]:
    restart_s = await trellis.restart_crawler()
    crawler_pid = trellis.platform.procs["crawler"].pid
    with DocsServer(docs, work / f"{label}.requests.log") as server:
        index_id, source_id = await trellis.source(label, f"{server.url}/index.html", depth, 0)
        await asyncio.sleep(1.0)  # let the platform settle after the restart and creations
        rss_idle = proc_status_mb(crawler_pid, "VmRSS")
        cpu_before = cpu_of(trellis.platform)
        began, began_mono = time.perf_counter(), time.monotonic()
        execution_id = await trellis.start(source_id, index_id)
        job = await trellis.wait_terminal(source_id, index_id, execution_id, SYNC_TIMEOUT_S)
        wall = time.perf_counter() - began
        cpu_synced = cpu_of(trellis.platform)
        hwm = proc_status_mb(crawler_pid, "VmHWM")
        requests = server.requests()
    metrics: dict[str, int] = job.get("TrellisMetrics", {})
    added = int(metrics.get("added", 0))
    indexed_after: float | None = None
    indexed = 0
    while time.perf_counter() - began < wall + INDEXED_TIMEOUT_S:
        indexed = await trellis.indexed(index_id)
        if indexed >= added:
            indexed_after = time.perf_counter() - began
            break
        await asyncio.sleep(0.5)
    cpu_indexed = cpu_of(trellis.platform)
    pages = page_counts(requests)
    sync_cpu = cpu_delta(cpu_before, cpu_synced)
    crawler_cpu = sync_cpu.get("crawler")
    n = pages["html_pages"]
    job_s = (
        float(job["EndTime"]) - float(job["StartTime"]) if job.get("EndTime") is not None else None
    )
    progress = job.get("Progress") or {}
    to_last = requests[-1].mono - began_mono if requests else None
    return {
        "label": label,
        "status": job["Status"],
        "error_message": job.get("ErrorMessage"),
        "crawler_restart_s": restart_s,
        "wall_s": wall,
        "job_start_to_end_s": job_s,
        "fetch_span_s": pages["span_s"],
        "pages": n,
        "server": pages,
        "metrics": metrics,
        "progress": progress,
        # Done short of Queued: the sync ended only through the crawler's stall detector.
        "counts_lost": int(progress.get("Queued", 0)) - int(progress.get("Done", 0)),
        "start_to_last_request_s": to_last,
        "last_request_to_end_s": wall - to_last if to_last is not None else None,
        "errors": job.get("Errors", [])[:10],
        "error_count": len(job.get("Errors", [])),
        "pages_per_s": n / wall if wall else None,
        "pages_per_s_fetch_span": n / pages["span_s"] if pages["span_s"] else None,
        "cpu_s": crawler_cpu,
        "cpu_ms_per_page": 1000 * crawler_cpu / n if crawler_cpu is not None and n else None,
        "cpu_s_during_sync": sync_cpu,
        "cpu_s_until_indexed": cpu_delta(cpu_before, cpu_indexed),
        "indexed_documents": indexed,
        "indexed_after_s": indexed_after,
        "idle_rss_mb": rss_idle,
        "peak_rss_mb": hwm,
        "_paths": sorted({page_key(r.path) for r in requests if r.html_page}),
    }


async def rate_run(
    trellis: Trellis, work: Path, docs: Path, depth: int, rate: int
) -> dict[str, Any]:
    label = f"trellis-rate-{rate}"
    with DocsServer(docs, work / f"{label}.requests.log") as server:
        index_id, source_id = await trellis.source(label, f"{server.url}/index.html", depth, rate)
        execution_id = await trellis.start(source_id, index_id)
        started = time.monotonic()
        first: float | None = None
        while first is None:
            pages = [r for r in server.requests() if not r.robots]
            if pages:
                first = pages[0].mono
            elif time.monotonic() - started > 30:
                raise RuntimeError(f"{label}: no request in 30 s")
            else:
                await asyncio.sleep(0.2)
        await asyncio.sleep(max(0.0, first + RATE_RUN_S + 1.0 - time.monotonic()))
        trellis.platform.check_alive()
        at_stop = await trellis.job(source_id, index_id, execution_id)
        stopped_at = time.monotonic()
        await trellis.call(
            "POST", f"/v1/data-sources/{source_id}/sync-jobs/stop", json={"IndexId": index_id}
        )
        await asyncio.sleep(AFTER_STOP_S)
        job = await trellis.job(source_id, index_id, execution_id)
        requests = [r for r in server.requests() if not r.robots]
    before_stop = [r.mono for r in requests if r.mono < stopped_at]
    counts = window_counts(before_stop, end=stopped_at)
    per_minute = spread(counts)
    overall = (
        (len(before_stop) - 1) / (before_stop[-1] - before_stop[0]) * 60
        if len(before_stop) > 1
        else None
    )
    return {
        "rate": rate,
        "status_after_stop": job["Status"],
        "metrics": job.get("TrellisMetrics", {}),
        "scanned_at_stop": at_stop.get("TrellisMetrics", {}).get("scanned"),
        "requests_before_stop": len(before_stop),
        "requests_after_stop": len(requests) - len(before_stop),
        "after_stop_s": AFTER_STOP_S,
        "observed_s": stopped_at - before_stop[0] if before_stop else None,
        "windows": len(counts),
        "per_minute": per_minute,
        "per_minute_counts": counts,
        "error_of_median": (per_minute["median"] - rate) / rate if per_minute else None,
        "windows_over_setting": sum(1 for c in counts if c > rate),
        # The politeness schedule promises rate + 1 starts never fall within 60 s of each other.
        "tightest_span_of_rate_plus_one_s": tightest_span(before_stop, rate + 1),
        "mean_rate_per_minute": overall,
        "first_gaps_s": [round(b - a, 3) for a, b in itertools.pairwise(before_stop[:11])],
    }


async def trellis_session(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Starts the platform; the Trellis and Scrapy rounds alternate, then the rate runs."""
    out: dict[str, Any] = {"trellis": [], "scrapy": [], "rates": []}
    platform_ = Platform(work / "platform", env=dict(PLATFORM_ENV))
    nats_url = platform_.start_nats()
    for name in SERVICES:
        platform_.start(name)
    bus = await Bus.connect(nats_url, source="bench")
    try:
        async with httpx.AsyncClient(
            base_url=platform_.http_url,
            headers={"Authorization": f"Bearer {platform_.api_key}"},
            timeout=60,
        ) as http:
            out["startup_s"] = await platform_.wait_ready(bus, http, SERVICES, 180)
            trellis = Trellis(platform_, bus, http)
            for n in range(1, args.rounds + 1):
                print(f"round {n}: Trellis", flush=True)
                t = await trellis_round(trellis, work, args.docs, args.depth, f"trellis-{n}")
                print(
                    f"  {t['status']}: {t['pages']} pages in {t['wall_s']:.1f} s,"
                    f" crawler {t['cpu_s'] or 0:.1f} CPU s, VmHWM {t['peak_rss_mb'] or 0:.0f} MB",
                    flush=True,
                )
                out["trellis"].append(t)
                print(f"round {n}: Scrapy", flush=True)
                s = await asyncio.to_thread(
                    scrapy_round, work, args.docs, args.depth, f"scrapy-{n}"
                )
                print(
                    f"  exit {s['returncode']}: {s['pages']} pages in {s['wall_s']:.1f} s,"
                    f" {s['cpu_s']:.1f} CPU s, max RSS {s['peak_rss_mb']:.0f} MB",
                    flush=True,
                )
                out["scrapy"].append(s)
            if not args.skip_rate:
                for rate in RATES:
                    print(f"per-host rate {rate}/min: ~{RATE_RUN_S:.0f} s", flush=True)
                    r = await rate_run(trellis, work, args.docs, args.depth, rate)
                    print(f"  per minute: {r['per_minute']}", flush=True)
                    out["rates"].append(r)
    finally:
        out["crawler_log"] = log_summary(platform_, "crawler")
        out["indexer_log"] = log_summary(platform_, "indexer")
        await bus.close()
        platform_.close()
    return out


def flagged_line(line: str) -> str | None:
    """A warning or error of a service log (JSON lines, or plain text), shortened; else None."""
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if isinstance(record, dict):
        level = str(record.get("level", "")).lower()
        if level not in ("warning", "error", "critical"):
            return None
        return f"{record.get('time', '')} {level} {record.get('logger', '')}: {record.get('message', '')}"
    if any(word in line for word in ("WARNING", "ERROR", "CRITICAL", "Traceback")):
        return line
    return None


def log_summary(platform_: Platform, name: str) -> dict[str, Any]:
    path = platform_.logs / f"{name}.log"
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    flagged = [f for f in (flagged_line(line) for line in lines) if f is not None]
    return {"lines": len(lines), "warnings_or_errors": len(flagged), "all": flagged[:200]}


# -- the run -------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "libraries": {name: package_version(name) for name in LIBRARIES},
        "nats_server": nats_server_version(),
    }


def corpus_info(docs: Path) -> dict[str, Any]:
    html = [p.relative_to(docs).as_posix() for p in docs.rglob("*.html")]
    hidden = [p for p in html if p.startswith(("_sources/", "_static/", "_images/"))]
    return {"root": str(docs), "html_files": len(html), "html_files_disallowed": len(hidden)}


def compare(result: dict[str, Any]) -> dict[str, Any]:
    trellis, scrapy = result["trellis"], result["scrapy"]
    out: dict[str, Any] = {}
    for name, rounds in (("trellis", trellis), ("scrapy", scrapy)):
        out[name] = {
            key: median_of(rounds, key)
            for key in (
                "wall_s",
                "fetch_span_s",
                "pages",
                "pages_per_s",
                "pages_per_s_fetch_span",
                "cpu_s",
                "cpu_ms_per_page",
                "peak_rss_mb",
            )
        }
    t_indexer = [r["cpu_s_until_indexed"].get("indexer") for r in trellis]
    t_nats = [r["cpu_s_during_sync"].get("nats-server") for r in trellis]
    t_gateway = [r["cpu_s_during_sync"].get("gateway") for r in trellis]
    for key, values in (
        ("indexer_cpu_s", t_indexer),
        ("nats_cpu_s", t_nats),
        ("gateway_cpu_s", t_gateway),
    ):
        present = [v for v in values if v is not None]
        out["trellis"][key] = statistics.median(present) if present else None
    out["speed_ratio"] = ratio(out["trellis"]["pages_per_s"], out["scrapy"]["pages_per_s"])
    out["speed_ratio_fetch_span"] = ratio(
        out["trellis"]["pages_per_s_fetch_span"], out["scrapy"]["pages_per_s_fetch_span"]
    )
    out["cpu_per_page_ratio"] = ratio(
        out["trellis"]["cpu_ms_per_page"], out["scrapy"]["cpu_ms_per_page"]
    )
    out["rss_ratio"] = ratio(out["trellis"]["peak_rss_mb"], out["scrapy"]["peak_rss_mb"])
    out["speed_goal"] = SPEED_GOAL
    out["meets_speed_goal"] = out["speed_ratio"] is not None and out["speed_ratio"] >= SPEED_GOAL
    out["meets_memory_goal"] = out["rss_ratio"] is not None and out["rss_ratio"] <= 1.0
    t_paths = [set(r.pop("_paths")) for r in trellis]
    s_paths = [set(r.pop("_paths")) for r in scrapy]
    if t_paths and s_paths:
        only_t, only_s = t_paths[0] - s_paths[0], s_paths[0] - t_paths[0]
        out["same_pages"] = {
            "trellis_pages": [len(p) for p in t_paths],
            "scrapy_pages": [len(p) for p in s_paths],
            "only_trellis": len(only_t),
            "only_scrapy": len(only_s),
            "only_trellis_examples": sorted(only_t)[:10],
            "only_scrapy_examples": sorted(only_s)[:10],
            "trellis_rounds_agree": all(p == t_paths[0] for p in t_paths),
            "scrapy_rounds_agree": all(p == s_paths[0] for p in s_paths),
        }
    return out


def bench(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    out: dict[str, Any] = {
        "benchmark": "crawl",
        "machine": machine_info(),
        "loadavg_start": loadavg(),
        "corpus": corpus_info(args.docs),
        "settings": {
            "depth_trellis": args.depth,
            "depth_limit_scrapy": args.depth - 1,
            "rounds": args.rounds,
            "robots_txt": ROBOTS_TXT,
            "scrapy_deny": list(SCRAPY_DENY),
            "scrapy_concurrency": SCRAPY_CONCURRENCY,
            "trellis_crawler_concurrency": os.environ.get(
                "TRELLIS_CRAWLER_CONCURRENCY", "8 (default)"
            ),
            "max_links_per_page": MAX_LINKS_PER_PAGE,
            "platform_env": PLATFORM_ENV,
        },
    }
    work = Path(tempfile.mkdtemp(prefix="trellis-bench-crawl-"))
    try:
        out.update(asyncio.run(trellis_session(args, work)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out["comparison"] = compare(out)
    out["loadavg_end"] = loadavg()
    out["total_s"] = time.perf_counter() - started
    return out


# -- report --------------------------------------------------------------------------------------


def rounds_table(result: dict[str, Any]) -> str:
    lines = [
        "| Run | pages (HTML) | requests | wall s | fetch span s | pages/s | CPU s"
        " | CPU ms/page | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in [*result["trellis"], *result["scrapy"]]:
        lines.append(
            f"| {r['label']} | {r['pages']} | {r['server']['requests']} | {fmt(r['wall_s'])}"
            f" | {fmt(r['fetch_span_s'])} | {fmt(r['pages_per_s'])} | {fmt(r['cpu_s'])}"
            f" | {fmt(r['cpu_ms_per_page'])} | {fmt(r['peak_rss_mb'], 0)} |"
        )
    return "\n".join(lines)


def comparison_table(result: dict[str, Any]) -> str:
    c = result["comparison"]
    t, s = c["trellis"], c["scrapy"]
    rows = [
        ("pages (HTML, distinct)", "pages", 0, None),
        (
            "wall s (Trellis: StartDataSourceSyncJob to SUCCEEDED; Scrapy: process)",
            "wall_s",
            1,
            None,
        ),
        ("pages/s (wall)", "pages_per_s", 1, "speed_ratio"),
        (
            "pages/s (first to last request at the server)",
            "pages_per_s_fetch_span",
            1,
            "speed_ratio_fetch_span",
        ),
        ("crawler CPU s", "cpu_s", 1, None),
        ("crawler CPU ms/page", "cpu_ms_per_page", 1, "cpu_per_page_ratio"),
        ("peak RSS MB", "peak_rss_mb", 0, "rss_ratio"),
    ]
    lines = ["| Median of rounds | Trellis | Scrapy | Trellis / Scrapy |", "|---|---:|---:|---:|"]
    for name, key, digits, ratio_key in rows:
        r = fmt(c[ratio_key], 2) + "x" if ratio_key and c[ratio_key] is not None else ""
        lines.append(f"| {name} | {fmt(t[key], digits)} | {fmt(s[key], digits)} | {r} |")
    return "\n".join(lines)


def rate_table(result: dict[str, Any]) -> str:
    lines = [
        "| Setting /min | windows | min | median | max | error of median | windows over"
        " | shortest span of setting + 1 requests s | mean rate /min | requests after stop |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rates"]:
        pm = r["per_minute"] or {}
        error = r["error_of_median"]
        lines.append(
            f"| {r['rate']} | {r['windows']} | {fmt(pm.get('min'), 0)} | {fmt(pm.get('median'), 1)}"
            f" | {fmt(pm.get('max'), 0)} | {'n/a' if error is None else f'{error * 100:+.1f}%'}"
            f" | {r['windows_over_setting']} | {fmt(r['tightest_span_of_rate_plus_one_s'], 3)}"
            f" | {fmt(r['mean_rate_per_minute'])} | {r['requests_after_stop']} in"
            f" {r['after_stop_s']:g} s (scanned {r['scanned_at_stop']} at the stop,"
            f" {r['metrics'].get('scanned')} after; status {r['status_after_stop']}) |"
        )
    return "\n".join(lines)


def print_report(result: dict[str, Any], output: Path) -> None:
    m, c, corpus = result["machine"], result["comparison"], result["corpus"]
    settings = result["settings"]
    print()
    print(
        f"## Crawl: {m['cpu_count']} CPUs ({m['cpu_model']}), Python {m['python']},"
        f" Scrapy {m['libraries']['scrapy']}, load average {fmt(result['loadavg_start'], 2)}"
        f" at start, {fmt(result['loadavg_end'], 2)} at end; total {result['total_s']:.0f} s"
    )
    print()
    print(
        f"Corpus: {corpus['root']} ({corpus['html_files']} HTML files) served from loopback by a"
        f" threaded http.server in its own process; robots.txt disallows"
        f" {', '.join(DISALLOWED)} for every agent. Trellis CrawlDepth {settings['depth_trellis']},"
        f" HOST_ONLY, MaxLinksPerPage {MAX_LINKS_PER_PAGE}, no rate limit, crawler concurrency"
        f" {settings['trellis_crawler_concurrency']}; Scrapy DEPTH_LIMIT"
        f" {settings['depth_limit_scrapy']}, ROBOTSTXT_OBEY, {SCRAPY_CONCURRENCY} concurrent"
        f" requests, no delay, no autothrottle. {settings['rounds']} rounds each, alternating;"
        " a fresh crawler process per Trellis round and a fresh Scrapy process per run."
    )
    print()
    print(rounds_table(result))
    print()
    print(comparison_table(result))
    print()
    t = c["trellis"]
    print(
        f"Speed goal (Trellis >= {SPEED_GOAL:g}x Scrapy's pages/s):"
        f" {'met' if c['meets_speed_goal'] else 'NOT met'} ({fmt(c['speed_ratio'], 2)}x wall,"
        f" {fmt(c['speed_ratio_fetch_span'], 2)}x fetch span). Memory goal (no more peak RSS than"
        f" Scrapy): {'met' if c['meets_memory_goal'] else 'NOT met'} ({fmt(c['rss_ratio'], 2)}x)."
    )
    print(
        f"Crawler-only comparison: Scrapy has no indexer. Trellis's other processes during a sync"
        f" (medians): indexer {fmt(t['indexer_cpu_s'])} CPU s (until the documents were"
        f" searchable), nats-server {fmt(t['nats_cpu_s'])} CPU s, gateway"
        f" {fmt(t['gateway_cpu_s'])} CPU s (includes the bench's status polling every"
        f" {POLL_S:g} s)."
    )
    same = c.get("same_pages")
    if same:
        print(
            f"Same pages? Trellis {same['trellis_pages']}, Scrapy {same['scrapy_pages']};"
            f" only Trellis {same['only_trellis']} {same['only_trellis_examples'][:5]},"
            f" only Scrapy {same['only_scrapy']} {same['only_scrapy_examples'][:5]};"
            f" rounds agree: Trellis {same['trellis_rounds_agree']},"
            f" Scrapy {same['scrapy_rounds_agree']}"
        )
    for r in result["trellis"]:
        print(
            f"{r['label']}: {r['status']}, Progress {r['progress']}, last request at the server"
            f" {fmt(r['start_to_last_request_s'])} s after the start, SUCCEEDED"
            f" {fmt(r['last_request_to_end_s'])} s later; metrics {r['metrics']},"
            f" {r['error_count']} errors"
            f" {[e.get('message') for e in r['errors'][:3]]}, indexed {r['indexed_documents']}"
            f" after {fmt(r['indexed_after_s'])} s, repeated HTML fetches"
            f" {len(r['server']['html_repeated'])}, statuses {r['server']['by_status']}"
        )
    stalled = [r["label"] for r in result["trellis"] if r["counts_lost"] > 0]
    if stalled:
        print(
            f"Trellis syncs whose Progress Done stayed below Queued (they reached SUCCEEDED only"
            f" through the crawler's stall detector): {', '.join(stalled)}"
        )
    for r in result["scrapy"]:
        print(
            f"{r['label']}: exit {r['returncode']}, items {r['items']}, statuses"
            f" {r['server']['by_status']}, stats {r['stats']}"
        )
    if result["rates"]:
        print()
        print(
            f"### Per-host rate (requests other than robots.txt in every {WINDOW_S:g} s window"
            f" starting at a request {WINDOW_STARTS_S[0]:g}-{WINDOW_STARTS_S[1]:g} s after the"
            f" first; stopped ~{RATE_RUN_S:g} s after the first request)"
        )
        print()
        print(rate_table(result))
    for name in ("crawler_log", "indexer_log"):
        log = result.get(name) or {}
        if log.get("warnings_or_errors"):
            print()
            print(f"{name}: {log['warnings_or_errors']} warning/error lines, first:")
            for line in log["all"][:12]:
                print(f"  {line[:300]}")
    print()
    print(f"results written to {output}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--docs", type=Path, default=DEFAULT_DOCS, help=f"HTML root of the site ({DEFAULT_DOCS})"
    )
    parser.add_argument(
        "--depth", type=int, default=10, help="Trellis CrawlDepth (Scrapy DEPTH_LIMIT is one less)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="crawls per crawler, alternating")
    parser.add_argument(
        "--skip-rate", action="store_true", help="no per-host rate runs (they take ~3 minutes)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUTPUT, help="JSON results path")
    parser.add_argument("--serve", nargs=3, metavar=("DIR", "PORT", "LOG"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(Path(args.serve[0]), int(args.serve[1]), Path(args.serve[2]))
        return 0
    if not args.docs.is_dir():
        parser.error(f"{args.docs} is not a directory (Debian package python3.11-doc)")
    if not 1 <= args.depth <= 10:
        parser.error("--depth must be from 1 to 10")
    if args.rounds < 1:
        parser.error("--rounds must be positive")

    result = bench(args)
    result["tables_markdown"] = {
        "rounds": rounds_table(result),
        "comparison": comparison_table(result),
        "rates": rate_table(result),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print_report(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
