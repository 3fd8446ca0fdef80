"""Unit tests for SigV4 verification against requests signed by botocore."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.config import Config
from botocore.credentials import Credentials

from services.gateway.aws.errors import AwsError
from services.gateway.aws.sigv4 import (
    SignedRequest,
    SigV4Error,
    VerifiedCaller,
    signing_key,
    verify,
)

ENDPOINT = "http://127.0.0.1:8080"
ACCESS_KEY = "AKIDTRELLISEXAMPLE"
SECRET = "s3cr3t/Very+Distinctive+Secret+Value0123456789"
OTHER_ACCESS_KEY = "AKIDSOMEONEELSE"
REGION = "us-east-1"
SERVICE = "frauddetector"
TARGET = "AWSHawksNestServiceFacade.GetKMSEncryptionKey"
JSON_CT = "application/x-amz-json-1.1"
BODY = b"{}"

# botocore's clock is naive UTC; the verifier's clock is aware UTC.
SIGNED_AT = datetime(2026, 1, 1, 0, 30, 0)
NOW = SIGNED_AT.replace(tzinfo=UTC)

MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)


def lookup(key_id: str) -> str | None:
    return {ACCESS_KEY: SECRET, OTHER_ACCESS_KEY: "another-secret"}.get(key_id)


def sign(
    *,
    method: str = "POST",
    url: str = ENDPOINT + "/",
    body: bytes = BODY,
    headers: Sequence[tuple[str, str]] = (
        ("Content-Type", JSON_CT),
        ("X-Amz-Target", TARGET),
    ),
    params: Sequence[tuple[str, str]] | None = None,
    at: datetime = SIGNED_AT,
    access_key: str = ACCESS_KEY,
    secret: str = SECRET,
    region: str = REGION,
    service: str = SERVICE,
) -> SignedRequest:
    """Sign like a boto3 JSON client does, and return what the gateway would receive."""
    request = AWSRequest(method=method, url=url, data=body, params=list(params or []))
    for name, value in headers:
        request.headers[name] = value  # HTTPMessage appends, so repeats are kept
    with mock.patch("botocore.auth.get_current_datetime", return_value=at):
        SigV4Auth(Credentials(access_key, secret), service, region).add_auth(request)
    wire = urlsplit(request.prepare().url)
    received = list(request.headers.items())
    if not any(name.lower() == "host" for name, _ in received):
        received.append(("Host", wire.netloc))
    return SignedRequest(
        method=method, path=wire.path, query=wire.query, headers=received, body=body
    )


def set_header(request: SignedRequest, name: str, value: str | None) -> SignedRequest:
    kept = [(n, v) for n, v in request.headers if n.lower() != name.lower()]
    if value is not None:
        kept.append((name, value))
    return replace(request, headers=kept)


def header(request: SignedRequest, name: str) -> str:
    return next(v for n, v in request.headers if n.lower() == name.lower())


def expect_error(
    request: SignedRequest,
    code: str,
    status: int = 400,
    *,
    now: datetime = NOW,
    lookup_secret: Callable[[str], str | None] = lookup,
) -> SigV4Error:
    with pytest.raises(SigV4Error) as info:
        verify(request, lookup_secret, now)
    err = info.value
    assert (err.code, err.status) == (code, status), err.message
    assert SECRET not in str(err)
    assert SECRET not in repr(err)
    assert SECRET not in err.message
    return err


# --- accepted requests ---------------------------------------------------------------------


def test_valid_frauddetector_request_returns_caller() -> None:
    caller = verify(sign(), lookup, NOW)
    assert caller == VerifiedCaller(access_key_id=ACCESS_KEY, region=REGION, service=SERVICE)


def test_region_and_service_come_from_credential_scope() -> None:
    request = sign(region="eu-west-3", service="kendra")
    assert verify(request, lookup, NOW) == VerifiedCaller(ACCESS_KEY, "eu-west-3", "kendra")


def test_query_string_and_nested_path() -> None:
    request = sign(
        method="GET",
        url=ENDPOINT + "/models/my%20model/v1",
        body=b"",
        headers=[("Accept", "application/json")],
        params=[("b", "2"), ("a", "z"), ("a", "y x"), ("c", "~*+/"), ("empty", "")],
    )
    assert request.path == "/models/my%20model/v1"
    assert "a=y+x" in request.query  # form-encoded on the wire, %20 in the signature
    assert verify(request, lookup, NOW).access_key_id == ACCESS_KEY


def test_query_string_embedded_in_url() -> None:
    request = sign(url=ENDPOINT + "/jobs/list?max=10&after=abc&after=a-b_c.d~e")
    assert request.query == "max=10&after=abc&after=a-b_c.d~e"
    assert verify(request, lookup, NOW).service == SERVICE


def test_dot_segments_and_double_slashes_normalised_like_sdk() -> None:
    request = sign(url=ENDPOINT + "/a/./b/../c//d/")
    assert request.path == "/a/./b/../c//d/"
    assert verify(request, lookup, NOW).region == REGION


def test_header_whitespace_case_and_repeats_canonicalised() -> None:
    request = sign(
        headers=[
            ("Content-Type", JSON_CT),
            ("X-Amz-Target", TARGET),
            ("X-Custom", "  spaced    out\tvalue  "),
            ("X-Repeat", "one"),
            ("X-Repeat", "two"),
        ]
    )
    assert [v for n, v in request.headers if n == "X-Repeat"] == ["one", "two"]
    # Header order is free except among repeats of one name, whose order is signed.
    hosts = [(n.upper(), v) for n, v in request.headers if n.lower() == "host"]
    rest = [(n.upper(), v) for n, v in request.headers if n.lower() != "host"]
    assert verify(replace(request, headers=hosts + rest), lookup, NOW).service == SERVICE
    swapped = [
        (n, {"one": "two", "two": "one"}[v]) if n == "X-Repeat" else (n, v)
        for n, v in request.headers
    ]
    expect_error(replace(request, headers=swapped), "InvalidSignatureException")


def test_unsigned_header_may_change() -> None:
    request = set_header(sign(), "User-Agent", "curl/8.0")
    assert verify(request, lookup, NOW).access_key_id == ACCESS_KEY


def test_correct_content_sha256_header_accepted() -> None:
    digest = hashlib.sha256(BODY).hexdigest()
    request = sign(
        headers=[
            ("Content-Type", JSON_CT),
            ("X-Amz-Target", TARGET),
            ("X-Amz-Content-SHA256", digest),
        ]
    )
    assert verify(request, lookup, NOW).access_key_id == ACCESS_KEY


def test_naive_now_is_treated_as_utc() -> None:
    assert verify(sign(), lookup, SIGNED_AT).access_key_id == ACCESS_KEY


@pytest.mark.parametrize("offset", [timedelta(minutes=14), timedelta(minutes=-14), timedelta(0)])
def test_skew_within_window_accepted(offset: timedelta) -> None:
    assert verify(sign(), lookup, NOW + offset).access_key_id == ACCESS_KEY


def test_skew_exactly_at_limit_accepted() -> None:
    assert verify(sign(), lookup, NOW + timedelta(minutes=15)).access_key_id == ACCESS_KEY


# --- real boto3 clients --------------------------------------------------------------------


class _Raw:
    def stream(self) -> Iterator[bytes]:
        yield b"{}"


@pytest.mark.parametrize(
    ("service", "call"),
    [
        ("frauddetector", lambda c: c.get_kms_encryption_key()),
        ("kendra", lambda c: c.list_indices()),
        ("sagemaker", lambda c: c.list_models()),
    ],
)
def test_boto3_client_requests_verify(service: str, call: Callable[[Any], Any]) -> None:
    captured: list[Any] = []

    def capture(request: Any, **_: Any) -> AWSResponse:
        captured.append(request)
        return AWSResponse(request.url, 200, {"Content-Type": JSON_CT}, _Raw())

    client = boto3.client(
        service,
        endpoint_url=ENDPOINT,
        region_name="us-west-2",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )
    client.meta.events.register("before-send", capture)
    with mock.patch("botocore.auth.get_current_datetime", return_value=SIGNED_AT):
        call(client)

    (sent,) = captured
    wire = urlsplit(sent.url)
    headers = [(n, v.decode() if isinstance(v, bytes) else v) for n, v in sent.headers.items()]
    headers.append(("Host", wire.netloc))
    body = sent.body if isinstance(sent.body, bytes) else (sent.body or "").encode()
    request = SignedRequest(sent.method, wire.path, wire.query, headers, body)
    assert json.loads(body) is not None
    assert verify(request, lookup, NOW) == VerifiedCaller(ACCESS_KEY, "us-west-2", service)
    expect_error(replace(request, body=body + b" "), "InvalidSignatureException")


# --- rejected requests ---------------------------------------------------------------------


def test_wrong_secret_rejected() -> None:
    err = expect_error(sign(secret="not-the-secret"), "InvalidSignatureException")
    assert err.message == MISMATCH


def test_unknown_access_key_rejected() -> None:
    err = expect_error(sign(access_key="AKIDUNKNOWN"), "UnrecognizedClientException")
    assert err.message == "The security token included in the request is invalid."


def test_other_users_key_with_our_signature_rejected() -> None:
    request = sign()
    forged = set_header(
        request,
        "Authorization",
        header(request, "Authorization").replace(ACCESS_KEY, OTHER_ACCESS_KEY),
    )
    expect_error(forged, "InvalidSignatureException")


def test_tampered_body_rejected() -> None:
    request = sign(body=b'{"a":1}')
    err = expect_error(replace(request, body=b'{"a":2}'), "InvalidSignatureException")
    assert err.message == MISMATCH


def test_tampered_signed_header_rejected() -> None:
    request = set_header(sign(), "X-Amz-Target", "AWSHawksNestServiceFacade.DeleteDetector")
    expect_error(request, "InvalidSignatureException")


def test_removed_signed_header_rejected() -> None:
    expect_error(set_header(sign(), "Content-Type", None), "InvalidSignatureException")


@pytest.mark.parametrize(
    ("field", "value"),
    [("method", "PUT"), ("path", "/other"), ("query", "x=1")],
)
def test_tampered_request_line_rejected(field: str, value: str) -> None:
    changes: dict[str, Any] = {field: value}
    expect_error(replace(sign(), **changes), "InvalidSignatureException")


def test_tampered_signature_rejected() -> None:
    request = sign()
    auth = header(request, "Authorization")
    flipped = auth[:-1] + ("0" if auth[-1] != "0" else "1")
    expect_error(set_header(request, "Authorization", flipped), "InvalidSignatureException")


def test_non_ascii_signature_rejected_without_crashing() -> None:
    request = sign()
    auth = header(request, "Authorization")
    forged = auth.rsplit("=", 1)[0] + "=\u00e9" * 64
    expect_error(set_header(request, "Authorization", forged), "InvalidSignatureException")


def test_missing_authorization_rejected() -> None:
    err = expect_error(
        set_header(sign(), "Authorization", None), "MissingAuthenticationTokenException", 403
    )
    assert err.message == "Missing Authentication Token"


def _rewrite_auth(fn: Callable[[str], str]) -> SignedRequest:
    request = sign()
    return set_header(request, "Authorization", fn(header(request, "Authorization")))


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda a: "Bearer abc", "Unsupported AWS 'algorithm'"),
        (lambda a: "AWS4-HMAC-SHA256", "requires 'Credential' parameter"),
        (lambda a: a.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512"), "AWS4-HMAC-SHA512"),
        (lambda a: a.split(", Signature=")[0], "requires 'Signature' parameter"),
        (lambda a: a.replace("SignedHeaders=", "Signed="), "unexpected component 'Signed'"),
        (lambda a: a.replace(", SignedHeaders=", ", Signature=x, SignedHeaders="), "repeats"),
        (lambda a: a.replace(f"/{REGION}/", "/"), "Credential must have the form"),
        (lambda a: a.replace(f"{ACCESS_KEY}/", "/"), "Credential must have the form"),
        (lambda a: a.replace("aws4_request", "aws5_request"), "valid terminator"),
        (lambda a: a.replace("/20260101/", "/2026011/"), "YYYYMMDD"),
        (lambda a: a.replace("/20260101/", "/20251231/"), "Date in Credential scope"),
        (lambda a: a.replace("host;", ""), "'Host' must be a 'SignedHeader'"),
        (lambda a: a.replace("host;", "host;;"), "SignedHeaders"),
    ],
)
def test_malformed_authorization_rejected(mutate: Callable[[str], str], fragment: str) -> None:
    err = expect_error(_rewrite_auth(mutate), "IncompleteSignatureException")
    assert fragment in err.message


def test_duplicate_authorization_rejected() -> None:
    request = sign()
    doubled = replace(
        request, headers=[*request.headers, ("authorization", header(request, "Authorization"))]
    )
    expect_error(doubled, "IncompleteSignatureException")


def test_missing_amz_date_rejected() -> None:
    err = expect_error(set_header(sign(), "X-Amz-Date", None), "IncompleteSignatureException")
    assert "X-Amz-Date" in err.message


@pytest.mark.parametrize("value", ["2026-01-01T00:30:00Z", "20260101T003000", "20261301T003000Z"])
def test_malformed_amz_date_rejected(value: str) -> None:
    err = expect_error(set_header(sign(), "X-Amz-Date", value), "IncompleteSignatureException")
    assert "ISO-8601" in err.message


def test_amz_date_not_matching_credential_day_rejected() -> None:
    request = set_header(sign(), "X-Amz-Date", "20260102T003000Z")
    err = expect_error(request, "IncompleteSignatureException")
    assert "'20260101' != '20260102'" in err.message


def test_expired_signature_rejected_with_aws_wording() -> None:
    request = sign(at=datetime(2026, 1, 1, 0, 0, 0))
    err = expect_error(request, "InvalidSignatureException", now=NOW)
    assert err.message == (
        "Signature expired: 20260101T000000Z is now earlier than 20260101T001500Z "
        "(20260101T003000Z - 15 min.)"
    )


def test_skew_16_minutes_past_rejected() -> None:
    err = expect_error(sign(), "InvalidSignatureException", now=NOW + timedelta(minutes=16))
    assert err.message.startswith("Signature expired: 20260101T003000Z is now earlier than")


def test_skew_16_minutes_future_rejected() -> None:
    err = expect_error(sign(), "InvalidSignatureException", now=NOW - timedelta(minutes=16))
    assert err.message == (
        "Signature not yet current: 20260101T003000Z is still later than 20260101T002900Z "
        "(20260101T001400Z + 15 min.)"
    )


def test_custom_max_skew() -> None:
    with pytest.raises(SigV4Error) as info:
        verify(sign(), lookup, NOW + timedelta(seconds=31), max_skew=timedelta(seconds=30))
    assert info.value.message.endswith("- 30 sec.)")


def test_content_sha256_mismatch_rejected() -> None:
    wrong = hashlib.sha256(b"something else").hexdigest()
    request = sign(
        headers=[
            ("Content-Type", JSON_CT),
            ("X-Amz-Target", TARGET),
            ("X-Amz-Content-SHA256", wrong),
        ]
    )
    err = expect_error(request, "InvalidSignatureException")
    assert "x-amz-content-sha256" in err.message


def test_unsigned_payload_is_not_honoured() -> None:
    # The canonical request always carries the real body hash, so a client that signed the
    # literal UNSIGNED-PAYLOAD cannot have the body swapped under it.
    request = sign(
        headers=[
            ("Content-Type", JSON_CT),
            ("X-Amz-Target", TARGET),
            ("X-Amz-Content-SHA256", "UNSIGNED-PAYLOAD"),
        ]
    )
    err = expect_error(request, "InvalidSignatureException")
    assert err.message == MISMATCH


# --- check order ---------------------------------------------------------------------------


def _must_not_be_called(_: str) -> str | None:
    raise AssertionError("lookup_secret called")


def test_parse_error_reported_before_skew() -> None:
    request = set_header(sign(), "X-Amz-Date", None)
    expect_error(
        request,
        "IncompleteSignatureException",
        now=NOW + timedelta(days=1),
        lookup_secret=_must_not_be_called,
    )


def test_skew_reported_before_key_lookup() -> None:
    request = sign(access_key="AKIDUNKNOWN")
    err = expect_error(
        request,
        "InvalidSignatureException",
        now=NOW + timedelta(hours=1),
        lookup_secret=_must_not_be_called,
    )
    assert err.message.startswith("Signature expired")


def test_unknown_key_reported_before_signature() -> None:
    request = sign(access_key="AKIDUNKNOWN", secret="whatever")
    expect_error(replace(request, body=b"tampered"), "UnrecognizedClientException")


# --- helpers -------------------------------------------------------------------------------


def test_signing_key_matches_aws_documented_example() -> None:
    key = signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215", "us-east-1", "iam")
    assert key.hex() == "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"


def test_sigv4_error_is_aws_error() -> None:
    err = expect_error(sign(secret="nope"), "InvalidSignatureException")
    assert isinstance(err, AwsError)
    assert err.status == 400


def test_secret_never_in_any_error_text() -> None:
    failures = [
        sign(secret=SECRET + "x"),
        replace(sign(), body=SECRET.encode()),
        set_header(sign(), "X-Amz-Target", SECRET),
        sign(at=datetime(2025, 1, 1)),
    ]
    for request in failures:
        with pytest.raises(SigV4Error) as info:
            verify(request, lookup, NOW)
        assert SECRET not in str(info.value)
        assert SECRET not in repr(info.value)
        assert SECRET not in repr(info.value.args)
