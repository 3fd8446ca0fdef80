"""A data source's crawl settings from Kendra's WebCrawlerConfiguration (or the v2 template)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runtime.errors import ValidationFailed
from services.crawler.domain.urls import (
    DEFAULT_TRACKING_PARAMETERS,
    Scope,
    UrlFilters,
    compile_filters,
    normalize_url,
)

MAX_SEEDS = 100
MAX_SITEMAPS = 3
DEFAULT_USER_AGENT = "TrellisCrawler/1.0"


@dataclass(frozen=True)
class CrawlSettings:
    seeds: tuple[str, ...]
    sitemaps: tuple[str, ...] = ()
    scope: Scope = Scope.HOST_ONLY
    depth: int = 2
    max_links_per_page: int = 100
    max_size_mb: float = 50.0
    urls_per_minute: int = 300
    filters: UrlFilters = field(default_factory=UrlFilters)
    respect_robots: bool = True
    user_agent: str = DEFAULT_USER_AGENT
    tracking_parameters: frozenset[str] = DEFAULT_TRACKING_PARAMETERS
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def max_bytes(self) -> int:
        return int(self.max_size_mb * 1024 * 1024)


def _int(raw: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = raw.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValidationFailed(f"{key} must be an integer from {low} to {high}, got {value!r}")
    return value


def _strings(raw: dict[str, Any], key: str, limit: int) -> tuple[str, ...]:
    value = raw.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationFailed(f"{key} must be a list of strings")
    if len(value) > limit:
        raise ValidationFailed(f"{key} takes at most {limit} entries, got {len(value)}")
    return tuple(value)


def _urls(values: tuple[str, ...], key: str) -> tuple[str, ...]:
    out = []
    for value in values:
        url = normalize_url(value)
        if url is None:
            raise ValidationFailed(f"{key}: {value!r} is not an http(s) URL")
        out.append(url)
    return tuple(dict.fromkeys(out))


def parse_web_crawler(configuration: dict[str, Any] | None) -> CrawlSettings:
    """Kendra's `Configuration.WebCrawlerConfiguration`; Trellis additions sit beside its fields."""
    if not configuration or not isinstance(configuration.get("WebCrawlerConfiguration"), dict):
        raise ValidationFailed(
            "a WEBCRAWLER data source needs Configuration.WebCrawlerConfiguration"
        )
    web: dict[str, Any] = configuration["WebCrawlerConfiguration"]
    urls = web.get("Urls") or {}
    seed_config = urls.get("SeedUrlConfiguration") or {}
    sitemap_config = urls.get("SiteMapsConfiguration") or {}
    seeds = _urls(_strings(seed_config, "SeedUrls", MAX_SEEDS), "SeedUrls")
    sitemaps = _urls(_strings(sitemap_config, "SiteMaps", MAX_SITEMAPS), "SiteMaps")
    if not seeds and not sitemaps:
        raise ValidationFailed("give SeedUrls (up to 100) or SiteMaps (up to 3)")
    mode = seed_config.get("WebCrawlerMode", "HOST_ONLY")
    try:
        scope = Scope(mode)
    except ValueError:
        raise ValidationFailed(
            f"WebCrawlerMode must be one of {[s.value for s in Scope]}"
        ) from None
    if web.get("ProxyConfiguration") or web.get("AuthenticationConfiguration"):
        raise ValidationFailed(
            "ProxyConfiguration and AuthenticationConfiguration are not supported yet"
        )
    size = web.get("MaxContentSizePerPageInMegaBytes", 50.0)
    if not isinstance(size, int | float) or isinstance(size, bool) or not 0 < size <= 50:
        raise ValidationFailed("MaxContentSizePerPageInMegaBytes must be above 0 and at most 50")
    filters = UrlFilters(
        crawl_include=_strings(web, "UrlInclusionPatterns", 100),
        crawl_exclude=_strings(web, "UrlExclusionPatterns", 100),
        index_include=_strings(web, "IndexInclusionPatterns", 100),
        index_exclude=_strings(web, "IndexExclusionPatterns", 100),
    )
    compile_filters(filters)  # raises on a bad pattern, naming it
    headers = web.get("CustomHeaders") or {}
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise ValidationFailed("CustomHeaders must map header names to strings")
    user_agent = web.get("UserAgent", DEFAULT_USER_AGENT)
    if not isinstance(user_agent, str) or not 1 <= len(user_agent) <= 200:
        raise ValidationFailed("UserAgent must be 1-200 characters")
    respect = web.get("RespectRobotsTxt", True)
    if not isinstance(respect, bool):
        raise ValidationFailed("RespectRobotsTxt must be true or false")
    return CrawlSettings(
        seeds=seeds,
        sitemaps=sitemaps,
        scope=scope,
        depth=_int(web, "CrawlDepth", 2, 0, 10),
        max_links_per_page=_int(web, "MaxLinksPerPage", 100, 1, 1000),
        max_size_mb=float(size),
        # 0 (REST only: boto3 refuses it) crawls without a per-host limit, for one's own sites.
        urls_per_minute=_int(web, "MaxUrlsPerMinuteCrawlRate", 300, 0, 300),
        filters=filters,
        respect_robots=respect,
        user_agent=user_agent,
        headers=tuple(sorted(headers.items())),
    )
