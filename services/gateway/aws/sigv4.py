"""AWS Signature Version 4 verification for requests to AWS JSON 1.1 endpoints."""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, unquote_plus

from services.gateway.aws.errors import AwsError

ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"

MISSING_AUTH = "MissingAuthenticationTokenException"
INCOMPLETE = "IncompleteSignatureException"
INVALID = "InvalidSignatureException"
UNRECOGNIZED = "UnrecognizedClientException"

SIGNATURE_MISMATCH_MESSAGE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)
UNRECOGNIZED_CLIENT_MESSAGE = "The security token included in the request is invalid."

_AMZ_DATE_RE = re.compile(r"\d{8}T\d{6}Z")
_SCOPE_DATE_RE = re.compile(r"\d{8}")
_AUTH_PARAMS = ("Credential", "SignedHeaders", "Signature")


@dataclass(frozen=True)
class SignedRequest:
    method: str
    path: str
    query: str
    headers: Sequence[tuple[str, str]]
    body: bytes


@dataclass(frozen=True)
class VerifiedCaller:
    access_key_id: str
    region: str
    service: str


class SigV4Error(AwsError):
    """A request failed SigV4 verification; `code` is the AWS error code to return."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(code, message, status)


@dataclass(frozen=True)
class _Authorization:
    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/{TERMINATOR}"


@functools.lru_cache(maxsize=1024)
def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The key derived for one day, region and service (cached, as SDKs cache it: four HMACs
    per request otherwise; a key is only reached through a secret the caller already holds)."""
    key = _hmac(f"AWS4{secret}".encode(), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, TERMINATOR)


def verify(
    request: SignedRequest,
    lookup_secret: Callable[[str], str | None],
    now: datetime,
    max_skew: timedelta = timedelta(minutes=15),
) -> VerifiedCaller:
    """Verify a SigV4 header-signed request; raise SigV4Error describing the first failure."""
    headers = _header_map(request.headers)
    auth = _parse_authorization(headers)
    amz_date = _single(headers, "x-amz-date")
    if amz_date is None:
        raise _incomplete("Authorization header requires existence of a 'X-Amz-Date' header.")
    signed_at = _parse_amz_date(amz_date)
    if amz_date[:8] != auth.date:
        raise _incomplete(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{auth.date}' != '{amz_date[:8]}', from '{amz_date}'."
        )

    _check_skew(signed_at, now, max_skew)

    secret = lookup_secret(auth.access_key_id)
    if secret is None:
        raise SigV4Error(UNRECOGNIZED, UNRECOGNIZED_CLIENT_MESSAGE, 400)

    payload_hash = hashlib.sha256(request.body).hexdigest()
    claimed_hash = _single(headers, "x-amz-content-sha256")
    if claimed_hash is not None and claimed_hash != UNSIGNED_PAYLOAD:
        if not hmac.compare_digest(claimed_hash.encode(), payload_hash.encode()):
            raise SigV4Error(
                INVALID,
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
                400,
            )

    canonical = _canonical_request(request, headers, auth.signed_headers, payload_hash)
    string_to_sign = "\n".join(
        (ALGORITHM, amz_date, auth.scope, hashlib.sha256(canonical.encode()).hexdigest())
    )
    key = signing_key(secret, auth.date, auth.region, auth.service)
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), auth.signature.encode()):
        raise SigV4Error(INVALID, SIGNATURE_MISMATCH_MESSAGE, 400)
    return VerifiedCaller(auth.access_key_id, auth.region, auth.service)


def _canonical_request(
    request: SignedRequest,
    headers: dict[str, list[str]],
    signed_headers: Sequence[str],
    payload_hash: str,
) -> str:
    """The SigV4 canonical request (non-S3 rules) over `signed_headers` of `headers`."""
    canonical_headers = "".join(
        f"{name}:{','.join(_trimall(v) for v in headers.get(name, []))}\n"
        for name in signed_headers
    )
    return "\n".join(
        (
            request.method.upper(),
            _canonical_uri(request.path),
            _canonical_query(request.query),
            canonical_headers,
            ";".join(signed_headers),
            payload_hash,
        )
    )


def _canonical_uri(raw_path: str) -> str:
    if raw_path == "/":  # every AWS JSON call
        return raw_path
    # The raw path is already percent-encoded on the wire; non-S3 services encode it once
    # more (so '%' becomes '%25'), which is what SDKs sign.
    return quote(_remove_dot_segments(raw_path) or "/", safe="/~")


def _canonical_query(raw_query: str) -> str:
    if not raw_query:
        return ""
    pairs: list[tuple[str, str]] = []
    for item in raw_query.split("&"):
        if not item:
            continue
        key, _, value = item.partition("=")
        # SDKs sign '%20' but put '+' on the wire (form encoding), so '+' must decode to space.
        pairs.append((_rfc3986(unquote_plus(key)), _rfc3986(unquote_plus(value))))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def _parse_authorization(headers: dict[str, list[str]]) -> _Authorization:
    values = headers.get("authorization")
    if not values:
        raise SigV4Error(MISSING_AUTH, "Missing Authentication Token", 403)
    if len(values) > 1:
        raise _incomplete("Request must contain exactly one Authorization header.")
    header = values[0].strip()
    algorithm, _, rest = header.partition(" ")
    if algorithm != ALGORITHM:
        raise _incomplete(f"Unsupported AWS 'algorithm': '{algorithm}'; expected '{ALGORITHM}'.")

    params: dict[str, str] = {}
    for part in rest.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in _AUTH_PARAMS:
            raise _incomplete(f"Authorization header has an unexpected component '{name}'.")
        if name in params:
            raise _incomplete(f"Authorization header repeats the '{name}' parameter.")
        params[name] = value.strip()
    missing = [name for name in _AUTH_PARAMS if not params.get(name)]
    if missing:
        raise _incomplete(
            " ".join(f"Authorization header requires '{name}' parameter." for name in missing)
        )

    scope = params["Credential"].split("/")
    if len(scope) != 5 or not all(scope):
        raise _incomplete(
            "Credential must have the form "
            "'<access key>/<YYYYMMDD>/<region>/<service>/aws4_request'."
        )
    access_key_id, date, region, service, terminator = scope
    if not _SCOPE_DATE_RE.fullmatch(date):
        raise _incomplete(f"Credential scope date must be YYYYMMDD, got '{date}'.")
    if terminator != TERMINATOR:
        raise _incomplete(
            f"Credential should be scoped with a valid terminator: '{TERMINATOR}', "
            f"not '{terminator}'."
        )

    names = params["SignedHeaders"].split(";")
    if not all(names):
        raise _incomplete("SignedHeaders must be a ';'-separated list of header names.")
    signed_headers = tuple(sorted({name.strip().lower() for name in names}))
    if "host" not in signed_headers:
        raise _incomplete("'Host' must be a 'SignedHeader' in the AWS Authorization.")

    return _Authorization(
        access_key_id=access_key_id,
        date=date,
        region=region,
        service=service,
        signed_headers=signed_headers,
        signature=params["Signature"],
    )


def _parse_amz_date(value: str) -> datetime:
    try:
        if not _AMZ_DATE_RE.fullmatch(value):
            raise ValueError(value)
        # The fields by position: strptime costs more than the rest of the check together.
        return datetime(
            int(value[0:4]),
            int(value[4:6]),
            int(value[6:8]),
            int(value[9:11]),
            int(value[11:13]),
            int(value[13:15]),
            tzinfo=UTC,
        )
    except ValueError:
        raise _incomplete(
            f"Date must be in ISO-8601 'basic format'. Got '{value}'. "
            "See http://en.wikipedia.org/wiki/ISO_8601"
        ) from None


def _check_skew(signed_at: datetime, now: datetime, max_skew: timedelta) -> None:
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    earliest = now - max_skew
    latest = now + max_skew
    if signed_at < earliest:
        raise SigV4Error(
            INVALID,
            f"Signature expired: {_fmt(signed_at)} is now earlier than {_fmt(earliest)} "
            f"({_fmt(now)} - {_describe(max_skew)}.)",
            400,
        )
    if signed_at > latest:
        raise SigV4Error(
            INVALID,
            f"Signature not yet current: {_fmt(signed_at)} is still later than "
            f"{_fmt(latest)} ({_fmt(now)} + {_describe(max_skew)}.)",
            400,
        )


def _header_map(headers: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for name, value in headers:
        result.setdefault(name.strip().lower(), []).append(value)
    return result


def _single(headers: dict[str, list[str]], name: str) -> str | None:
    values = headers.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise _incomplete(f"Request must contain exactly one '{name}' header.")
    return values[0].strip()


def _remove_dot_segments(path: str) -> str:
    # Mirrors the SDKs: RFC 3986 dot-segment removal, plus AWS's collapsing of empty segments.
    if not path:
        return ""
    out: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if out:
                out.pop()
        else:
            out.append(segment)
    first = "/" if path.startswith("/") else ""
    last = "/" if path.endswith("/") and out else ""
    return first + "/".join(out) + last


def _rfc3986(value: str) -> str:
    return quote(value, safe="-_.~")


def _trimall(value: str) -> str:
    return " ".join(value.split())


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def _fmt(moment: datetime) -> str:
    return moment.strftime(AMZ_DATE_FORMAT)


def _describe(skew: timedelta) -> str:
    seconds = int(skew.total_seconds())
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} sec"


def _incomplete(message: str) -> SigV4Error:
    return SigV4Error(INCOMPLETE, message, 400)
