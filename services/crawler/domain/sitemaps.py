"""Sitemap parsing (sitemaps.org XML urlset and sitemapindex, gzip, plain text), hardened for untrusted input."""

from __future__ import annotations

import gzip
import io
import re
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Final, NoReturn
from xml.parsers import expat

__all__ = [
    "MAX_SITEMAP_BYTES",
    "MAX_SITEMAP_URLS",
    "Sitemap",
    "SitemapEntry",
    "lastmod_bound",
    "parse_lastmod",
    "parse_sitemap",
]

MAX_SITEMAP_BYTES: Final = 50 * 1024 * 1024
MAX_SITEMAP_URLS: Final = 50_000
# The sitemaps.org protocol caps URLs at 2048 characters; longer <loc> values are junk.
_MAX_LOC_LENGTH: Final = 2048

_GZIP_MAGIC: Final = b"\x1f\x8b"
_UTF8_BOM: Final = b"\xef\xbb\xbf"
_UTF16_BOMS: Final = (b"\xff\xfe", b"\xfe\xff")
_W3C_DATETIME: Final = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?\s*([Zz]|[+-]\d{2}(?::?\d{2})?)?)?)?)?"
)
_TEXT_URL: Final = re.compile(r"https?://\S+", re.IGNORECASE)


@dataclass(frozen=True)
class SitemapEntry:
    url: str
    lastmod: datetime | None = None  # timezone-aware, UTC


@dataclass(frozen=True)
class Sitemap:
    """Page URLs of a urlset, or child sitemaps of a sitemap index."""

    urls: list[SitemapEntry] = field(default_factory=list)
    sitemaps: list[SitemapEntry] = field(default_factory=list)


def parse_lastmod(text: str) -> datetime | None:
    """A W3C datetime (YYYY, YYYY-MM, YYYY-MM-DD, with time and zone) in UTC; None if invalid.

    A time without a zone is taken as UTC.
    """
    match = _W3C_DATETIME.fullmatch(text.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        offset = _parse_zone(zone)
        moment = datetime(
            int(year),
            int(month or 1),
            int(day or 1),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=offset,
        )
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def lastmod_bound(lastmod: datetime) -> datetime:
    """The latest moment a parsed lastmod may stand for: a bare date (UTC midnight) is its day's end.

    A page changed later on the day a sitemap dates it must not pass for unchanged.
    """
    if lastmod.astimezone(UTC).time() == datetime.min.time():
        return lastmod + timedelta(days=1)
    return lastmod


def _parse_zone(zone: str | None) -> timezone:
    if zone is None or zone in ("Z", "z"):
        return UTC
    digits = zone[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:] or 0)
    if minutes >= 60:
        raise ValueError("zone minutes out of range")
    offset = timedelta(hours=hours, minutes=minutes)
    return timezone(-offset if zone.startswith("-") else offset)


def _gunzip(data: bytes) -> bytes | None:
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
            # One byte past the cap is enough to tell a bomb from a file exactly at the cap.
            output = stream.read(MAX_SITEMAP_BYTES + 1)
    except (OSError, EOFError, zlib.error):
        return None
    return output if len(output) <= MAX_SITEMAP_BYTES else None


class _Rejected(Exception):
    """A DTD or entity declaration: refused to rule out entity expansion and external entities."""


class _Stop(Exception):
    """Nothing more to collect: MAX_SITEMAP_URLS entries are read, or the root is not a sitemap."""


class _Collector:
    """Expat callbacks that collect <loc> and <lastmod> of <url> and <sitemap> elements."""

    def __init__(self) -> None:
        self.urls: list[SitemapEntry] = []
        self.sitemaps: list[SitemapEntry] = []
        self._depth = 0
        self._namespace: str | None = None  # of the root element; None until a sitemap root
        self._entry: str | None = None  # "url" or "sitemap" while inside one
        self._field: str | None = None  # "loc" or "lastmod" while inside one
        self._text: list[str] = []
        self._values: dict[str, str] = {}

    def start(self, name: str, _attributes: dict[str, str]) -> None:
        namespace, _, local = name.rpartition(" ")
        depth = self._depth
        self._depth += 1
        if depth == 0:
            if local not in ("urlset", "sitemapindex"):
                raise _Stop
            self._namespace = namespace
        elif namespace != self._namespace:
            return
        elif depth == 1 and local in ("url", "sitemap"):
            self._entry = local
            self._values = {}
        elif depth == 2 and self._entry is not None and local in ("loc", "lastmod"):
            self._field = local
            self._text = []

    def end(self, name: str) -> None:
        self._depth -= 1
        if self._depth == 2 and self._field is not None:
            self._values[self._field] = "".join(self._text).strip()
            self._field = None
        elif self._depth == 1 and self._entry is not None:
            self._emit(self._entry)
            self._entry = None

    def text(self, data: str) -> None:
        if self._field is not None:
            self._text.append(data)

    def _emit(self, kind: str) -> None:
        loc = self._values.get("loc", "")
        if not loc or len(loc) > _MAX_LOC_LENGTH:
            return
        lastmod = self._values.get("lastmod")
        entry = SitemapEntry(url=loc, lastmod=parse_lastmod(lastmod) if lastmod else None)
        (self.urls if kind == "url" else self.sitemaps).append(entry)
        if len(self.urls) + len(self.sitemaps) >= MAX_SITEMAP_URLS:
            raise _Stop


def _reject(*_args: object) -> NoReturn:
    raise _Rejected


def _parse_xml(data: bytes) -> Sitemap:
    collector = _Collector()
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _reject
    parser.EntityDeclHandler = _reject
    parser.UnparsedEntityDeclHandler = _reject
    parser.ExternalEntityRefHandler = _reject
    parser.StartElementHandler = collector.start
    parser.EndElementHandler = collector.end
    parser.CharacterDataHandler = collector.text
    parser.buffer_text = True
    try:
        parser.Parse(data, True)
    except _Stop:
        pass
    except (_Rejected, expat.ExpatError, ValueError, LookupError):
        return Sitemap()
    return Sitemap(urls=collector.urls, sitemaps=collector.sitemaps)


def _parse_text(data: bytes) -> Sitemap:
    urls: list[SitemapEntry] = []
    for line in data.decode("utf-8", "replace").removeprefix("\ufeff").splitlines():
        line = line.strip()
        if len(line) <= _MAX_LOC_LENGTH and _TEXT_URL.fullmatch(line):
            urls.append(SitemapEntry(url=line))
            if len(urls) >= MAX_SITEMAP_URLS:
                break
    return Sitemap(urls=urls)


def parse_sitemap(data: bytes) -> Sitemap:
    """URLs and child sitemaps listed in a fetched sitemap body.

    Gzip is recognised by its magic bytes. A body that is not XML is read as a plain-text
    sitemap (one http(s) URL per line). Malformed XML, a DTD, output past MAX_SITEMAP_BYTES
    or a broken gzip stream give an empty Sitemap; entries past MAX_SITEMAP_URLS are dropped.
    """
    if data.startswith(_GZIP_MAGIC):
        unpacked = _gunzip(data)
        if unpacked is None:
            return Sitemap()
        data = unpacked
    if len(data) > MAX_SITEMAP_BYTES:
        return Sitemap()
    if data.startswith(_UTF16_BOMS):
        return _parse_xml(data)
    # Generators often emit whitespace before the XML declaration, which expat rejects.
    trimmed = data.removeprefix(_UTF8_BOM).lstrip()
    if trimmed.startswith(b"<"):
        return _parse_xml(trimmed)
    return _parse_text(data)
