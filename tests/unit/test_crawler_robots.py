"""robots.txt parsing and matching, after RFC 9309 and Google's documented examples."""

from __future__ import annotations

import pytest

from services.crawler.domain.robots import (
    ALLOW_ALL,
    DISALLOW_ALL,
    MAX_CRAWL_DELAY,
    MAX_ROBOTS_BYTES,
    RobotsRules,
    parse_robots,
    robots_for_status,
)

UA = "TrellisBot/1.0 (+https://trellis.example/bot)"

RFC_EXAMPLE = """\
User-Agent: *
Disallow: *.gif$
Disallow: /example/
Allow: /publications/

User-Agent: foobot
Disallow:/
Allow:/example/page.html
Allow:/example/allowed.gif

User-Agent: barbot
User-Agent: bazbot
Disallow: /example/page.html

User-Agent: quxbot

EOF
"""


def rules_for(body: str, user_agent: str = UA) -> RobotsRules:
    return parse_robots(body, user_agent)


def test_rfc_example_star_group() -> None:
    rules = rules_for(RFC_EXAMPLE, "otherbot/2.0")
    assert not rules.allowed("/image.gif")
    assert not rules.allowed("/example/")
    assert not rules.allowed("/example/anything")
    assert rules.allowed("/publications/paper.pdf")
    assert rules.allowed("/image.gif?x=1")  # '$' anchors at the very end
    assert rules.allowed("/")


def test_rfc_example_foobot() -> None:
    rules = rules_for(RFC_EXAMPLE, "FooBot/1.2")
    assert rules.allowed("/example/page.html")
    assert rules.allowed("/example/allowed.gif")
    assert not rules.allowed("/example/other.html")
    assert not rules.allowed("/publications/")
    assert not rules.allowed("/")


@pytest.mark.parametrize("agent", ["barbot", "BAZBOT/3"])
def test_rfc_example_group_with_several_agents(agent: str) -> None:
    rules = rules_for(RFC_EXAMPLE, agent)
    assert not rules.allowed("/example/page.html")
    # Only the matched group applies, not the '*' group as well.
    assert rules.allowed("/example/other.html")
    assert rules.allowed("/image.gif")


def test_rfc_example_empty_group_allows_everything() -> None:
    rules = rules_for(RFC_EXAMPLE, "quxbot")
    assert rules.rules == ()
    assert rules.allowed("/example/page.html")


def test_rfc_longest_match() -> None:
    rules = rules_for(
        "User-Agent: trellisbot\nAllow: /example/page/\nDisallow: /example/page/disallowed.gif\n"
    )
    assert rules.allowed("/example/page/")
    assert rules.allowed("/example/page/ok.gif")
    assert not rules.allowed("/example/page/disallowed.gif")


@pytest.mark.parametrize(
    ("body", "path", "expected"),
    [
        ("allow: /p\ndisallow: /", "/page", True),
        ("allow: /folder\ndisallow: /folder", "/folder/page", True),
        ("disallow: /folder\nallow: /folder", "/folder/page", True),
        ("allow: /page\ndisallow: /*.htm", "/page.htm", False),
        ("allow: /page\ndisallow: /*.ph", "/page.php", True),
        ("allow: /$\ndisallow: /", "/", True),
        ("allow: /$\ndisallow: /", "/page.htm", False),
        ("disallow: /private\nallow: /private/public", "/private/public/x", True),
        ("disallow: /private\nallow: /private/public", "/private/secret", False),
    ],
)
def test_precedence(body: str, path: str, expected: bool) -> None:
    assert rules_for("user-agent: *\n" + body).allowed(path) is expected


@pytest.mark.parametrize(
    ("pattern", "matching", "not_matching"),
    [
        (
            "/fish",
            ["/fish", "/fish.html", "/fish/salmon.html", "/fishheads", "/fish.php?id=anything"],
            ["/Fish.asp", "/catfish", "/?id=fish", "/desert/fish"],
        ),
        ("/fish*", ["/fish", "/fish.html", "/fishheads/yummy.html"], ["/Fish.asp", "/catfish"]),
        (
            "/fish/",
            ["/fish/", "/fish/?id=anything", "/fish/salmon.htm"],
            ["/fish", "/fish.html", "/animals/fish/", "/Fish/Salmon.asp"],
        ),
        (
            "/*.php",
            [
                "/index.php",
                "/folder/filename.php?parameters",
                "/folder/any.php.file.html",
                "/a.php/",
            ],
            ["/", "/windows.PHP"],
        ),
        (
            "/*.php$",
            ["/filename.php", "/folder/filename.php"],
            ["/filename.php?parameters", "/filename.php/", "/filename.php5", "/windows.PHP"],
        ),
        ("/fish*.php", ["/fish.php", "/fishheads/catfish.php?parameters"], ["/Fish.PHP"]),
        ("*/private/", ["/a/private/", "/private/x"], ["/privately/"]),
        ("/a*b*c$", ["/abc", "/a-b-c", "/aXbYbZc"], ["/abcd", "/acb"]),
        ("/**x", ["/x", "/yyx"], ["/yyy"]),
        ("/search?q=", ["/search?q=term"], ["/search", "/search?page=2"]),
        ("/a$b", ["/a$b", "/a%24b"], ["/a", "/ab"]),
    ],
)
def test_wildcards(pattern: str, matching: list[str], not_matching: list[str]) -> None:
    rules = rules_for(f"User-agent: *\nDisallow: {pattern}\n")
    for path in matching:
        assert not rules.allowed(path), (pattern, path)
    for path in not_matching:
        assert rules.allowed(path), (pattern, path)


def test_wildcard_matching_does_not_backtrack_exponentially() -> None:
    rules = rules_for("User-agent: *\nDisallow: /" + "a*" * 200 + "b\n")
    assert rules.allowed("/" + "a" * 5000)


def test_full_urls_and_percent_encoding() -> None:
    rules = rules_for(
        "User-agent: *\n"
        "Disallow: /caf\u00e9\n"
        "Disallow: /%7Euser/\n"
        "Disallow: /foo/bar?baz=https://foo.bar\n"
        "Disallow: /foo/bar/%62%61%7A\n"
        "Disallow: /space here\n"
    )
    assert not rules.allowed("https://example.com/caf%C3%A9/menu")
    assert not rules.allowed("https://example.com/caf%c3%a9")
    assert not rules.allowed("/caf\u00e9")
    assert not rules.allowed("http://example.com/~user/x")
    assert not rules.allowed("/%7euser/x")
    assert not rules.allowed("/foo/bar?baz=https%3A%2F%2Ffoo.bar")
    assert not rules.allowed("/foo/bar/baz")
    assert not rules.allowed("/space%20here")
    assert rules.allowed("https://example.com/cafe")
    assert rules.allowed("https://example.com")
    # The fragment never reaches the server.
    assert rules.allowed("https://example.com/ok#/caf\u00e9")


def test_robots_txt_is_always_allowed() -> None:
    rules = rules_for("User-agent: *\nDisallow: /\n")
    assert rules.allowed("/robots.txt")
    assert rules.allowed("https://example.com/robots.txt")
    assert not rules.allowed("/robots.txt.bak")
    assert DISALLOW_ALL.allowed("/robots.txt")


def test_empty_disallow_allows_everything() -> None:
    rules = rules_for("User-agent: *\nDisallow:\n")
    assert rules.rules == ()
    assert rules.allowed("/anything")


def test_group_selection_longest_prefix_of_product_token() -> None:
    body = (
        "User-agent: *\nDisallow: /all\n\n"
        "User-agent: trellis\nDisallow: /short\n\n"
        "User-agent: TrellisBot\nDisallow: /long\n\n"
        "User-agent: trellisbot-news\nDisallow: /news\n"
    )
    rules = rules_for(body, "TrellisBot/1.0")
    assert not rules.allowed("/long")
    assert rules.allowed("/short")
    assert rules.allowed("/all")
    assert rules.allowed("/news")
    assert not rules_for(body, "trellis-lite/2").allowed("/short")
    assert not rules_for(body, "Googlebot/2.1").allowed("/all")


def test_agent_line_versions_and_case_are_ignored() -> None:
    rules = rules_for("USER-AGENT: trellisbot/2.0\nDISALLOW: /x\n")
    assert not rules.allowed("/x")


def test_groups_for_the_same_agent_merge() -> None:
    body = (
        "User-agent: trellisbot\nDisallow: /a\nCrawl-delay: 2\n\n"
        "User-agent: *\nDisallow: /star\n\n"
        "User-agent: TRELLISBOT\nDisallow: /b\nAllow: /a/open\nCrawl-delay: 5\n"
    )
    rules = rules_for(body)
    assert not rules.allowed("/a")
    assert not rules.allowed("/b")
    assert rules.allowed("/a/open")
    assert rules.allowed("/star")
    assert rules.crawl_delay == 5.0


def test_no_matching_group_and_no_star_allows_everything() -> None:
    rules = rules_for("User-agent: otherbot\nDisallow: /\nSitemap: https://e.com/s.xml\n")
    assert rules.allowed("/anything")
    assert rules.sitemaps == ("https://e.com/s.xml",)


def test_crawl_delay() -> None:
    assert rules_for("User-agent: *\nCrawl-delay: 1.5\n").crawl_delay == 1.5
    assert rules_for("User-agent: *\nCrawl-delay: 10\n").crawl_delay == 10.0
    assert rules_for("User-agent: *\nCrawl-delay: 99999\n").crawl_delay == MAX_CRAWL_DELAY
    assert rules_for("User-agent: *\nCrawl-delay: inf\n").crawl_delay == MAX_CRAWL_DELAY
    for bad in ("-1", "nan", "soon", "", "5s"):
        assert rules_for(f"User-agent: *\nCrawl-delay: {bad}\n").crawl_delay is None, bad
    assert rules_for("User-agent: otherbot\nCrawl-delay: 3\n").crawl_delay is None
    assert rules_for("Disallow: /\n").crawl_delay is None


def test_sitemaps_are_global_and_deduplicated() -> None:
    body = (
        "Sitemap: https://example.com/first.xml\n"
        "User-agent: otherbot\n"
        "sitemap:https://example.com/second.xml.gz\n"
        "Disallow: /\n"
        "SITEMAP: https://example.com/first.xml\n"
        "Sitemap:\n"
        "User-agent: trellisbot\n"
        "Allow: /\n"
        "Sitemap: https://example.com/third.txt # a comment\n"
    )
    rules = rules_for(body)
    assert rules.sitemaps == (
        "https://example.com/first.xml",
        "https://example.com/second.xml.gz",
        "https://example.com/third.txt",
    )


def test_blank_lines_comments_crlf_and_bom() -> None:
    body = (
        "\ufeff# robots for example.com\r\n"
        "User-agent: trellisbot # us\r\n"
        "\r\n"
        "User-agent: otherbot\r\n"
        "\r\n"
        "# rules follow\r\n"
        "Disallow: /secret # keep out\r\n"
        "\r\n"
        "Allow: /secret/open\r"
        "Disallow: /tmp\n"
    )
    for source in (body, body.encode("utf-8")):
        for agent in ("trellisbot", "otherbot"):
            rules = parse_robots(source, agent)
            assert not rules.allowed("/secret/x"), agent
            assert rules.allowed("/secret/open"), agent
            assert not rules.allowed("/tmp"), agent
            assert rules.allowed("/"), agent


def test_malformed_lines_are_skipped() -> None:
    body = (
        "Disallow: /before-any-agent\n"
        "this line is nonsense\n"
        "User-agent: *\n"
        ": no key\n"
        "Disallow /missing-colon\n"
        "Dissalow: /typo\n"
        "Noindex: /ignored\n"
        "Host: example.com\n"
        "Disallow: private\n"
        "\x00\xff garbage\n"
    )
    rules = rules_for(body)
    assert rules.allowed("/before-any-agent")
    assert not rules.allowed("/missing-colon")
    assert not rules.allowed("/typo")
    assert rules.allowed("/ignored")
    assert not rules.allowed("/private")


def test_invalid_utf8_and_binary_do_not_raise() -> None:
    rules = parse_robots(b"User-agent: *\nDisallow: /\xff\xfe\nAllow: /ok\n", UA)
    assert rules.allowed("/ok")
    assert parse_robots(bytes(range(256)) * 10, UA).allowed("/")
    assert parse_robots("", UA) == ALLOW_ALL


def test_size_cap_drops_the_rest() -> None:
    head = "User-agent: *\nDisallow: /early\n"
    late = "Disallow: /late-but-within\n"
    cut = "Disallow: /after-the-cap-cut-midway\n"
    # The cap falls right after "Disallow: /after" in the last line.
    padding = "#" + "x" * (MAX_ROBOTS_BYTES - len(head) - len(late) - len("Disallow: /after") - 2)
    body = head + padding + "\n" + late + cut + "Disallow: /beyond\n"
    assert (
        len((head + padding + "\n" + late).encode()) + len("Disallow: /after") == MAX_ROBOTS_BYTES
    )
    for source in (body, body.encode()):
        rules = parse_robots(source, UA)
        assert not rules.allowed("/early")
        assert not rules.allowed("/late-but-within")
        # The line cut by the cap is dropped rather than read as a shorter, broader rule.
        assert rules.allowed("/after")
        assert rules.allowed("/after-the-cap-cut-midway")
        assert rules.allowed("/beyond")


def test_status_handling() -> None:
    assert robots_for_status(200) is None
    assert robots_for_status(204) is None
    for status in (400, 401, 403, 404, 410, 451):
        assert robots_for_status(status) is ALLOW_ALL, status
    for status in (500, 502, 503, 599, 429, 0, -1, 100):
        assert robots_for_status(status) is DISALLOW_ALL, status
    # A redirect status reaching us means the chain was abandoned: treated as unavailable.
    assert robots_for_status(310) is ALLOW_ALL


def test_allow_all_and_disallow_all() -> None:
    assert ALLOW_ALL.allowed("/anything")
    assert ALLOW_ALL.crawl_delay is None
    assert ALLOW_ALL.sitemaps == ()
    assert not DISALLOW_ALL.allowed("/")
    assert not DISALLOW_ALL.allowed("https://example.com/a?b")
