"""The crawl benchmark's pure parts: request logs, page counts, per-minute windows, Scrapy's command."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from bench.crawl import (
    ROBOTS_TXT,
    SCRAPY_DENY,
    SPIDER_SOURCE,
    Request,
    flagged_line,
    format_request,
    median_of,
    page_counts,
    page_key,
    parse_request,
    ratio,
    read_requests,
    scrapy_argv,
    spread,
    tightest_span,
    window_counts,
)


def _request(mono: float, path: str, status: int = 200, content_type: str = "text/html") -> Request:
    return Request(mono, 1_700_000_000.0 + mono, status, content_type, path, "TrellisCrawler/1.0")


def test_request_lines_round_trip() -> None:
    request = _request(12.5, "/library/os.html?x=1")
    assert parse_request(format_request(request)) == request


def test_tabs_and_newlines_in_fields_do_not_break_a_line() -> None:
    request = Request(1.0, 2.0, 200, "text/html", "/a\tb", "agent\nwith newline")
    line = format_request(request)
    assert line.count("\n") == 1 and line.count("\t") == 5
    parsed = parse_request(line)
    assert parsed is not None and parsed.path == "/a b"


def test_bad_lines_are_skipped(tmp_path: Path) -> None:
    log = tmp_path / "requests.log"
    log.write_text(
        format_request(_request(2.0, "/b.html"))
        + "garbage\n"
        + "x\t1\t200\ttext/html\t/c.html\tua\n"
        + format_request(_request(1.0, "/a.html"))
    )
    assert [r.path for r in read_requests(log)] == ["/a.html", "/b.html"]
    assert read_requests(tmp_path / "missing.log") == []


def test_page_key_names_the_page() -> None:
    assert page_key("/") == "/index.html"
    assert page_key("/library/") == "/library/index.html"
    assert page_key("/library/os.html?highlight=x") == "/library/os.html"
    assert page_key("/a%20b.html") == "/a b.html"


def test_page_counts_counts_distinct_html_pages() -> None:
    requests = [
        _request(0.0, "/robots.txt", content_type="text/plain"),
        _request(1.0, "/index.html"),
        _request(2.0, "/"),  # the same page again
        _request(3.0, "/library/os.html"),
        _request(4.0, "/missing.html", status=404, content_type="text/html;charset=utf-8"),
        _request(5.5, "/_downloads/x.py", content_type="text/x-python"),
    ]
    counts = page_counts(requests)
    assert counts["requests"] == 6
    assert counts["robots_requests"] == 1
    assert counts["html_pages"] == 2
    assert counts["html_requests"] == 3
    assert counts["html_repeated"] == ["/index.html"]
    assert counts["other_requests"] == 2
    assert counts["by_status"] == {"200": 5, "404": 1}
    assert counts["span_s"] == 5.5


def test_page_counts_of_nothing() -> None:
    assert page_counts([])["span_s"] == 0.0


def test_even_requests_give_the_rate_in_every_window() -> None:
    # One request a second for 80 s: every 60 s window holds 60 of them.
    times = [float(t) for t in range(80)]
    counts = window_counts(times, window_s=60.0, starts_s=(5.0, 15.0))
    assert counts == [60] * 11  # windows start at the requests at 5, 6, ..., 15 s


def test_windows_past_the_end_are_left_out() -> None:
    times = [float(t) for t in range(80)]
    counts = window_counts(times, window_s=60.0, starts_s=(5.0, 15.0), end=70.0)
    assert counts == [60] * 6  # starts at 5..10 s end by 70 s


def test_windows_count_a_burst() -> None:
    # Five requests at once 20 s in, on top of one every two seconds.
    times = [float(t) for t in range(0, 100, 2)] + [20.0] * 5
    counts = window_counts(times, window_s=60.0, starts_s=(5.0, 15.0))
    assert counts == [35] * 5  # starts at 6, 8, ..., 14 s: 30 evenly spaced + the burst
    assert window_counts([], window_s=60.0) == []


def test_windows_start_at_the_first_of_equal_times() -> None:
    times = [0.0, 10.0, 10.0, 10.0, 30.0, 80.0]
    assert window_counts(times, window_s=60.0, starts_s=(5.0, 15.0)) == [4]


def test_spread_ratio_and_medians() -> None:
    assert spread([3.0, 1.0, 2.0, 10.0]) == {"min": 1.0, "median": 2.5, "max": 10.0}
    assert spread([]) is None
    assert ratio(4.0, 2.0) == 2.0
    assert ratio(None, 2.0) is None
    assert ratio(1.0, 0.0) is None
    rounds: list[dict[str, Any]] = [{"x": 1.0}, {"x": 3.0}, {"x": None}, {}]
    assert median_of(rounds, "x") == 2.0
    assert median_of(rounds, "y") is None


def test_scrapy_depth_is_one_less_than_trellis_crawl_depth(tmp_path: Path) -> None:
    argv = scrapy_argv(
        tmp_path / "spider.py",
        "http://127.0.0.1:8000/index.html",
        10,
        tmp_path / "feed.jsonl",
        tmp_path / "stats.json",
        tmp_path / "scrapy.log",
    )
    settings = dict(argv[i + 1].split("=", 1) for i, arg in enumerate(argv) if arg == "-s")
    assert settings["DEPTH_LIMIT"] == "9"
    assert settings["ROBOTSTXT_OBEY"] == "True"
    assert settings["AUTOTHROTTLE_ENABLED"] == "False"
    assert settings["DOWNLOAD_DELAY"] == "0"
    assert settings["CONCURRENT_REQUESTS"] == settings["CONCURRENT_REQUESTS_PER_DOMAIN"] == "16"
    assert "start_url=http://127.0.0.1:8000/index.html" in argv
    assert argv[-2:] == ["-O", f"{tmp_path / 'feed.jsonl'}:jsonlines"]


def test_spider_source_is_python_with_the_deny_list() -> None:
    ast.parse(SPIDER_SOURCE)
    assert repr(SCRAPY_DENY) in SPIDER_SOURCE
    assert "__DENY__" not in SPIDER_SOURCE


def test_robots_txt_disallows_sources_and_static_for_everyone() -> None:
    lines = ROBOTS_TXT.splitlines()
    assert lines[0] == "User-agent: *"
    assert {"Disallow: /_sources/", "Disallow: /_static/"} <= set(lines)


def test_flagged_lines_of_service_logs() -> None:
    warning = '{"time": "t", "level": "warning", "logger": "trellis.crawler", "message": "stalled"}'
    info = '{"time": "t", "level": "info", "logger": "trellis.crawler", "message": "fine"}'
    assert flagged_line(warning) == "t warning trellis.crawler: stalled"
    assert flagged_line(info) is None
    assert flagged_line("Traceback (most recent call last):") is not None
    assert flagged_line("plain text") is None


def test_tightest_span_of_consecutive_requests() -> None:
    times = [0.0, 1.0, 2.0, 2.5, 4.0, 10.0]
    assert tightest_span(times, 2) == 0.5
    assert tightest_span(times, 3) == 1.5  # 1.0, 2.0, 2.5
    assert tightest_span(times, 6) == 10.0
    assert tightest_span(times, 7) is None
    assert tightest_span([float(t) for t in range(70)], 61) == 60.0
