"""Crawl settings: tracking parameters, and Kendra's Web Crawler v2 template mapped onto them."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from runtime.errors import ValidationFailed
from services.crawler.domain.settings import (
    CrawlSettings,
    parse_data_source,
    parse_template,
    parse_web_crawler,
)
from services.crawler.domain.urls import DEFAULT_TRACKING_PARAMETERS, Scope, UrlFilters


def web(**extra: Any) -> dict[str, Any]:
    return {
        "WebCrawlerConfiguration": {
            "Urls": {"SeedUrlConfiguration": {"SeedUrls": ["https://example.com/?utm_source=x"]}},
            **extra,
        }
    }


# --- TrackingParameters ------------------------------------------------------------------------


def test_tracking_parameters_default_to_the_built_in_list() -> None:
    settings = parse_web_crawler(web())
    assert settings.tracking_parameters == DEFAULT_TRACKING_PARAMETERS
    assert settings.seeds == ("https://example.com/",)
    assert parse_web_crawler(web(TrackingParameters=None)).tracking_parameters == (
        DEFAULT_TRACKING_PARAMETERS
    )


def test_tracking_parameters_replace_the_default_list_case_insensitively() -> None:
    settings = parse_web_crawler(web(TrackingParameters=["SessionID", "ref"]))
    assert settings.tracking_parameters == frozenset({"sessionid", "ref"})
    # utm_source is no longer stripped, from the seeds either.
    assert settings.seeds == ("https://example.com/?utm_source=x",)


def test_an_empty_tracking_list_keeps_every_parameter() -> None:
    settings = parse_web_crawler(web(TrackingParameters=[]))
    assert settings.tracking_parameters == frozenset()
    assert settings.seeds == ("https://example.com/?utm_source=x",)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("utm_source", "list of strings"),
        ([1], "list of strings"),
        ([""], "1-100 characters"),
        (["x" * 101], "1-100 characters"),
        ([f"p{i}" for i in range(101)], "at most 100"),
    ],
)
def test_tracking_parameters_are_validated(value: object, problem: str) -> None:
    with pytest.raises(ValidationFailed, match=problem):
        parse_web_crawler(web(TrackingParameters=value))


def test_tracking_parameters_at_the_limits_are_accepted() -> None:
    names = [f"{i:03d}" + "x" * 97 for i in range(100)]
    assert len(parse_web_crawler(web(TrackingParameters=names)).tracking_parameters) == 100


# --- the v2 template ---------------------------------------------------------------------------


def template(**properties: Any) -> dict[str, Any]:
    return {
        "TemplateConfiguration": {
            "Template": {
                "version": "1.0.0",
                "type": "WEBCRAWLERV2",
                "syncMode": "FULL_CRAWL",
                "connectionConfiguration": {
                    "repositoryEndpointMetadata": {
                        "seedUrlConnections": [
                            {"seedUrl": "https://docs.example.com/"},
                            {"seedUrl": "https://docs.example.com/guide/"},
                        ],
                        "siteMapUrls": ["https://docs.example.com/sitemap.xml"],
                        "s3SeedUrl": None,
                        "s3SiteMapUrl": None,
                        "authentication": "NoAuthentication",
                    }
                },
                "additionalProperties": properties,
                "repositoryConfigurations": {
                    "webPage": {
                        "fieldMappings": [
                            {
                                "indexFieldName": "_document_title",
                                "indexFieldType": "STRING",
                                "dataSourceFieldName": "title",
                            }
                        ]
                    }
                },
            }
        }
    }


def test_a_minimal_template_gets_kendras_defaults() -> None:
    settings = parse_template(template())
    assert settings == CrawlSettings(
        seeds=("https://docs.example.com/", "https://docs.example.com/guide/"),
        sitemaps=("https://docs.example.com/sitemap.xml",),
        crawl_attachments=False,
    )


def test_template_properties_map_onto_the_crawl_settings() -> None:
    settings = parse_data_source(
        "TEMPLATE",
        template(
            rateLimit="120",
            maxFileSize="2.5",
            crawlDepth="4",
            maxLinksPerUrl=250,
            crawlSubDomain=True,
            crawlAllDomain=False,
            crawlDomainsOnly=False,
            honorRobots="false",
            crawlAttachments=True,
            inclusionURLCrawlPatterns=[r"/docs/"],
            exclusionURLCrawlPatterns=[r"\.zip$"],
            inclusionURLIndexPatterns=[],
            exclusionURLIndexPatterns=[r"/drafts/"],
            inclusionFileIndexPatterns=[],
            exclusionFileIndexPatterns=[],
            implicitWaitDuration=None,
            proxy={},
        ),
    )
    assert (settings.urls_per_minute, settings.max_size_mb, settings.depth) == (120, 2.5, 4)
    assert settings.max_links_per_page == 250 and settings.scope is Scope.SUBDOMAINS
    assert settings.respect_robots is False and settings.crawl_attachments is True
    assert settings.filters == UrlFilters(
        crawl_include=(r"/docs/",), crawl_exclude=(r"\.zip$",), index_exclude=(r"/drafts/",)
    )
    assert parse_template(template(crawlAllDomain=True, crawlSubDomain=True)).scope is (
        Scope.EVERYTHING
    )
    assert parse_template(template(rateLimit="0")).urls_per_minute == 0


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("FULL_CRAWL", "FULL_CRAWL"),
        ("FORCED_FULL_CRAWL", "FORCED_FULL_CRAWL"),
        ("CHANGE_LOG", "FULL_CRAWL"),
    ],
)
def test_template_sync_mode_is_the_default_mode_of_its_syncs(mode: str, expected: str) -> None:
    configuration = template()
    configuration["TemplateConfiguration"]["Template"]["syncMode"] = mode
    assert parse_template(configuration).sync_mode == expected
    assert parse_web_crawler(web()).sync_mode == "FULL_CRAWL"


def _changed(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    configuration = copy.deepcopy(template())
    node = configuration["TemplateConfiguration"]["Template"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return configuration


ENDPOINT = ("connectionConfiguration", "repositoryEndpointMetadata")


@pytest.mark.parametrize(
    ("configuration", "problem"),
    [
        ({}, "TemplateConfiguration.Template"),
        ({"TemplateConfiguration": {"Template": "{}"}}, "TemplateConfiguration.Template"),
        (_changed(("type",), "S3"), "WEBCRAWLERV2"),
        (_changed(("syncMode",), "SOMETIMES"), "syncMode"),
        (_changed(("surprise",), 1), r"unknown members \['surprise'\]"),
        (_changed(("connectionConfiguration",), {}), "repositoryEndpointMetadata"),
        (_changed((*ENDPOINT, "authentication"), "BasicAuth"), "NoAuthentication only"),
        (_changed(("secretArn",), "arn:aws:secretsmanager:x"), "NoAuthentication only"),
        (_changed((*ENDPOINT, "s3SeedUrl"), "s3://bucket/seeds.txt"), "S3 are not supported"),
        (_changed((*ENDPOINT, "seedUrlConnections"), ["https://x/"]), "seedUrl"),
        (_changed((*ENDPOINT, "seedUrlConnections"), [{"seedUrl": "ftp://x/"}]), "http"),
        (_changed((*ENDPOINT, "siteMapUrls"), ["a", "b", "c", "d"]), "at most 3"),
        (_changed((*ENDPOINT, "portal"), "x"), "unknown members"),
        (_changed(("enableIdentityCrawler",), True), "enableIdentityCrawler"),
        (template(crawlDepth="11"), "crawlDepth must be a number from 0 to 10"),
        (template(crawlDepth="2.5"), "whole number"),
        (template(rateLimit="fast"), "rateLimit"),
        (template(maxFileSize="0"), "maxFileSize"),
        (template(maxLinksPerUrl=True), "maxLinksPerUrl"),
        (template(honorRobots="yes"), "honorRobots must be true or false"),
        (template(inclusionURLCrawlPatterns=["(unclosed"]), "unclosed"),
        (template(inclusionFileIndexPatterns=[".*\\.pdf"]), "inclusionFileIndexPatterns"),
        (template(proxy={"host": "proxy.corp", "port": 3128}), "ProxyConfiguration"),
        (template(maxPages="10"), r"unknown members \['maxPages'\]"),
    ],
)
def test_template_members_that_cannot_be_honoured_are_refused(
    configuration: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValidationFailed, match=problem):
        parse_data_source("TEMPLATE", configuration)


def test_seed_urls_or_sitemaps_are_required() -> None:
    configuration = _changed((*ENDPOINT, "seedUrlConnections"), [])
    configuration = copy.deepcopy(configuration)
    node = configuration["TemplateConfiguration"]["Template"]
    node["connectionConfiguration"]["repositoryEndpointMetadata"]["siteMapUrls"] = []
    with pytest.raises(ValidationFailed, match="seedUrlConnections"):
        parse_template(configuration)


def test_the_type_decides_which_configuration_is_read() -> None:
    with pytest.raises(ValidationFailed, match="WebCrawlerConfiguration"):
        parse_data_source("WEBCRAWLER", template())
    with pytest.raises(ValidationFailed, match="TemplateConfiguration"):
        parse_data_source("TEMPLATE", web())
    with pytest.raises(ValidationFailed, match="not supported"):
        parse_data_source("S3", web())
