"""A data source's crawl settings from Kendra's WebCrawlerConfiguration (or the v2 template)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from runtime.errors import ValidationFailed
from services.crawler.domain.secrets import is_reference
from services.crawler.domain.urls import (
    DEFAULT_TRACKING_PARAMETERS,
    Scope,
    UrlFilters,
    compile_filters,
    host_key,
    normalize_url,
)

MAX_SEEDS = 100
MAX_SITEMAPS = 3
MAX_BASIC_AUTHENTICATIONS = 10
MAX_EXTRA_FIELDS = 50
DEFAULT_USER_AGENT = "TrellisCrawler/1.0"


@dataclass(frozen=True)
class BasicAuthentication:
    """Credentials (a secret reference) sent to one host:port only."""

    host_port: str  # host_key form: "example.com:443"
    credentials: str


@dataclass(frozen=True)
class ProxySettings:
    host: str  # normalised; IPv6 in brackets
    port: int
    credentials: str | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass(frozen=True)
class FormAuthentication:
    """Trellis addition: a login form posted once per sync; its cookies serve the whole sync."""

    login_url: str
    username_field: str
    password_field: str
    credentials: str
    extra_fields: tuple[tuple[str, str], ...] = ()


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
    basic_auth: tuple[BasicAuthentication, ...] = ()
    proxy: ProxySettings | None = None
    form_login: FormAuthentication | None = None

    @property
    def max_bytes(self) -> int:
        return int(self.max_size_mb * 1024 * 1024)

    @property
    def secret_references(self) -> tuple[str, ...]:
        found = [b.credentials for b in self.basic_auth]
        if self.proxy is not None and self.proxy.credentials is not None:
            found.append(self.proxy.credentials)
        if self.form_login is not None:
            found.append(self.form_login.credentials)
        return tuple(dict.fromkeys(found))


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
    authentication = web.get("AuthenticationConfiguration")
    if authentication is None:
        authentication = {}
    if not isinstance(authentication, dict):
        raise ValidationFailed("AuthenticationConfiguration must be an object")
    unknown = set(authentication) - {"BasicAuthentication", "FormAuthentication"}
    if unknown:
        raise ValidationFailed(
            f"AuthenticationConfiguration: unknown members {sorted(unknown)} "
            "(BasicAuthentication, FormAuthentication)"
        )
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
        basic_auth=_basic_authentications(authentication),
        proxy=_proxy(web.get("ProxyConfiguration")),
        form_login=_form_authentication(authentication.get("FormAuthentication")),
    )


def _object(raw: Any, where: str, required: set[str], optional: set[str]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ValidationFailed(f"{where} must be an object")
    missing = required - set(raw)
    if missing:
        raise ValidationFailed(f"{where} needs {sorted(missing)}")
    unknown = set(raw) - required - optional
    if unknown:
        raise ValidationFailed(f"{where}: unknown members {sorted(unknown)}")
    return raw


def _credentials(raw: dict[str, Any], where: str) -> str:
    value = raw["Credentials"]
    if not isinstance(value, str) or not 1 <= len(value) <= 1284 or not is_reference(value):
        raise ValidationFailed(
            f"{where}.Credentials must be a secret ARN or name (create one with CreateSecret)"
        )
    return value


def _host_port(raw: dict[str, Any], where: str) -> tuple[str, int]:
    host, port = raw["Host"], raw["Port"]
    if not isinstance(host, str) or not 1 <= len(host) <= 253:
        raise ValidationFailed(f"{where}.Host must be a host name or IP address (1-253 characters)")
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise ValidationFailed(f"{where}.Port must be an integer from 1 to 65535")
    literal = host.strip()
    if ":" in literal and not literal.startswith("["):
        literal = f"[{literal}]"  # a bare IPv6 address
    url = normalize_url(f"http://{literal}:{port}/")
    if url is None or any(c in host for c in "/\\@?# "):
        raise ValidationFailed(f"{where}.Host {host[:253]!r} is not a host name or IP address")
    normal, _, _ = host_key(url).rpartition(":")
    return normal, port


def _basic_authentications(authentication: dict[str, Any]) -> tuple[BasicAuthentication, ...]:
    entries = authentication.get("BasicAuthentication")
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise ValidationFailed("AuthenticationConfiguration.BasicAuthentication must be a list")
    if len(entries) > MAX_BASIC_AUTHENTICATIONS:
        raise ValidationFailed(
            f"BasicAuthentication takes at most {MAX_BASIC_AUTHENTICATIONS} entries"
        )
    out: dict[str, BasicAuthentication] = {}
    for i, entry in enumerate(entries):
        where = f"BasicAuthentication[{i}]"
        raw = _object(entry, where, {"Host", "Port", "Credentials"}, set())
        host, port = _host_port(raw, where)
        key = f"{host}:{port}"
        if key in out:
            raise ValidationFailed(f"{where}: {key} appears twice")
        out[key] = BasicAuthentication(key, _credentials(raw, where))
    return tuple(out.values())


def _proxy(raw: Any) -> ProxySettings | None:
    if raw is None:
        return None
    where = "ProxyConfiguration"
    config = _object(raw, where, {"Host", "Port"}, {"Credentials"})
    host, port = _host_port(config, where)
    credentials = _credentials(config, where) if config.get("Credentials") is not None else None
    return ProxySettings(host, port, credentials)


def _field_name(raw: dict[str, Any], key: str) -> str:
    value = raw[key]
    if not isinstance(value, str) or not 1 <= len(value) <= 256:
        raise ValidationFailed(f"FormAuthentication.{key} must be a form field name (1-256)")
    return value


def _form_authentication(raw: Any) -> FormAuthentication | None:
    if raw is None:
        return None
    where = "FormAuthentication"
    config = _object(
        raw,
        where,
        {"LoginUrl", "UsernameField", "PasswordField", "Credentials"},
        {"ExtraFields"},
    )
    login_url = config["LoginUrl"]
    if not isinstance(login_url, str) or normalize_url(login_url) is None:
        raise ValidationFailed(f"{where}.LoginUrl must be an http(s) URL")
    username, password = _field_name(config, "UsernameField"), _field_name(config, "PasswordField")
    if username == password:
        raise ValidationFailed(f"{where}: UsernameField and PasswordField must differ")
    extra = config.get("ExtraFields")
    if extra is None:
        extra = {}
    if (
        not isinstance(extra, dict)
        or len(extra) > MAX_EXTRA_FIELDS
        or not all(isinstance(k, str) and k and isinstance(v, str) for k, v in extra.items())
    ):
        raise ValidationFailed(
            f"{where}.ExtraFields must map up to {MAX_EXTRA_FIELDS} field names to strings"
        )
    if {username, password} & set(extra):
        raise ValidationFailed(f"{where}.ExtraFields must not repeat the username or password")
    return FormAuthentication(
        login_url=login_url.strip(),
        username_field=username,
        password_field=password,
        credentials=_credentials(config, where),
        extra_fields=tuple(extra.items()),
    )


def _credential_slots(configuration: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The objects holding a `Credentials` member, wherever the configuration has them."""
    web = configuration.get("WebCrawlerConfiguration")
    if not isinstance(web, dict):
        return
    authentication = web.get("AuthenticationConfiguration")
    if isinstance(authentication, dict):
        basic = authentication.get("BasicAuthentication")
        if isinstance(basic, list):
            yield from (entry for entry in basic if isinstance(entry, dict))
        form = authentication.get("FormAuthentication")
        if isinstance(form, dict):
            yield form
    proxy = web.get("ProxyConfiguration")
    if isinstance(proxy, dict):
        yield proxy


def credential_references(configuration: dict[str, Any] | None) -> set[str]:
    """Every secret reference in a stored configuration (read leniently: no validation)."""
    return {
        slot["Credentials"]
        for slot in _credential_slots(configuration or {})
        if isinstance(slot.get("Credentials"), str)
    }


def with_credentials(
    configuration: dict[str, Any], resolve: Callable[[str], str]
) -> dict[str, Any]:
    """A copy of `configuration` whose references are replaced by `resolve(reference)`."""
    out = copy.deepcopy(configuration)
    for slot in _credential_slots(out):
        if isinstance(slot.get("Credentials"), str):
            slot["Credentials"] = resolve(slot["Credentials"])
    return out
