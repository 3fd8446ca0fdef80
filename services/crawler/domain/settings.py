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
MAX_TRACKING_PARAMETERS = 100
MAX_TRACKING_PARAMETER_LENGTH = 100
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
    # Files other than HTML pages (PDF, text, ...): the v2 template's crawlAttachments.
    crawl_attachments: bool = True
    sync_mode: str = "FULL_CRAWL"  # the mode of a sync started without one (v2 template syncMode)

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


def _urls(
    values: tuple[str, ...], key: str, tracking: frozenset[str] = DEFAULT_TRACKING_PARAMETERS
) -> tuple[str, ...]:
    out = []
    for value in values:
        url = normalize_url(value, tracking=tracking)
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
    tracking = _tracking_parameters(web)
    seeds = _urls(_strings(seed_config, "SeedUrls", MAX_SEEDS), "SeedUrls", tracking)
    sitemaps = _urls(_strings(sitemap_config, "SiteMaps", MAX_SITEMAPS), "SiteMaps", tracking)
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
        tracking_parameters=tracking,
        headers=tuple(sorted(headers.items())),
        basic_auth=_basic_authentications(authentication),
        proxy=_proxy(web.get("ProxyConfiguration")),
        form_login=_form_authentication(authentication.get("FormAuthentication")),
    )


def _tracking_parameters(web: dict[str, Any]) -> frozenset[str]:
    """Trellis addition: the query parameters URLs lose (case-insensitive); [] keeps them all."""
    if web.get("TrackingParameters") is None:
        return DEFAULT_TRACKING_PARAMETERS
    names = _strings(web, "TrackingParameters", MAX_TRACKING_PARAMETERS)
    for name in names:
        if not 1 <= len(name) <= MAX_TRACKING_PARAMETER_LENGTH:
            raise ValidationFailed(
                f"TrackingParameters: each name must be 1-{MAX_TRACKING_PARAMETER_LENGTH} "
                f"characters, got {name[: MAX_TRACKING_PARAMETER_LENGTH + 1]!r}"
            )
    return frozenset(name.lower() for name in names)


def parse_data_source(kind: str, configuration: dict[str, Any] | None) -> CrawlSettings:
    """The crawl settings of a data source of Type `kind` (WEBCRAWLER or TEMPLATE)."""
    if kind == "TEMPLATE":
        return parse_template(configuration)
    if kind == "WEBCRAWLER":
        return parse_web_crawler(configuration)
    raise ValidationFailed(f"Type {kind} is not supported: use WEBCRAWLER or TEMPLATE")


# --- Kendra's Web Crawler v2 template (Type TEMPLATE) ------------------------------------------

TEMPLATE_TYPES = ("WEBCRAWLERV2", "WEBCRAWLER")
_TEMPLATE_KEYS = {
    "type",
    "version",
    "syncMode",
    "secretArn",
    "connectionConfiguration",
    "additionalProperties",
    "repositoryConfigurations",
    "enableIdentityCrawler",
}
_ENDPOINT_KEYS = {
    "seedUrlConnections",
    "siteMapUrls",
    "s3SeedUrl",
    "s3SiteMapUrl",
    "authentication",
}
_PATTERN_KEYS = {
    "inclusionURLCrawlPatterns": "crawl_include",
    "exclusionURLCrawlPatterns": "crawl_exclude",
    "inclusionURLIndexPatterns": "index_include",
    "exclusionURLIndexPatterns": "index_exclude",
}
_PROPERTY_KEYS = {
    "rateLimit",
    "maxFileSize",
    "crawlDepth",
    "maxLinksPerUrl",
    "crawlSubDomain",
    "crawlAllDomain",
    "crawlDomainsOnly",
    "honorRobots",
    "crawlAttachments",
    "inclusionFileIndexPatterns",
    "exclusionFileIndexPatterns",
    "implicitWaitDuration",
    "proxy",
    *_PATTERN_KEYS,
}
_SYNC_MODES = {"FULL_CRAWL": "FULL_CRAWL", "FORCED_FULL_CRAWL": "FORCED_FULL_CRAWL"}
# Trellis's FULL_CRAWL is incremental already: new, modified and deleted pages only.
_SYNC_MODES["CHANGE_LOG"] = "FULL_CRAWL"


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _number(raw: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    """A template number: the schema writes them as strings ("300"); JSON numbers pass too."""
    value = raw.get(key)
    if _empty(value):
        return float(default)
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is None or not low <= number <= high:
        raise ValidationFailed(
            f"additionalProperties.{key} must be a number from {low:g} to {high:g}, got {value!r}"
        )
    return number


def _whole(raw: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    number = _number(raw, key, default, low, high)
    if not number.is_integer():
        raise ValidationFailed(f"additionalProperties.{key} must be a whole number")
    return int(number)


def _flag(raw: dict[str, Any], key: str, default: bool) -> bool:
    value = raw.get(key)
    if value is None:
        return default
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise ValidationFailed(f"additionalProperties.{key} must be true or false")
    return value


def _template(configuration: dict[str, Any] | None) -> dict[str, Any]:
    wrapper = (configuration or {}).get("TemplateConfiguration")
    template = wrapper.get("Template") if isinstance(wrapper, dict) else None
    if not isinstance(template, dict):
        raise ValidationFailed(
            "a TEMPLATE data source needs Configuration.TemplateConfiguration.Template: "
            "the Web Crawler v2 template (type WEBCRAWLERV2)"
        )
    return template


def parse_template(configuration: dict[str, Any] | None) -> CrawlSettings:
    """Kendra's Web Crawler v2 template (`Configuration.TemplateConfiguration.Template`).

    The members Trellis cannot honour (authentication, S3 URL lists, proxy, file-name index
    patterns) are refused, naming them; field mappings are accepted and not applied.
    """
    template = _template(configuration)
    unknown = set(template) - _TEMPLATE_KEYS
    if unknown:
        raise ValidationFailed(f"Template: unknown members {sorted(unknown)}")
    if template.get("type") not in TEMPLATE_TYPES:
        raise ValidationFailed(
            f"Template.type must be WEBCRAWLERV2 (the only template Trellis runs), "
            f"got {template.get('type')!r}"
        )
    sync_mode = template.get("syncMode", "FULL_CRAWL")
    if sync_mode not in _SYNC_MODES:
        raise ValidationFailed(f"Template.syncMode must be one of {sorted(_SYNC_MODES)}")
    if template.get("enableIdentityCrawler") not in (None, False):
        raise ValidationFailed("Template.enableIdentityCrawler is not supported")
    if not isinstance(template.get("version", ""), str):
        raise ValidationFailed("Template.version must be a string such as 1.0.0")
    # Field mappings are accepted so that templates written for Kendra load; Trellis indexes
    # the title, the text and the source URI of every page itself.
    if not isinstance(template.get("repositoryConfigurations") or {}, dict):
        raise ValidationFailed("Template.repositoryConfigurations must be an object")
    connection = template.get("connectionConfiguration")
    endpoint = (
        connection.get("repositoryEndpointMetadata") if isinstance(connection, dict) else None
    )
    if not isinstance(endpoint, dict):
        raise ValidationFailed(
            "Template.connectionConfiguration.repositoryEndpointMetadata must be an object"
        )
    unknown = set(endpoint) - _ENDPOINT_KEYS
    if unknown:
        raise ValidationFailed(f"repositoryEndpointMetadata: unknown members {sorted(unknown)}")
    for key in ("s3SeedUrl", "s3SiteMapUrl"):
        if not _empty(endpoint.get(key)):
            raise ValidationFailed(
                f"repositoryEndpointMetadata.{key}: URL lists in S3 are not supported; "
                "list the URLs in seedUrlConnections or siteMapUrls"
            )
    authentication = endpoint.get("authentication") or "NoAuthentication"
    if authentication != "NoAuthentication" or not _empty(template.get("secretArn")):
        raise ValidationFailed(
            f"repositoryEndpointMetadata.authentication {authentication!r}: templates support "
            "NoAuthentication only; for basic or form login use Type WEBCRAWLER with "
            "AuthenticationConfiguration"
        )
    connections = endpoint.get("seedUrlConnections") or []
    if not isinstance(connections, list) or not all(
        isinstance(c, dict) and set(c) == {"seedUrl"} and isinstance(c["seedUrl"], str)
        for c in connections
    ):
        raise ValidationFailed('seedUrlConnections must be a list of {"seedUrl": URL} objects')
    if len(connections) > MAX_SEEDS:
        raise ValidationFailed(f"seedUrlConnections takes at most {MAX_SEEDS} entries")
    seeds = _urls(tuple(c["seedUrl"] for c in connections), "seedUrl")
    sitemaps = _urls(_strings(endpoint, "siteMapUrls", MAX_SITEMAPS), "siteMapUrls")
    if not seeds and not sitemaps:
        raise ValidationFailed("give seedUrlConnections (up to 100) or siteMapUrls (up to 3)")
    properties = template.get("additionalProperties") or {}
    if not isinstance(properties, dict):
        raise ValidationFailed("Template.additionalProperties must be an object")
    unknown = set(properties) - _PROPERTY_KEYS
    if unknown:
        raise ValidationFailed(f"additionalProperties: unknown members {sorted(unknown)}")
    for key in ("inclusionFileIndexPatterns", "exclusionFileIndexPatterns"):
        if not _empty(properties.get(key)):
            raise ValidationFailed(
                f"additionalProperties.{key} is not supported: filter files by URL with "
                "inclusionURLIndexPatterns / exclusionURLIndexPatterns"
            )
    if not _empty(properties.get("proxy")):
        raise ValidationFailed(
            "additionalProperties.proxy is not supported in templates: use Type WEBCRAWLER "
            "with ProxyConfiguration"
        )
    filters = UrlFilters(
        **{field: _strings(properties, key, 100) for key, field in _PATTERN_KEYS.items()}
    )
    compile_filters(filters)  # raises on a bad pattern, naming it
    if _flag(properties, "crawlAllDomain", False):
        scope = Scope.EVERYTHING
    elif _flag(properties, "crawlSubDomain", False):
        scope = Scope.SUBDOMAINS
    else:
        scope = Scope.HOST_ONLY
    _flag(properties, "crawlDomainsOnly", False)  # validated; the scope above decides
    return CrawlSettings(
        seeds=seeds,
        sitemaps=sitemaps,
        scope=scope,
        depth=_whole(properties, "crawlDepth", 2, 0, 10),
        max_links_per_page=_whole(properties, "maxLinksPerUrl", 100, 1, 1000),
        max_size_mb=_number(properties, "maxFileSize", 50.0, 1e-6, 50.0),
        urls_per_minute=_whole(properties, "rateLimit", 300, 0, 300),
        filters=filters,
        respect_robots=_flag(properties, "honorRobots", True),
        crawl_attachments=_flag(properties, "crawlAttachments", False),
        sync_mode=_SYNC_MODES[sync_mode],
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
