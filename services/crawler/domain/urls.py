"""URL normalisation, crawl scope and the user's crawl/index URL filters."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, NamedTuple
from urllib.parse import unquote, urljoin, urlsplit

from runtime.errors import ValidationFailed

__all__ = [
    "DEFAULT_TRACKING_PARAMETERS",
    "MAX_FILTER_PATTERNS",
    "MAX_FILTER_PATTERN_LENGTH",
    "MAX_URL_LENGTH",
    "CompiledFilters",
    "Scope",
    "UrlFilters",
    "compile_filters",
    "host_key",
    "in_scope",
    "normalize_percent_encoding",
    "normalize_url",
]

MAX_URL_LENGTH: Final = 2048
MAX_FILTER_PATTERNS: Final = 100
MAX_FILTER_PATTERN_LENGTH: Final = 1000
# Inputs this long cannot shrink below MAX_URL_LENGTH in any realistic case; refusing them
# early keeps a hostile page from making us normalise megabyte-long hrefs.
_MAX_INPUT_LENGTH: Final = 8 * MAX_URL_LENGTH

DEFAULT_TRACKING_PARAMETERS: Final[frozenset[str]] = frozenset(
    {
        "utm_source",
        "utm_medium",
        "utm_campaign",
        "utm_term",
        "utm_content",
        "utm_id",
        "gclid",
        "fbclid",
        "msclkid",
        "mc_cid",
        "mc_eid",
        "_ga",
        "yclid",
        "igshid",
        "ref_src",
    }
)

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_UNRESERVED: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_SUB_DELIMS: Final = "!$&'()*+,;="
_PATH_SAFE: Final = "".join(sorted(_UNRESERVED)) + _SUB_DELIMS + ":@/"
# '&' separates parameters, so inside a name or value it must stay escaped.
_QUERY_PART_SAFE: Final = _PATH_SAFE.replace("&", "") + "?"
_HOST_LABEL: Final = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_MAX_HOST_LENGTH: Final = 253
_ESCAPE_PATTERNS: dict[str, re.Pattern[str]] = {}


def normalize_percent_encoding(text: str, safe: str = _PATH_SAFE) -> str:
    """Decode escapes of unreserved characters, uppercase the others, escape whatever is not in `safe`.

    A '%' that does not start a valid escape is itself escaped.
    """
    pattern = _ESCAPE_PATTERNS.get(safe)
    if pattern is None:
        pattern = re.compile(r"%[0-9A-Fa-f]{2}|[^" + re.escape(safe) + "]")
        _ESCAPE_PATTERNS[safe] = pattern
    return pattern.sub(_fix_escape, text)


def _fix_escape(match: re.Match[str]) -> str:
    token = match.group()
    if len(token) == 3:
        char = chr(int(token[1:], 16))
        return char if char in _UNRESERVED else token.upper()
    # surrogatepass keeps lone surrogates (seen in broken pages) from raising.
    return "".join(f"%{byte:02X}" for byte in token.encode("utf-8", "surrogatepass"))


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4 for an absolute path; empty segments ('//') are kept."""
    segments = path.split("/")
    output: list[str] = []
    last = len(segments) - 1
    for index, segment in enumerate(segments):
        if segment in (".", ".."):
            if segment == ".." and len(output) > 1:
                output.pop()
            if index == last:
                output.append("")
            continue
        output.append(segment)
    if not output or output == [""]:
        return "/"
    result = "/".join(output)
    return result if result.startswith("/") else "/" + result


def _normalize_host(raw: str) -> str | None:
    if raw.startswith("["):
        inner = raw[1:-1] if raw.endswith("]") else ""
        if not inner or "%" in inner:
            return None
        try:
            return f"[{ipaddress.IPv6Address(inner).compressed}]"
        except ValueError:
            return None
    host = unquote(raw, errors="strict") if "%" in raw else raw
    host = host.removesuffix(".")
    if not host:
        return None
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    host = host.lower()
    if len(host) > _MAX_HOST_LENGTH:
        return None
    if not all(_HOST_LABEL.fullmatch(label) for label in host.split(".")):
        return None
    return host


def _split_authority(netloc: str) -> tuple[str, int | None] | None:
    hostport = netloc.rpartition("@")[2]
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            return None
        host, rest = hostport[: end + 1], hostport[end + 1 :]
        if rest and not rest.startswith(":"):
            return None
        port_text = rest[1:]
    else:
        host, _, port_text = hostport.partition(":")
    if not port_text:
        return host, None
    if not port_text.isascii() or not port_text.isdigit():
        return None
    port = int(port_text)
    if not 0 < port <= 65535:
        return None
    return host, port


def _normalize_query(query: str, tracking: frozenset[str]) -> str:
    params: list[tuple[str, str, str]] = []
    for piece in query.split("&"):
        if not piece:
            continue
        name, equals, value = piece.partition("=")
        name = normalize_percent_encoding(name, _QUERY_PART_SAFE)
        if unquote(name).lower() in tracking:
            continue
        params.append((name, equals, normalize_percent_encoding(value, _QUERY_PART_SAFE)))
    params.sort(key=lambda param: (param[0], param[2]))
    return "&".join(name + equals + value for name, equals, value in params)


def normalize_url(
    url: str,
    *,
    base: str | None = None,
    tracking: frozenset[str] = DEFAULT_TRACKING_PARAMETERS,
) -> str | None:
    """The canonical form of an http(s) URL (resolved against `base`), or None when it has none."""
    if len(url) > _MAX_INPUT_LENGTH:
        return None
    url = url.strip()
    # Browsers read '\' as '/' before the query in http(s) URLs, so links written that way work.
    cut = min((i for i in (url.find("?"), url.find("#")) if i >= 0), default=len(url))
    url = url[:cut].replace("\\", "/") + url[cut:]
    try:
        parts = urlsplit(urljoin(base, url) if base else url)
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        return None
    authority = _split_authority(parts.netloc)
    if authority is None:
        return None
    raw_host, port = authority
    try:
        host = _normalize_host(raw_host)
    except UnicodeError:
        return None
    if host is None:
        return None
    netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    path = _remove_dot_segments(normalize_percent_encoding(parts.path or "/"))
    lowered = tracking if tracking is DEFAULT_TRACKING_PARAMETERS else _lowered(tracking)
    query = _normalize_query(parts.query, lowered)
    result = f"{scheme}://{netloc}{path}" + (f"?{query}" if query else "")
    return result if len(result) <= MAX_URL_LENGTH else None


def _lowered(names: frozenset[str]) -> frozenset[str]:
    return frozenset(name.lower() for name in names)


class Scope(StrEnum):
    """Kendra's Web Crawler CrawlMode values."""

    HOST_ONLY = "HOST_ONLY"
    SUBDOMAINS = "SUBDOMAINS"
    EVERYTHING = "EVERYTHING"


class _Origin(NamedTuple):
    scheme: str
    host: str
    port: int | None  # None for the scheme's default port


def _origin(url: str) -> _Origin | None:
    normalized = normalize_url(url)
    if normalized is None:
        return None
    parts = urlsplit(normalized)
    authority = _split_authority(parts.netloc)
    if authority is None:
        return None
    return _Origin(parts.scheme, authority[0], authority[1])


def _is_ip(host: str) -> bool:
    if host.startswith("["):
        return True
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def _site_domain(host: str) -> str:
    # Only drop "www." when a dotted name remains, so a seed of www.com does not open all of .com.
    if host.startswith("www.") and "." in host[4:]:
        return host[4:]
    return host


def in_scope(url: str, seeds: Sequence[str], scope: Scope) -> bool:
    """Whether `url` may be followed from `seeds` under `scope`.

    HOST_ONLY compares host and port (default ports are equal whatever the scheme, so an
    http -> https upgrade stays in scope); SUBDOMAINS ignores ports and accepts the seed's
    domain (without a leading "www.") and every subdomain of it; EVERYTHING accepts any
    http(s) URL. Seeds that are not http(s) URLs are ignored.
    """
    target = _origin(url)
    if target is None:
        return False
    if scope is Scope.EVERYTHING:
        return True
    for seed in seeds:
        origin = _origin(seed)
        if origin is None:
            continue
        if scope is Scope.HOST_ONLY:
            if (origin.host, origin.port) == (target.host, target.port):
                return True
        elif _is_ip(origin.host):
            if origin.host == target.host:
                return True
        else:
            domain = _site_domain(origin.host)
            if target.host == domain or target.host.endswith("." + domain):
                return True
    return False


def host_key(url: str) -> str:
    """The "host:port" key of per-host politeness, port always explicit ("example.com:443").

    Raises ValidationFailed for a URL that is not http(s).
    """
    origin = _origin(url)
    if origin is None:
        raise ValidationFailed(f"not an http(s) URL: {url[:200]!r}")
    port = origin.port if origin.port is not None else _DEFAULT_PORTS[origin.scheme]
    return f"{origin.host}:{port}"


@dataclass(frozen=True)
class UrlFilters:
    """Regular expressions (re.search semantics) as a user configures them."""

    crawl_include: tuple[str, ...] = ()
    crawl_exclude: tuple[str, ...] = ()
    index_include: tuple[str, ...] = ()
    index_exclude: tuple[str, ...] = ()


def _passes(
    url: str, include: tuple[re.Pattern[str], ...], exclude: tuple[re.Pattern[str], ...]
) -> bool:
    if any(pattern.search(url) for pattern in exclude):
        return False
    return not include or any(pattern.search(url) for pattern in include)


class CompiledFilters:
    """Compiled UrlFilters; exclusion wins over inclusion and an empty include list includes all."""

    __slots__ = ("_crawl_exclude", "_crawl_include", "_index_exclude", "_index_include")

    def __init__(
        self,
        crawl_include: tuple[re.Pattern[str], ...] = (),
        crawl_exclude: tuple[re.Pattern[str], ...] = (),
        index_include: tuple[re.Pattern[str], ...] = (),
        index_exclude: tuple[re.Pattern[str], ...] = (),
    ) -> None:
        self._crawl_include = crawl_include
        self._crawl_exclude = crawl_exclude
        self._index_include = index_include
        self._index_exclude = index_exclude

    def may_crawl(self, url: str) -> bool:
        return _passes(url, self._crawl_include, self._crawl_exclude)

    def may_index(self, url: str) -> bool:
        """Only the index lists count; a URL that may not be crawled is never fetched anyway."""
        return _passes(url, self._index_include, self._index_exclude)


def _compile_list(field: str, patterns: Sequence[str]) -> tuple[re.Pattern[str], ...]:
    if isinstance(patterns, str) or not isinstance(patterns, Sequence):
        raise ValidationFailed(f"{field}: must be a list of regular expressions", field=field)
    if len(patterns) > MAX_FILTER_PATTERNS:
        raise ValidationFailed(
            f"{field}: at most {MAX_FILTER_PATTERNS} patterns, got {len(patterns)}", field=field
        )
    compiled: list[re.Pattern[str]] = []
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            raise ValidationFailed(f"{field}: patterns must be non-empty strings", field=field)
        if len(pattern) > MAX_FILTER_PATTERN_LENGTH:
            raise ValidationFailed(
                f"{field}: pattern {pattern[:50]!r}... is longer than {MAX_FILTER_PATTERN_LENGTH} characters",
                field=field,
            )
        try:
            compiled.append(re.compile(pattern))
        except re.error as error:
            raise ValidationFailed(
                f"{field}: invalid regular expression {pattern!r}: {error}",
                field=field,
                pattern=pattern,
            ) from None
    return tuple(compiled)


def compile_filters(filters: UrlFilters) -> CompiledFilters:
    """Validate and compile every list; raises ValidationFailed naming the list and pattern."""
    return CompiledFilters(
        crawl_include=_compile_list("crawl_include", filters.crawl_include),
        crawl_exclude=_compile_list("crawl_exclude", filters.crawl_exclude),
        index_include=_compile_list("index_include", filters.index_include),
        index_exclude=_compile_list("index_exclude", filters.index_exclude),
    )
