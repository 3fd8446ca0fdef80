"""Crawler credentials: auth and proxy settings, secret names and values, scrubbing, cookie jars."""

from __future__ import annotations

import http.cookiejar
import logging
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from runtime.errors import ValidationFailed
from runtime.logs import configure_logging, redact_text
from runtime.sealing import load_or_create_fernet
from services.crawler.adapters.fetcher import (
    cookies_from_json,
    cookies_to_json,
    scrub,
)
from services.crawler.domain.secrets import (
    is_reference,
    parse_secret_string,
    secret_arn,
    secret_name,
)
from services.crawler.domain.settings import (
    BasicAuthentication,
    ProxySettings,
    credential_references,
    parse_web_crawler,
    with_credentials,
)

ARN = "arn:aws:secretsmanager:us-east-1:000000000000:secret:site/login"


def web(**extra: Any) -> dict[str, Any]:
    return {
        "WebCrawlerConfiguration": {
            "Urls": {"SeedUrlConfiguration": {"SeedUrls": ["https://example.com/"]}},
            **extra,
        }
    }


def test_no_auth_and_no_proxy_by_default() -> None:
    settings = parse_web_crawler(web())
    assert settings.basic_auth == () and settings.proxy is None and settings.form_login is None
    assert settings.secret_references == ()


def test_basic_authentication_per_host_and_port() -> None:
    settings = parse_web_crawler(
        web(
            AuthenticationConfiguration={
                "BasicAuthentication": [
                    {"Host": "Intranet.Example.COM", "Port": 443, "Credentials": ARN},
                    {"Host": "10.0.0.5", "Port": 8080, "Credentials": "other+name@x"},
                    {"Host": "::1", "Port": 80, "Credentials": ARN},
                ]
            }
        )
    )
    assert settings.basic_auth == (
        BasicAuthentication("intranet.example.com:443", ARN),
        BasicAuthentication("10.0.0.5:8080", "other+name@x"),
        BasicAuthentication("[::1]:80", ARN),
    )
    assert settings.secret_references == (ARN, "other+name@x")


def test_proxy_with_and_without_credentials() -> None:
    plain = parse_web_crawler(web(ProxyConfiguration={"Host": "proxy.corp", "Port": 3128}))
    assert plain.proxy == ProxySettings("proxy.corp", 3128)
    assert plain.proxy.url == "http://proxy.corp:3128"
    secured = parse_web_crawler(
        web(ProxyConfiguration={"Host": "proxy.corp", "Port": 3128, "Credentials": "proxy"})
    )
    assert secured.proxy == ProxySettings("proxy.corp", 3128, "proxy")
    assert secured.secret_references == ("proxy",)


def test_form_authentication() -> None:
    settings = parse_web_crawler(
        web(
            AuthenticationConfiguration={
                "FormAuthentication": {
                    "LoginUrl": "https://example.com/login",
                    "UsernameField": "user",
                    "PasswordField": "pass",
                    "Credentials": "site/login",
                    "ExtraFields": {"csrf": "t0ken", "remember": "1"},
                }
            }
        )
    )
    form = settings.form_login
    assert form is not None and form.login_url == "https://example.com/login"
    assert form.extra_fields == (("csrf", "t0ken"), ("remember", "1"))
    assert settings.secret_references == ("site/login",)


BAD_CONFIGURATIONS: list[tuple[dict[str, Any], str]] = [
    ({"AuthenticationConfiguration": []}, "must be an object"),
    ({"AuthenticationConfiguration": {"DigestAuthentication": []}}, "unknown members"),
    ({"AuthenticationConfiguration": {"BasicAuthentication": {}}}, "must be a list"),
    (
        {"AuthenticationConfiguration": {"BasicAuthentication": [{"Host": "a", "Port": 1}]}},
        "needs ['Credentials']",
    ),
    (
        {
            "AuthenticationConfiguration": {
                "BasicAuthentication": [{"Host": "a", "Port": 0, "Credentials": "s"}]
            }
        },
        "Port must be an integer from 1 to 65535",
    ),
    (
        {
            "AuthenticationConfiguration": {
                "BasicAuthentication": [{"Host": "a b/c", "Port": 80, "Credentials": "s"}]
            }
        },
        "is not a host name",
    ),
    (
        {
            "AuthenticationConfiguration": {
                "BasicAuthentication": [
                    {"Host": "a", "Port": 80, "Credentials": "s"},
                    {"Host": "A", "Port": 80, "Credentials": "t"},
                ]
            }
        },
        "a:80 appears twice",
    ),
    (
        {
            "AuthenticationConfiguration": {
                "BasicAuthentication": [{"Host": "a", "Port": 80, "Credentials": "bad name!"}]
            }
        },
        "secret ARN or name",
    ),
    (
        {
            "AuthenticationConfiguration": {
                "BasicAuthentication": [
                    {"Host": f"h{i}", "Port": 80, "Credentials": "s"} for i in range(11)
                ]
            }
        },
        "at most 10",
    ),
    ({"ProxyConfiguration": {"Host": "p"}}, "needs ['Port']"),
    ({"ProxyConfiguration": {"Host": "p", "Port": 3128, "User": "x"}}, "unknown members"),
    ({"ProxyConfiguration": {"Host": "p", "Port": True}}, "Port must be an integer"),
    ({"ProxyConfiguration": {"Host": "u:p@proxy", "Port": 3128}}, "is not a host name"),
    ({"ProxyConfiguration": "http://proxy:3128"}, "must be an object"),
    (
        {
            "AuthenticationConfiguration": {
                "FormAuthentication": {
                    "LoginUrl": "ftp://x/login",
                    "UsernameField": "u",
                    "PasswordField": "p",
                    "Credentials": "s",
                }
            }
        },
        "LoginUrl must be an http(s) URL",
    ),
    (
        {
            "AuthenticationConfiguration": {
                "FormAuthentication": {
                    "LoginUrl": "https://x/login",
                    "UsernameField": "u",
                    "PasswordField": "u",
                    "Credentials": "s",
                }
            }
        },
        "must differ",
    ),
    (
        {
            "AuthenticationConfiguration": {
                "FormAuthentication": {
                    "LoginUrl": "https://x/login",
                    "UsernameField": "u",
                    "PasswordField": "p",
                    "Credentials": "s",
                    "ExtraFields": {"p": "override"},
                }
            }
        },
        "must not repeat",
    ),
    (
        {
            "AuthenticationConfiguration": {
                "FormAuthentication": {"LoginUrl": "https://x/login", "Credentials": "s"}
            }
        },
        "needs ['PasswordField', 'UsernameField']",
    ),
]


@pytest.mark.parametrize(("extra", "problem"), BAD_CONFIGURATIONS)
def test_bad_auth_and_proxy_configurations_are_refused(extra: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationFailed) as raised:
        parse_web_crawler(web(**extra))
    assert problem in raised.value.message


def test_references_are_found_and_replaced_without_touching_the_rest() -> None:
    configuration = web(
        ProxyConfiguration={"Host": "p", "Port": 1, "Credentials": "proxy"},
        AuthenticationConfiguration={
            "BasicAuthentication": [{"Host": "a", "Port": 80, "Credentials": "site"}],
            "FormAuthentication": {
                "LoginUrl": "https://a/login",
                "UsernameField": "u",
                "PasswordField": "p",
                "Credentials": ARN,
            },
        },
    )
    assert credential_references(configuration) == {"proxy", "site", ARN}
    replaced = with_credentials(configuration, lambda r: f"arn:{r}")
    assert credential_references(replaced) == {"arn:proxy", "arn:site", f"arn:{ARN}"}
    assert credential_references(configuration) == {"proxy", "site", ARN}  # a copy
    assert credential_references({"WebCrawlerConfiguration": {"ProxyConfiguration": 3}}) == set()


def test_secret_names_and_arns() -> None:
    assert secret_arn("eu-west-1", "123456789012", "a/b") == (
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:a/b"
    )
    assert secret_name("site/login", "us-east-1", "000000000000") == "site/login"
    assert secret_name(ARN, "us-east-1", "000000000000") == "site/login"
    with pytest.raises(ValidationFailed, match="not a secret of this Trellis"):
        secret_name(ARN, "eu-west-1", "000000000000")
    with pytest.raises(ValidationFailed, match="neither a secret name"):
        secret_name("has space", "us-east-1", "000000000000")
    assert is_reference("a+b=c.d@e-f_g/h") and is_reference(ARN)
    assert not is_reference("x" * 129) and not is_reference("arn:aws:s3:::bucket")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("hunter2-not-json", "must be a JSON object"),
        ('["hunter2-list"]', "must be a JSON object"),
        ('{"username": "bob"}', '"password"'),
        ('{"username": "", "password": "hunter2-empty-user"}', '"username"'),
        ('{"username": "bob", "password": 42424242}', '"password"'),
        ('{"username": "bob", "password": "' + "x" * 9000 + '"}', "larger than 8192"),
    ],
)
def test_secret_values_are_checked_without_quoting_them(text: str, problem: str) -> None:
    with pytest.raises(ValidationFailed) as raised:
        parse_secret_string(text)
    assert problem in raised.value.message
    assert "hunter2" not in raised.value.message and "42424242" not in raised.value.message


def test_credentials_do_not_print_the_password() -> None:
    credentials = parse_secret_string('{"username": "bob", "password": "hunter2-secret"}')
    assert credentials.username == "bob" and credentials.password == "hunter2-secret"
    assert "hunter2" not in repr(credentials)


def test_error_text_is_scrubbed_of_credentials() -> None:
    text = scrub(
        "ProxyError: http://bob:hunter2-pw@proxy:3128 said no to hunter2-pw; "
        "Authorization: Basic Ym9iOmh1bnRlcjI=",
        ["hunter2-pw", "ab"],
    )
    assert "hunter2" not in text and "Ym9iOmh1bnRlcjI=" not in text
    assert "proxy:3128" in text
    assert "ab" in scrub("about", ["ab"])  # too short to be worth hiding everywhere
    assert redact_text("nats://u:p4ss@h:4222") == "nats://[redacted]@h:4222"


def test_login_cookies_survive_a_round_trip() -> None:
    jar = http.cookiejar.CookieJar()
    jar.set_cookie(
        http.cookiejar.Cookie(
            0,
            "session",
            "s-1",
            None,
            False,
            "example.com",
            False,
            False,
            "/",
            True,
            True,
            None,
            False,
            None,
            None,
            {},
        )
    )
    cookies = cookies_from_json(cookies_to_json(httpx.Cookies(jar)))
    request = httpx.Request("GET", "https://example.com/page")
    cookies.set_cookie_header(request)
    assert request.headers["Cookie"] == "session=s-1"
    plain = httpx.Request("GET", "http://example.com/page")
    cookies.set_cookie_header(plain)  # a Secure cookie stays off plain HTTP
    assert "Cookie" not in plain.headers
    elsewhere = httpx.Request("GET", "https://other.example/")
    cookies.set_cookie_header(elsewhere)
    assert "Cookie" not in elsewhere.headers


def test_sealing_key_is_generated_once_private_or_taken_from_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "crawler" / "secrets.key"
    first = load_or_create_fernet(path, None)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = first.encrypt(b"x")
    assert load_or_create_fernet(path, None).decrypt(token) == b"x"
    configured = load_or_create_fernet(path, SecretStr(path.read_text().strip()))
    assert configured.decrypt(token) == b"x"
    other = tmp_path / "other.key"
    load_or_create_fernet(other, SecretStr(""))  # empty counts as unset
    assert other.exists()


def test_logging_keeps_httpcore_traces_of_headers_out_even_at_debug() -> None:
    root, access = logging.getLogger(), logging.getLogger("uvicorn.access")
    handlers, level, access_disabled = root.handlers[:], root.level, access.disabled
    try:
        configure_logging("crawler", "DEBUG")
        assert not logging.getLogger("httpcore").isEnabledFor(logging.DEBUG)
        assert logging.getLogger("services.crawler").isEnabledFor(logging.DEBUG)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.getLogger("httpcore").setLevel(logging.NOTSET)
        access.disabled = access_disabled
