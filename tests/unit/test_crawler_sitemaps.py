"""Sitemap parsing: XML urlset and index, gzip, plain text, lastmod forms and hostile input."""

from __future__ import annotations

import gzip
import zlib
from datetime import UTC, datetime

import pytest

from services.crawler.domain.sitemaps import (
    MAX_SITEMAP_BYTES,
    MAX_SITEMAP_URLS,
    Sitemap,
    SitemapEntry,
    lastmod_bound,
    parse_lastmod,
    parse_sitemap,
)

NS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'

URLSET = f"""<?xml version="1.0" encoding="UTF-8"?>
<urlset {NS}
        xmlns:image="http://www.google.com/schemas/sitemap-image/1.1"
        xmlns:xhtml="http://www.w3.org/1999/xhtml">
  <url>
    <loc>
       https://example.com/
    </loc>
    <lastmod>2024-05-17T10:20:30+02:00</lastmod>
    <changefreq>daily</changefreq>
    <priority>1.0</priority>
  </url>
  <url>
    <loc>https://example.com/a?x=1&amp;y=2</loc>
    <image:image><image:loc>https://cdn.example.com/a.png</image:loc></image:image>
    <xhtml:link rel="alternate" hreflang="de" href="https://example.com/de/a"/>
  </url>
  <url><lastmod>2024-01-01</lastmod></url>
  <url><loc>   </loc></url>
  <url><loc><![CDATA[https://example.com/cdata]]></loc><lastmod>not a date</lastmod></url>
</urlset>
"""

INDEX = f"""<?xml version="1.0" encoding="UTF-8"?>
<sitemapindex {NS}>
  <sitemap><loc>https://example.com/sitemap-1.xml.gz</loc><lastmod>2024-03</lastmod></sitemap>
  <sitemap><loc>https://example.com/sitemap-2.xml</loc></sitemap>
</sitemapindex>
"""


def test_urlset() -> None:
    sitemap = parse_sitemap(URLSET.encode())
    assert sitemap.sitemaps == []
    assert sitemap.urls == [
        SitemapEntry("https://example.com/", datetime(2024, 5, 17, 8, 20, 30, tzinfo=UTC)),
        SitemapEntry("https://example.com/a?x=1&y=2", None),
        SitemapEntry("https://example.com/cdata", None),
    ]


def test_sitemap_index() -> None:
    sitemap = parse_sitemap(INDEX.encode())
    assert sitemap.urls == []
    assert sitemap.sitemaps == [
        SitemapEntry("https://example.com/sitemap-1.xml.gz", datetime(2024, 3, 1, tzinfo=UTC)),
        SitemapEntry("https://example.com/sitemap-2.xml", None),
    ]


def test_without_namespace() -> None:
    body = b"<urlset><url><loc>https://example.com/x</loc><lastmod>2023</lastmod></url></urlset>"
    assert parse_sitemap(body).urls == [
        SitemapEntry("https://example.com/x", datetime(2023, 1, 1, tzinfo=UTC))
    ]
    index = b"<sitemapindex><sitemap><loc>https://example.com/s.xml</loc></sitemap></sitemapindex>"
    assert parse_sitemap(index).sitemaps == [SitemapEntry("https://example.com/s.xml")]


def test_prefixed_namespace_and_foreign_elements() -> None:
    body = (
        b'<sm:urlset xmlns:sm="http://www.sitemaps.org/schemas/sitemap/0.9" xmlns:o="urn:other">'
        b"<sm:url><sm:loc>https://example.com/ok</sm:loc><o:loc>https://example.com/no</o:loc></sm:url>"
        b"<o:url><sm:loc>https://example.com/no2</sm:loc></o:url>"
        b"</sm:urlset>"
    )
    assert parse_sitemap(body).urls == [SitemapEntry("https://example.com/ok")]


def test_gzip() -> None:
    assert parse_sitemap(gzip.compress(URLSET.encode())) == parse_sitemap(URLSET.encode())
    assert parse_sitemap(gzip.compress(INDEX.encode())).sitemaps[0].url.endswith(".xml.gz")
    text = gzip.compress(b"https://example.com/a\nhttps://example.com/b\n")
    assert [entry.url for entry in parse_sitemap(text).urls] == [
        "https://example.com/a",
        "https://example.com/b",
    ]


def test_broken_gzip_is_empty() -> None:
    packed = gzip.compress(URLSET.encode())
    assert parse_sitemap(packed[: len(packed) // 2]) == Sitemap()
    assert parse_sitemap(b"\x1f\x8b" + b"not really gzip") == Sitemap()


def test_gzip_bomb_is_refused() -> None:
    # About 50 KiB on the wire, a little over the 50 MiB cap once inflated.
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"\0" * (1024 * 1024)
    chunks = [compressor.compress(b"<urlset>")]
    for _ in range(MAX_SITEMAP_BYTES // len(block) + 1):
        chunks.append(compressor.compress(block))
    chunks.append(compressor.flush())
    bomb = b"".join(chunks)
    assert len(bomb) < 200 * 1024
    assert parse_sitemap(bomb) == Sitemap()


def test_uncompressed_body_over_the_cap_is_refused() -> None:
    assert parse_sitemap(b"https://example.com/\n" + b" " * MAX_SITEMAP_BYTES) == Sitemap()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024", datetime(2024, 1, 1, tzinfo=UTC)),
        ("2024-05", datetime(2024, 5, 1, tzinfo=UTC)),
        ("2024-05-17", datetime(2024, 5, 17, tzinfo=UTC)),
        ("2024-05-17T10:20Z", datetime(2024, 5, 17, 10, 20, tzinfo=UTC)),
        ("2024-05-17T10:20+02:00", datetime(2024, 5, 17, 8, 20, tzinfo=UTC)),
        ("2024-05-17T10:20:30Z", datetime(2024, 5, 17, 10, 20, 30, tzinfo=UTC)),
        ("2024-05-17T10:20:30.45-05:00", datetime(2024, 5, 17, 15, 20, 30, 450000, tzinfo=UTC)),
        ("2024-05-17T10:20:30.123456789Z", datetime(2024, 5, 17, 10, 20, 30, 123456, tzinfo=UTC)),
        ("2024-05-17T23:30:00-01:00", datetime(2024, 5, 18, 0, 30, tzinfo=UTC)),
        ("2024-05-17T10:20:30+0530", datetime(2024, 5, 17, 4, 50, 30, tzinfo=UTC)),
        ("2024-05-17T10:20:30", datetime(2024, 5, 17, 10, 20, 30, tzinfo=UTC)),
        ("2024-05-17 10:20:30z", datetime(2024, 5, 17, 10, 20, 30, tzinfo=UTC)),
        ("  2024-05-17  ", datetime(2024, 5, 17, tzinfo=UTC)),
        ("yesterday", None),
        ("", None),
        ("24-05-17", None),
        ("2024-13-01", None),
        ("2024-02-30", None),
        ("2024-05-17T25:00Z", None),
        ("2024-05-17T10:20+24:00", None),
        ("2024-05-17T10:20+05:60", None),
        ("2024-05-17T10", None),
        ("0001-01-01T00:00+01:00", None),
        ("0000-01-01", None),
    ],
)
def test_lastmod_forms(text: str, expected: datetime | None) -> None:
    parsed = parse_lastmod(text)
    assert parsed == expected
    if parsed is not None:
        assert parsed.tzinfo is UTC


def test_plain_text_sitemap() -> None:
    body = (
        b"\xef\xbb\xbfhttps://example.com/a\r\n"
        b"\n"
        b"   http://example.com/b   \n"
        b"HTTPS://example.com/c\n"
        b"not a url\n"
        b"ftp://example.com/d\n"
        b"https://example.com/with space\n"
        b"https://example.com/\xff\n"
    )
    urls = [entry.url for entry in parse_sitemap(body).urls]
    assert urls == [
        "https://example.com/a",
        "http://example.com/b",
        "HTTPS://example.com/c",
        "https://example.com/\ufffd",
    ]
    assert parse_sitemap(body).sitemaps == []
    assert parse_sitemap(b"") == Sitemap()
    assert parse_sitemap(b"https://example.com/" + b"a" * 3000) == Sitemap()


@pytest.mark.parametrize(
    "body",
    [
        b"<urlset><url><loc>https://example.com/</loc></url>",
        b"<urlset><url><loc>https://example.com/</loc></urll></urlset>",
        b"<urlset><url><loc>https://example.com/&nbsp;</loc></url></urlset>",
        b"<?xml version='1.0'?><urlset><url><loc>x</loc></url></urlset><extra/>",
        b"<html><body><p>Not found</p></body></html>",
        b'<rss version="2.0"><channel><item><link>https://example.com/</link></item></channel></rss>',
        b"<",
        b"\x00\x01\x02<urlset/>",
    ],
)
def test_malformed_or_foreign_xml_is_empty(body: bytes) -> None:
    assert parse_sitemap(body) == Sitemap()


def test_doctype_html_page_is_empty() -> None:
    assert parse_sitemap(b"<!DOCTYPE html>\n<html><body>oops</body></html>") == Sitemap()


def test_entity_expansion_is_refused() -> None:
    billion_laughs = (
        b'<?xml version="1.0"?>\n'
        b"<!DOCTYPE lolz [\n"
        b' <!ENTITY lol "lol">\n'
        b' <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">\n'
        b' <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">\n'
        b' <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">\n'
        b"]>\n"
        b"<urlset><url><loc>https://example.com/&lol4;</loc></url></urlset>"
    )
    assert parse_sitemap(billion_laughs) == Sitemap()


def test_external_entities_and_doctypes_are_refused() -> None:
    external = (
        b'<?xml version="1.0"?>\n'
        b'<!DOCTYPE urlset [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
        b"<urlset><url><loc>https://example.com/&xxe;</loc></url></urlset>"
    )
    assert parse_sitemap(external) == Sitemap()
    plain_doctype = b'<!DOCTYPE urlset SYSTEM "http://example.com/x.dtd"><urlset><url><loc>https://example.com/</loc></url></urlset>'
    assert parse_sitemap(plain_doctype) == Sitemap()
    # Smuggled past a byte-level check by UTF-16.
    utf16 = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE a [<!ENTITY e "x">]><urlset/>'
    assert parse_sitemap(utf16.encode("utf-16")) == Sitemap()


def test_other_encodings() -> None:
    latin = (
        '<?xml version="1.0" encoding="ISO-8859-1"?>'
        "<urlset><url><loc>https://example.com/caf\u00e9</loc></url></urlset>"
    ).encode("latin-1")
    assert parse_sitemap(latin).urls == [SitemapEntry("https://example.com/caf\u00e9")]
    utf16 = (
        '<?xml version="1.0" encoding="UTF-16"?>'
        "<urlset><url><loc>https://example.com/\u00fc</loc></url></urlset>"
    ).encode("utf-16")
    assert parse_sitemap(utf16).urls == [SitemapEntry("https://example.com/\u00fc")]
    with_bom = b"\xef\xbb\xbf\n  " + URLSET.encode()
    assert len(parse_sitemap(with_bom).urls) == 3


def test_overlong_loc_is_skipped() -> None:
    body = (
        "<urlset>"
        f"<url><loc>https://example.com/{'a' * 3000}</loc></url>"
        "<url><loc>https://example.com/short</loc></url>"
        "</urlset>"
    ).encode()
    assert parse_sitemap(body).urls == [SitemapEntry("https://example.com/short")]


def test_entry_limit_xml() -> None:
    entries = "".join(
        f"<url><loc>https://example.com/{i}</loc></url>" for i in range(MAX_SITEMAP_URLS + 10)
    )
    sitemap = parse_sitemap(f"<urlset {NS}>{entries}</urlset>".encode())
    assert len(sitemap.urls) == MAX_SITEMAP_URLS
    assert sitemap.urls[-1].url == f"https://example.com/{MAX_SITEMAP_URLS - 1}"


def test_entry_limit_text() -> None:
    body = "".join(f"https://example.com/{i}\n" for i in range(MAX_SITEMAP_URLS + 10)).encode()
    sitemap = parse_sitemap(body)
    assert len(sitemap.urls) == MAX_SITEMAP_URLS
    assert sitemap.urls[0].url == "https://example.com/0"


def test_a_bare_date_lastmod_stands_for_the_end_of_its_day() -> None:
    day = parse_lastmod("2026-03-04")
    assert day is not None
    assert lastmod_bound(day) == datetime(2026, 3, 5, tzinfo=UTC)
    moment = parse_lastmod("2026-03-04T10:30:00+02:00")
    assert moment is not None and lastmod_bound(moment) == moment
