"""URL normalisation, crawl scope, host keys and URL filters of the crawler."""

from __future__ import annotations

import pytest

from runtime.errors import ValidationFailed
from services.crawler.domain.urls import (
    DEFAULT_TRACKING_PARAMETERS,
    MAX_FILTER_PATTERN_LENGTH,
    MAX_FILTER_PATTERNS,
    MAX_URL_LENGTH,
    Scope,
    UrlFilters,
    compile_filters,
    host_key,
    in_scope,
    normalize_percent_encoding,
    normalize_url,
)

NORMALIZATION_CASES: list[tuple[str, str | None]] = [
    # scheme and host case
    ("HTTP://Example.COM/Path", "http://example.com/Path"),
    ("hTTpS://WWW.Example.Com", "https://www.example.com/"),
    # empty path and lone '?'
    ("http://example.com", "http://example.com/"),
    ("http://example.com?", "http://example.com/"),
    ("http://example.com/a?", "http://example.com/a"),
    # default and explicit ports
    ("http://example.com:80/", "http://example.com/"),
    ("https://example.com:443/x", "https://example.com/x"),
    ("http://example.com:443/", "http://example.com:443/"),
    ("https://example.com:80/", "https://example.com:80/"),
    ("http://example.com:8080/", "http://example.com:8080/"),
    ("http://example.com:08080/", "http://example.com:8080/"),
    ("http://example.com:/", "http://example.com/"),
    ("http://example.com:99999/", None),
    ("http://example.com:0/", None),
    ("http://example.com:12ab/", None),
    # fragments and userinfo
    ("http://example.com/page#section", "http://example.com/page"),
    ("http://example.com/#", "http://example.com/"),
    ("http://user:secret@example.com/", "http://example.com/"),
    ("http://user@Example.com:8080/a", "http://example.com:8080/a"),
    # dot segments
    ("http://example.com/a/./b/../c", "http://example.com/a/c"),
    ("http://example.com/../../a", "http://example.com/a"),
    ("http://example.com/a/b/..", "http://example.com/a/"),
    ("http://example.com/a/.", "http://example.com/a/"),
    ("http://example.com/a//b", "http://example.com/a//b"),
    ("http://example.com/a/%2e%2E/b", "http://example.com/b"),
    # percent-encoding
    ("http://example.com/%7euser/%41%62", "http://example.com/~user/Ab"),
    ("http://example.com/a%2fb%3a", "http://example.com/a%2Fb%3A"),
    ("http://example.com/a b", "http://example.com/a%20b"),
    ("http://example.com/caf\u00e9", "http://example.com/caf%C3%A9"),
    ("http://example.com/100%", "http://example.com/100%25"),
    ("http://example.com/%zz", "http://example.com/%25zz"),
    ("http://example.com/a|b{c}", "http://example.com/a%7Cb%7Bc%7D"),
    ("http://example.com/?q=caf\u00e9 au lait", "http://example.com/?q=caf%C3%A9%20au%20lait"),
    ("http://example.com/?q=a%2bb+c", "http://example.com/?q=a%2Bb+c"),
    ("http://example.com/?x=%26&y=%3D", "http://example.com/?x=%26&y=%3D"),
    # IDN hosts
    ("http://B\u00fccher.Example/", "http://xn--bcher-kva.example/"),
    ("https://\u4f8b\u3048.\u30c6\u30b9\u30c8/path", "https://xn--r8jz45g.xn--zckzah/path"),
    ("http://xn--bcher-kva.example/", "http://xn--bcher-kva.example/"),
    ("http://example.com./", "http://example.com/"),
    # IP hosts
    ("http://[2001:DB8:0:0::1]:8080/", "http://[2001:db8::1]:8080/"),
    ("http://[::1]:80/", "http://[::1]/"),
    ("http://192.168.0.1:80/x", "http://192.168.0.1/x"),
    ("http://[not-ipv6]/", None),
    # tracking parameters and sorting
    ("http://example.com/?utm_source=a&id=1", "http://example.com/?id=1"),
    ("http://example.com/?UTM_Medium=x&gclid=y&fbclid=z", "http://example.com/"),
    ("http://example.com/?b=2&a=2&a=1", "http://example.com/?a=1&a=2&b=2"),
    ("http://example.com/?b=&a", "http://example.com/?a&b="),
    ("http://example.com/?a=&a&a=", "http://example.com/?a=&a&a="),
    ("http://example.com/?a=1&&b=2&", "http://example.com/?a=1&b=2"),
    ("http://example.com/?%75tm_source=x&k=v", "http://example.com/?k=v"),
    ("http://example.com/?x=a=b", "http://example.com/?x=a=b"),
    # whitespace and backslashes as browsers read them
    ("  http://example.com/a \n", "http://example.com/a"),
    ("http://exam\tple.com/", "http://example.com/"),
    ("http:\\\\example.com\\a\\b?x=\\", "http://example.com/a/b?x=%5C"),
    # non-http schemes and hostless URLs
    ("mailto:someone@example.com", None),
    ("javascript:alert(1)", None),
    ("ftp://example.com/file", None),
    ("data:text/plain,hi", None),
    ("file:///etc/passwd", None),
    ("http:///path", None),
    ("http://exa mple.com/", None),
    ("http://-bad-.example.com/", None),
    ("/relative/without/base", None),
    ("//example.com/no-base", None),
    ("", None),
]


@pytest.mark.parametrize(("url", "expected"), NORMALIZATION_CASES)
def test_normalize_url(url: str, expected: str | None) -> None:
    assert normalize_url(url) == expected


def test_normalization_is_idempotent() -> None:
    for url, expected in NORMALIZATION_CASES:
        if expected is not None:
            assert normalize_url(expected) == expected, url


RELATIVE_CASES = [
    ("g", "http://a.example/b/c/g"),
    ("./g", "http://a.example/b/c/g"),
    ("g/", "http://a.example/b/c/g/"),
    ("/g", "http://a.example/g"),
    ("//other.example/g", "http://other.example/g"),
    ("?y", "http://a.example/b/c/d;p?y"),
    ("g?y", "http://a.example/b/c/g?y"),
    ("#s", "http://a.example/b/c/d;p?q"),
    ("..", "http://a.example/b/"),
    ("../g", "http://a.example/b/g"),
    ("../../../g", "http://a.example/g"),
    ("https://secure.example/x", "https://secure.example/x"),
    ("mailto:x@a.example", None),
    ("javascript:void(0)", None),
    ("..\\g", "http://a.example/b/g"),
]


@pytest.mark.parametrize(("relative", "expected"), RELATIVE_CASES)
def test_relative_resolution(relative: str, expected: str | None) -> None:
    assert normalize_url(relative, base="http://a.example/b/c/d;p?q") == expected


def test_custom_tracking_parameters() -> None:
    url = "http://example.com/?SessionID=1&utm_source=x"
    assert normalize_url(url, tracking=frozenset({"sessionid"})) == (
        "http://example.com/?utm_source=x"
    )
    assert normalize_url(url, tracking=frozenset()) == url
    assert "utm_source" in DEFAULT_TRACKING_PARAMETERS


def test_length_limit() -> None:
    prefix = "http://example.com/"
    fits = prefix + "a" * (MAX_URL_LENGTH - len(prefix))
    assert normalize_url(fits) == fits
    assert normalize_url(fits + "a") is None
    # Escaping can push a URL past the limit.
    assert normalize_url(prefix + "\u00e9" * (MAX_URL_LENGTH // 4)) is None
    assert normalize_url(prefix + "a" * 1_000_000) is None
    # Dropped tracking parameters do not count.
    assert normalize_url(fits + "?utm_source=" + "x" * 100) == fits


def test_percent_encoding_helper() -> None:
    assert normalize_percent_encoding("%7e%2f%c3%a9 \u00e9%") == "~%2F%C3%A9%20%C3%A9%25"


@pytest.mark.parametrize(
    ("url", "in_scope_expected"),
    [
        ("https://www.example.com/a", True),
        ("http://www.example.com/a", True),
        ("https://WWW.EXAMPLE.COM:443/a", True),
        ("https://www.example.com:8443/a", False),
        ("https://example.com/a", False),
        ("https://blog.example.com/a", False),
        ("https://other.org/", False),
        ("https://docs.internal:8443/guide", True),
        ("https://docs.internal/guide", False),
        ("ftp://www.example.com/a", False),
    ],
)
def test_scope_host_only(url: str, in_scope_expected: bool) -> None:
    seeds = ["https://www.example.com/", "https://docs.internal:8443/start"]
    assert in_scope(url, seeds, Scope.HOST_ONLY) is in_scope_expected


@pytest.mark.parametrize(
    ("url", "in_scope_expected"),
    [
        ("https://www.example.com/", True),
        ("https://example.com/", True),
        ("https://blog.example.com/", True),
        ("https://a.b.example.com:8080/", True),
        ("https://EXAMPLE.com/", True),
        ("https://notexample.com/", False),
        ("https://example.com.evil.org/", False),
        ("https://example.org/", False),
        ("https://team.wiki.test/", True),
        ("https://wiki.test/", False),
        ("https://www.wiki.test/", False),
    ],
)
def test_scope_subdomains(url: str, in_scope_expected: bool) -> None:
    seeds = ["https://www.example.com/start", "https://team.wiki.test/"]
    assert in_scope(url, seeds, Scope.SUBDOMAINS) is in_scope_expected


def test_scope_subdomains_edge_cases() -> None:
    # "www." is only dropped when a dotted domain remains.
    assert in_scope("https://www.com/", ["https://www.com/"], Scope.SUBDOMAINS)
    assert not in_scope("https://other.com/", ["https://www.com/"], Scope.SUBDOMAINS)
    # IP literals have no subdomains.
    assert in_scope("http://10.0.0.1:8080/", ["http://10.0.0.1/"], Scope.SUBDOMAINS)
    assert not in_scope("http://10.0.0.2/", ["http://10.0.0.1/"], Scope.SUBDOMAINS)
    # IDN seeds and URLs compare in their ASCII form.
    assert in_scope(
        "https://shop.xn--bcher-kva.example/",
        ["https://www.b\u00fccher.example/"],
        Scope.SUBDOMAINS,
    )


def test_scope_everything() -> None:
    assert in_scope("https://anything.org/x", ["https://example.com/"], Scope.EVERYTHING)
    assert in_scope("http://10.0.0.1:9/x", [], Scope.EVERYTHING)
    assert not in_scope("mailto:a@example.com", ["https://example.com/"], Scope.EVERYTHING)
    assert not in_scope("not a url", ["https://example.com/"], Scope.EVERYTHING)


def test_scope_ignores_bad_seeds_and_matches_kendra_names() -> None:
    assert not in_scope("https://example.com/", ["", "mailto:x@example.com"], Scope.HOST_ONLY)
    assert in_scope("https://example.com/", ["junk", "https://example.com"], Scope.HOST_ONLY)
    assert {scope.value for scope in Scope} == {"HOST_ONLY", "SUBDOMAINS", "EVERYTHING"}
    assert Scope("SUBDOMAINS") is Scope.SUBDOMAINS


def test_host_key() -> None:
    assert host_key("https://Example.com/a?b") == "example.com:443"
    assert host_key("http://example.com/") == "example.com:80"
    assert host_key("http://example.com:8080/") == "example.com:8080"
    assert host_key("https://example.com:80/") == "example.com:80"
    assert host_key("http://[::1]/") == "[::1]:80"
    assert host_key("https://b\u00fccher.example/") == "xn--bcher-kva.example:443"
    with pytest.raises(ValidationFailed):
        host_key("mailto:x@example.com")


def test_filters_empty_allow_everything() -> None:
    filters = compile_filters(UrlFilters())
    assert filters.may_crawl("https://example.com/a")
    assert filters.may_index("https://example.com/a")


def test_filters_include_exclude_precedence() -> None:
    filters = compile_filters(
        UrlFilters(
            crawl_include=(r"/docs/", r"/blog/"),
            crawl_exclude=(r"/docs/private/",),
            index_include=(r"\.html$",),
            index_exclude=(r"draft",),
        )
    )
    assert filters.may_crawl("https://example.com/docs/a")
    assert filters.may_crawl("https://example.com/blog/b")
    assert not filters.may_crawl("https://example.com/shop/")
    # Exclude wins even though an include pattern matches too.
    assert not filters.may_crawl("https://example.com/docs/private/x")
    # re.search semantics: patterns need not match from the start.
    assert filters.may_index("https://example.com/shop/page.html")
    assert not filters.may_index("https://example.com/docs/a")
    assert not filters.may_index("https://example.com/docs/draft.html")


def test_filters_exclude_only() -> None:
    filters = compile_filters(UrlFilters(crawl_exclude=(r"\?sort=",), index_exclude=(r"/tag/",)))
    assert filters.may_crawl("https://example.com/list")
    assert not filters.may_crawl("https://example.com/list?sort=asc")
    assert filters.may_crawl("https://example.com/tag/x")
    assert not filters.may_index("https://example.com/tag/x")


def test_filters_reject_invalid_patterns() -> None:
    with pytest.raises(ValidationFailed) as caught:
        compile_filters(UrlFilters(index_exclude=("ok", "(unclosed")))
    assert "index_exclude" in caught.value.message
    assert "(unclosed" in caught.value.message
    assert caught.value.details["pattern"] == "(unclosed"

    with pytest.raises(ValidationFailed, match="crawl_include"):
        compile_filters(UrlFilters(crawl_include=("[a-",)))
    with pytest.raises(ValidationFailed, match="crawl_exclude"):
        compile_filters(UrlFilters(crawl_exclude=("*bad",)))
    with pytest.raises(ValidationFailed, match="index_include"):
        compile_filters(UrlFilters(index_include=("",)))


def test_filters_limits() -> None:
    compile_filters(UrlFilters(crawl_include=("a",) * MAX_FILTER_PATTERNS))
    with pytest.raises(ValidationFailed, match="at most"):
        compile_filters(UrlFilters(crawl_include=("a",) * (MAX_FILTER_PATTERNS + 1)))
    compile_filters(UrlFilters(crawl_exclude=("a" * MAX_FILTER_PATTERN_LENGTH,)))
    with pytest.raises(ValidationFailed, match="longer than"):
        compile_filters(UrlFilters(crawl_exclude=("a" * (MAX_FILTER_PATTERN_LENGTH + 1),)))
