"""Feature engineering for Fraud Detector models: AFD event variables to LightGBM inputs."""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final, Literal

import numpy as np
import phonenumbers
import polars as pl
import ua_parser

from services.fraud.domain.aggregates import (
    DEFAULT_WINDOWS,
    EntityHistory,
    aggregate_feature_names,
    aggregate_feature_variables,
    batch_aggregates,
    parse_amount_expr,
)

DataType = Literal["STRING", "INTEGER", "FLOAT", "BOOLEAN", "DATETIME"]
ModelType = Literal["ONLINE_FRAUD_INSIGHTS", "TRANSACTION_FRAUD_INSIGHTS"]
Kind = Literal[
    "email", "ip", "card_bin", "phone", "useragent", "text", "categorical", "numeric", "datetime",
    "boolean", "excluded",
]  # fmt: skip

AUTO: Final = "auto"
EVENT_COLUMNS: Final = (
    "EVENT_ID",
    "EVENT_TIMESTAMP",
    "ENTITY_TYPE",
    "ENTITY_ID",
    "EVENT_LABEL",
    "LABEL_TIMESTAMP",
)
_FORMAT_VERSION = 1

# Variable types that never become model inputs. AFD documents ORDER_ID as an identifier and
# FRAUD_LABEL as the label: an identifier is unique per event (it cannot generalise to new
# events, and its ordering can leak when ids are issued over time) and the label is the answer.
# FINGERPRINT is a device id: as a raw value it is the same problem, but TFI entity aggregates
# ("has this entity used this device before") still use it.
EXCLUDED_VARIABLE_TYPES: Final[Mapping[str, str]] = {
    "ORDER_ID": "an order identifier is unique per event, so it cannot generalise to new events",
    "FRAUD_LABEL": "it is the label itself; using it as an input would leak the answer",
    "FINGERPRINT": "a device identifier does not generalise as a raw value "
    "(Transaction Fraud Insights still counts its reuse per entity)",
}
_PHONE_TYPES: Final = frozenset({"PHONE_NUMBER", "BILLING_PHONE", "SHIPPING_PHONE"})
_NUMERIC_TYPES: Final = frozenset({"NUMERIC", "PRICE"})
_CATEGORICAL_TYPES: Final = frozenset(
    {
        "CATEGORICAL", "AUTH_CODE", "AVS", "CURRENCY_CODE", "PAYMENT_TYPE", "PRODUCT_CATEGORY",
        "BILLING_ADDRESS_L1", "BILLING_ADDRESS_L2", "BILLING_CITY", "BILLING_COUNTRY",
        "BILLING_NAME", "BILLING_STATE", "BILLING_ZIP",
        "SHIPPING_ADDRESS_L1", "SHIPPING_ADDRESS_L2", "SHIPPING_CITY", "SHIPPING_COUNTRY",
        "SHIPPING_NAME", "SHIPPING_STATE", "SHIPPING_ZIP",
    }
)  # fmt: skip
# Variable types whose reuse by the same entity is telling (TFI "seen this card before?").
TFI_VALUE_TYPES: Final = frozenset(
    {
        "CARD_BIN", "IP_ADDRESS", "EMAIL_ADDRESS", "PHONE_NUMBER", "BILLING_PHONE",
        "SHIPPING_PHONE", "USERAGENT", "FINGERPRINT", "BILLING_ADDRESS_L1", "SHIPPING_ADDRESS_L1",
        "BILLING_ZIP", "SHIPPING_ZIP",
    }
)  # fmt: skip
_AMOUNT_NAME = re.compile(r"amount|amt|price|total|value", re.IGNORECASE)

FREE_MAIL_DOMAINS: Final = frozenset(
    {
        "gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "yahoo.fr", "yahoo.de",
        "yahoo.co.jp", "yahoo.co.in", "ymail.com", "rocketmail.com", "hotmail.com",
        "hotmail.co.uk", "hotmail.fr", "outlook.com", "live.com", "live.co.uk", "msn.com",
        "aol.com", "icloud.com", "me.com", "mac.com", "mail.com", "gmx.com", "gmx.de", "gmx.net",
        "web.de", "yandex.ru", "yandex.com", "mail.ru", "protonmail.com", "proton.me",
        "tutanota.com", "zoho.com", "fastmail.com", "hushmail.com", "inbox.com", "qq.com",
        "163.com", "126.com", "sina.com", "naver.com", "rediffmail.com", "libero.it",
        "laposte.net", "orange.fr", "free.fr", "t-online.de",
    }
)  # fmt: skip
_MOBILE_UA = r"(?i)mobile|android|iphone|ipod|ipad|windows phone|blackberry|opera mini|kindle"
_TRUE = ("true", "t", "yes", "y", "1", "1.0")
_FALSE = ("false", "f", "no", "n", "0", "0.0")
_NAN: Final = float("nan")

# Explicit formats, tried in order: inferring a format from the first value would let a one-row
# prediction and a training batch parse the same string differently.
_TS_AWARE = ("%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%:z")
_TS_NAIVE = (
    "%Y-%m-%dT%H:%M:%S%.fZ",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.fZ",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%d",
)


@dataclass(frozen=True)
class VariableSpec:
    """An AFD event variable: name, dataType, variableType and default value."""

    name: str
    data_type: DataType
    variable_type: str
    default_value: str | None = None


def parse_timestamp(expr: pl.Expr) -> pl.Expr:
    """ISO-8601-ish strings (Z, offsets, fractions, date only) -> Datetime(us, UTC); null if unparseable."""
    text = expr.cast(pl.Utf8).str.strip_chars()
    parsed = [
        text.str.to_datetime(f, strict=False, time_unit="us", time_zone="UTC") for f in _TS_AWARE
    ]
    parsed += [
        text.str.to_datetime(f, strict=False, time_unit="us").dt.replace_time_zone("UTC")
        for f in _TS_NAIVE
    ]
    return pl.coalesce(parsed)


def timestamp_expr(frame: pl.DataFrame, name: str = "EVENT_TIMESTAMP") -> pl.Expr:
    """The column as Datetime(us, UTC), parsing it when it is still a string."""
    if name not in frame.columns:
        return pl.lit(None, dtype=pl.Datetime("us", "UTC")).alias(name)
    dtype = frame.schema[name]
    if isinstance(dtype, pl.Datetime):
        col = pl.col(name).dt.cast_time_unit("us")
        col = col.dt.replace_time_zone("UTC") if dtype.time_zone is None else col
        return col.dt.convert_time_zone("UTC").alias(name)
    return parse_timestamp(pl.col(name)).alias(name)


def variable_kind(spec: VariableSpec) -> Kind:
    """How a variable is turned into features: by variableType first, then by dataType."""
    vt = (spec.variable_type or "").strip().upper()
    special: dict[str, Kind] = {
        "EMAIL_ADDRESS": "email",
        "IP_ADDRESS": "ip",
        "CARD_BIN": "card_bin",
        "USERAGENT": "useragent",
        "FREE_FORM_TEXT": "text",
    }
    if vt in EXCLUDED_VARIABLE_TYPES:
        return "excluded"
    if vt in special:
        return special[vt]
    if vt in _PHONE_TYPES:
        return "phone"
    if spec.data_type == "DATETIME":
        return "datetime"
    if spec.data_type == "BOOLEAN":
        return "boolean"
    if vt in _NUMERIC_TYPES:
        return "numeric"
    if vt in _CATEGORICAL_TYPES:
        return "categorical"
    return "numeric" if spec.data_type in ("INTEGER", "FLOAT") else "categorical"


def is_model_input(spec: VariableSpec) -> bool:
    """Whether the variable yields model features (see EXCLUDED_VARIABLE_TYPES)."""
    return variable_kind(spec) != "excluded"


# --- per-kind derivations: prepared string Series -> derived Series (Float64 or Utf8) ---------


def _with(s: pl.Series, *exprs: pl.Expr) -> list[pl.Series]:
    return s.rename("v").to_frame().select(exprs).get_columns()


def _map_distinct(
    s: pl.Series, fn: Callable[[str], tuple[Any, ...]], dtypes: Sequence[pl.DataType]
) -> list[pl.Series]:
    """Apply a per-value Python function once per distinct value (library parsers are slow)."""
    uniq: list[str] = s.drop_nulls().unique().to_list()
    results = [fn(u) for u in uniq]
    names = [f"o{j}" for j in range(len(dtypes))]
    table = pl.DataFrame(
        {"v": uniq, **{n: [r[j] for r in results] for j, n in enumerate(names)}},
        schema={"v": pl.Utf8, **dict(zip(names, dtypes, strict=True))},
    )
    joined = s.rename("v").to_frame().join(table, on="v", how="left", maintain_order="left")
    return joined.select(names).get_columns()


def _byte_entropy(s: pl.Series) -> pl.Series:
    """Shannon entropy (bits) of each string's UTF-8 bytes; null for missing or empty strings."""
    filled = s.fill_null("")
    lens = filled.str.len_bytes().to_numpy().astype(np.int64)
    data = np.frombuffer(filled.str.join("").item().encode(), dtype=np.uint8)
    # Bytes renumbered densely (order kept) so that the count matrix has one column per byte used.
    used = np.bincount(data, minlength=256) > 0
    codes = (np.cumsum(used) - 1)[data]
    width = max(int(used.sum()), 1)
    owner = np.repeat(np.arange(len(lens)), lens)
    bounds = np.concatenate([[0], np.cumsum(lens)])
    acc = np.zeros(len(lens))
    # Dense (row, byte) counts in chunks; contributions are then summed row by row in byte order,
    # so a value's entropy is bit-identical whether it is scored alone or in a batch.
    chunk = max(1, (1 << 22) // width)
    for lo in range(0, len(lens), chunk):
        hi = min(lo + chunk, len(lens))
        keys = (owner[bounds[lo] : bounds[hi]] - lo) * width + codes[bounds[lo] : bounds[hi]]
        counts = np.bincount(keys, minlength=(hi - lo) * width)
        cells = np.flatnonzero(counts)
        c = counts[cells].astype(np.float64)
        acc[lo:hi] = np.bincount(cells // width, weights=c * np.log2(c), minlength=hi - lo)
    n = lens.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = np.log2(n) - acc / n
    return pl.Series("entropy", np.where(lens > 0, entropy, np.nan)).fill_nan(None)


def _email(s: pl.Series) -> list[pl.Series]:
    # Built in steps: polars re-evaluates a sub-expression each time a larger one repeats it.
    v = pl.col("v")
    f = s.rename("v").to_frame().select(v.str.to_lowercase())
    f = f.with_columns(v.str.extract(r"@([^@]*)$", 1).alias("domain"))
    at = v.str.len_chars() - pl.col("domain").str.len_chars() - 1
    f = f.with_columns(
        pl.when(pl.col("domain").is_null()).then(v).otherwise(v.str.head(at)).alias("user")
    )
    f = f.with_columns(
        pl.when(pl.col("domain").str.len_chars() > 0).then(pl.col("domain")).alias("domain"),
        pl.col("user").str.len_chars().cast(pl.Float64).alias("user_len"),
        pl.col("user").str.count_matches(r"\d").cast(pl.Float64).alias("digits"),
    )
    out = f.select(
        "domain",
        pl.when(pl.col("domain").is_not_null())
        .then(pl.col("domain").is_in(sorted(FREE_MAIL_DOMAINS)).cast(pl.Float64))
        .alias("free_mail"),
        "user_len",
        pl.when(pl.col("user_len") > 0)
        .then(pl.col("digits") / pl.col("user_len"))
        .alias("user_digit_ratio"),
    ).get_columns()
    return [*out, _byte_entropy(f["user"])]


# IPv4 blocks that are not public unicast space: what Python's ipaddress calls private, reserved,
# loopback, link-local, multicast or unspecified, plus the shared (carrier NAT) 100.64.0.0/10.
# Checked as integer ranges so that IPv4 needs no per-value Python call.
_V4_SPECIAL: Final = tuple(
    (int(net.network_address), net.prefixlen)
    for net in map(
        ipaddress.IPv4Network,
        (
            "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
            "172.16.0.0/12", "192.0.0.0/29", "192.0.0.170/31", "192.0.2.0/24", "192.168.0.0/16",
            "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
        ),
    )
)  # fmt: skip
_V4_RE: Final = r"^(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})$"


def _v4_special(value: int) -> bool:
    return any(value >> (32 - p) == net >> (32 - p) for net, p in _V4_SPECIAL)


@functools.lru_cache(maxsize=1 << 16)
def _ip_info(value: str) -> tuple[float | None, float | None, str | None, str | None]:
    try:
        addr: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(value)
    except ValueError:
        return None, None, None, None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if isinstance(addr, ipaddress.IPv4Address):
        octets = str(addr).split(".")
        return 4.0, float(_v4_special(int(addr))), ".".join(octets[:2]), ".".join(octets[:3])
    special = (
        addr.is_private
        or addr.is_reserved
        or addr.is_loopback
        or addr.is_link_local
        or addr.is_multicast
        or addr.is_unspecified
    )
    groups = addr.exploded.split(":")
    # IPv6 has no /16 or /24 worth speaking of: its /32 and /48 play the same role.
    return 6.0, float(special), ":".join(groups[:2]), ":".join(groups[:3])


def _ip(s: pl.Series) -> list[pl.Series]:
    v = pl.col("v")
    parts = (
        s.rename("v")
        .to_frame()
        .select(
            v.str.contains(_V4_RE).fill_null(False).alias("quad"),
            v.str.split_exact(".", 3).struct.unnest(),
        )
    )
    octets = [pl.col(f"field_{i}").cast(pl.Int64, strict=False) for i in range(4)]
    # Stepwise with_columns: polars does not share sub-expressions across any_horizontal's terms.
    parts = parts.with_columns(
        (pl.col("quad") & pl.all_horizontal([o <= 255 for o in octets])).alias("ok"),
        (octets[0] * (1 << 24) + octets[1] * (1 << 16) + octets[2] * (1 << 8) + octets[3]).alias(
            "int"
        ),
    )
    fast = parts.select(
        pl.lit(4.0).alias("version"),
        pl.any_horizontal(
            [pl.col("int") // (1 << (32 - p)) == net >> (32 - p) for net, p in _V4_SPECIAL]
        )
        .cast(pl.Float64)
        .alias("private"),
        (pl.col("field_0") + "." + pl.col("field_1")).alias("prefix16"),
        (pl.col("field_0") + "." + pl.col("field_1") + "." + pl.col("field_2")).alias("prefix24"),
    ).get_columns()
    ok = parts["ok"]
    if ok.all():
        return fast
    # Everything but plain dotted quads (IPv6, junk) goes through ipaddress, once per value.
    rest = s.to_frame("v").select(pl.when(~pl.lit(ok)).then(pl.col("v")))["v"]
    slow = _map_distinct(rest, _ip_info, [pl.Float64(), pl.Float64(), pl.Utf8(), pl.Utf8()])
    frame = pl.DataFrame([ok.alias("ok"), *[f.alias(f"f{j}") for j, f in enumerate(fast)]])
    frame = frame.hstack([sl.alias(f"s{j}") for j, sl in enumerate(slow)])
    return frame.select(
        pl.when(pl.col("ok")).then(pl.col(f"f{j}")).otherwise(pl.col(f"s{j}")).alias(f.name)
        for j, f in enumerate(fast)
    ).get_columns()


def _card_bin(s: pl.Series) -> list[pl.Series]:
    digits = pl.col("v").str.replace_all(r"\D", "")
    digits = pl.when(digits.str.len_chars() > 0).then(digits)
    return _with(
        s,
        digits.alias("bin"),
        digits.str.slice(0, 1).cast(pl.Float64).alias("prefix1"),
        digits.str.slice(0, 2).cast(pl.Float64).alias("prefix2"),
        digits.str.len_chars().cast(pl.Float64).alias("length"),
    )


@functools.lru_cache(maxsize=1 << 17)
def _phone_info(value: str) -> tuple[float | None, float, float]:
    try:
        num = phonenumbers.parse(value, "US")
    except phonenumbers.NumberParseException:
        return None, 0.0, 0.0
    return (
        float(num.country_code) if num.country_code else None,
        float(phonenumbers.is_valid_number(num)),
        float(phonenumbers.is_possible_number(num)),
    )


def _phone(s: pl.Series) -> list[pl.Series]:
    # Punctuation never changes what phonenumbers parses; dropping it merges spellings of a number.
    (compact,) = _with(s, pl.col("v").str.replace_all(r"[\s().\-/]", ""))
    return _map_distinct(compact, _phone_info, [pl.Float64(), pl.Float64(), pl.Float64()])


@functools.lru_cache(maxsize=1 << 16)
def _ua_info(value: str) -> tuple[str, str, str]:
    r = ua_parser.parse(value)
    return (
        r.user_agent.family if r.user_agent is not None else "Other",
        r.os.family if r.os is not None else "Other",
        r.device.family if r.device is not None else "Other",
    )


def _useragent(s: pl.Series) -> list[pl.Series]:
    families = _map_distinct(s, _ua_info, [pl.Utf8(), pl.Utf8(), pl.Utf8()])
    (mobile,) = _with(s, pl.col("v").str.contains(_MOBILE_UA).cast(pl.Float64))
    return [*families, mobile]


@functools.lru_cache(maxsize=1 << 18)
def _bucket(token: str, buckets: int, salt: bytes) -> int:
    digest = hashlib.blake2b(token.encode(), digest_size=8, person=salt).digest()
    return int.from_bytes(digest, "little") % buckets


def _hashed_counts(
    units: pl.DataFrame, n_texts: int, buckets: int, salt: bytes
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """units: (_id, u) rows -> (n_texts, buckets) counts normalised to sum 1 per text."""
    distinct: list[str] = units["u"].unique().sort().to_list()
    ids = units["_id"].to_numpy().astype(np.int64)
    codes = (
        units["u"]
        .replace_strict(
            distinct, [_bucket(u, buckets, salt) for u in distinct], return_dtype=pl.Int64
        )
        .to_numpy()
        .astype(np.int64)
    )
    counts = np.bincount(ids * buckets + codes, minlength=n_texts * buckets).astype(np.float64)
    counts = counts.reshape(n_texts, buckets)
    totals = counts.sum(axis=1, keepdims=True)
    shares: np.ndarray[Any, np.dtype[np.float64]] = np.divide(
        counts, totals, out=np.zeros_like(counts), where=totals > 0
    )
    return shares


def _text(s: pl.Series, buckets: int) -> list[pl.Series]:
    norm = pl.col("v").str.to_lowercase().str.replace_all(r"\s+", " ")
    (normed,) = _with(s, norm)
    uniq = normed.drop_nulls().unique().sort()
    if uniq.is_empty():
        names = ["len", "tokens"] + [f"{k}{i:02d}" for k in ("tok", "chr") for i in range(buckets)]
        return [pl.Series(name, [None] * len(s), dtype=pl.Float64) for name in names]
    texts = pl.DataFrame({"t": uniq}).with_row_index("_id")
    tokens = texts.select("_id", pl.col("t").str.extract_all(r"\w+").alias("u")).explode("u")
    tokens = tokens.drop_nulls("u")
    padded = texts.select("_id", (pl.lit(" ") + pl.col("t") + pl.lit(" ")).alias("t"))
    grams = (
        padded.with_columns(pl.int_ranges(0, pl.col("t").str.len_chars() - 2).alias("o"))
        .explode("o")
        .drop_nulls("o")
        .select("_id", pl.col("t").str.slice(pl.col("o"), 3).alias("u"))
    )
    n = texts.height
    tok = _hashed_counts(tokens, n, buckets, b"tok")
    chars = _hashed_counts(grams, n, buckets, b"chr")
    idx = normed.replace_strict(uniq, list(range(n)), default=None, return_dtype=pl.Int64)
    present = idx.is_not_null().to_numpy()
    rows = idx.fill_null(0).to_numpy()
    n_tokens = tokens.group_by("_id").len()
    tok_count = np.zeros(n)
    tok_count[n_tokens["_id"].to_numpy()] = n_tokens["len"].to_numpy()
    out = [
        _with(normed, pl.col("v").str.len_chars().cast(pl.Float64))[0].alias("len"),
        pl.Series("tokens", np.where(present, tok_count[rows], np.nan)),
    ]
    for name, mat in (("tok", tok), ("chr", chars)):
        gathered = np.where(present[:, None], mat[rows], np.nan)
        out += [pl.Series(f"{name}{i:02d}", gathered[:, i]) for i in range(buckets)]
    return out


def _numeric(s: pl.Series) -> list[pl.Series]:
    x = pl.col("v").cast(pl.Float64, strict=False)
    return _with(s, pl.when(x.is_finite()).then(x))


def _boolean(s: pl.Series) -> list[pl.Series]:
    v = pl.col("v").str.to_lowercase()
    return _with(s, pl.when(v.is_in(_TRUE)).then(1.0).when(v.is_in(_FALSE)).then(0.0))


def _datetime(s: pl.Series) -> list[pl.Series]:
    ts = parse_timestamp(pl.col("v"))
    return _with(
        s,
        ts.dt.hour().cast(pl.Float64).alias("hour"),
        (ts.dt.weekday() - 1).cast(pl.Float64).alias("dow"),
    )


def _feature_layout(spec: VariableSpec, kind: Kind, text_buckets: int) -> list[tuple[str, bool]]:
    """(feature name, is categorical) for each feature of the variable, in output order."""
    v = spec.name
    layouts: dict[Kind, list[tuple[str, bool]]] = {
        "email": [
            (f"{v}__domain", True),
            (f"{v}__free_mail", False),
            (f"{v}__user_len", False),
            (f"{v}__user_digit_ratio", False),
            (f"{v}__user_entropy", False),
        ],
        "ip": [
            (f"{v}__version", False),
            (f"{v}__private", False),
            (f"{v}__prefix16", True),
            (f"{v}__prefix24", True),
        ],
        "card_bin": [
            (f"{v}", True),
            (f"{v}__prefix1", False),
            (f"{v}__prefix2", False),
            (f"{v}__length", False),
        ],
        "phone": [
            (f"{v}__country_code", False),
            (f"{v}__valid", False),
            (f"{v}__possible", False),
        ],
        "useragent": [
            (f"{v}__browser", True),
            (f"{v}__os", True),
            (f"{v}__device", True),
            (f"{v}__is_mobile", False),
        ],
        "text": [(f"{v}__len", False), (f"{v}__tokens", False)]
        + [(f"{v}__tok{i:02d}", False) for i in range(text_buckets)]
        + [(f"{v}__chr{i:02d}", False) for i in range(text_buckets)],
        "categorical": [(v, True)],
        "numeric": [(v, False)],
        "boolean": [(v, False)],
        "datetime": [(f"{v}__hour", False), (f"{v}__dow", False)],
        "excluded": [],
    }
    return layouts[kind]


def _derive(kind: Kind, s: pl.Series, text_buckets: int) -> list[pl.Series]:
    if kind == "email":
        return _email(s)
    if kind == "ip":
        return _ip(s)
    if kind == "card_bin":
        return _card_bin(s)
    if kind == "phone":
        return _phone(s)
    if kind == "useragent":
        return _useragent(s)
    if kind == "text":
        return _text(s, text_buckets)
    if kind == "categorical":
        return [s]
    if kind == "numeric":
        return _numeric(s)
    if kind == "boolean":
        return _boolean(s)
    if kind == "datetime":
        return _datetime(s)
    return []


# --- one value without polars: the online prediction path ----------------------------------
#
# A one-row polars transform runs about fifteen queries (~7 ms); these functions give the same
# values in microseconds. They cover ASCII text only, where Python's and polars' (Rust's) ideas
# of whitespace, case, digits and word characters agree; anything else, and any value whose
# polars result they do not reproduce by construction, raises _BatchOnly and the event goes
# through the batch path. tests/unit/test_fraud_features.py checks both paths agree.


class _BatchOnly(Exception):
    """This value needs the batch path to get exactly the batch path's result."""


_ASCII_SPACE: Final = " \t\n\x0b\x0c\r"  # polars' strip_chars and regex \s, on ASCII text
_SPACE_RUN: Final = re.compile(r"[ \t\n\x0b\x0c\r]+")
_PHONE_PUNCTUATION: Final = re.compile(r"[ \t\n\x0b\x0c\r().\-/]")
_WORD: Final = re.compile(r"[A-Za-z0-9_]+")
_DIGITS: Final = frozenset("0123456789")
_MOBILE_UA_RE: Final = re.compile(_MOBILE_UA)
_V4_QUAD: Final = re.compile(_V4_RE.strip("^$").replace(r"\d", "[0-9]"))
_NUMBER: Final = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_ISO_TIMESTAMP: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[T ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]{1,9})?"
    r"(Z|([+-])([0-9]{2}):?([0-9]{2}))?)?"
)


def _entity_one(event: Mapping[str, Any]) -> str | None:
    """ENTITY_ID as `_aggregate_input` normalises it: stripped, blank -> None."""
    raw = event.get("ENTITY_ID")
    if raw is None:
        return None
    if not (isinstance(raw, str) and raw.isascii()):
        raise _BatchOnly
    return raw.strip(_ASCII_SPACE) or None


def _number_one(v: str) -> float:
    """polars' lenient string -> Float64 cast, for the forms both parsers read the same way."""
    if not _NUMBER.fullmatch(v):
        raise _BatchOnly
    return float(v)


def _entropy_one(user: str) -> float | None:
    data = user.encode()
    if not data:
        return None
    # As _byte_entropy: terms in byte order, summed one after the other, numpy's log2.
    counts = np.array([c for _, c in sorted(Counter(data).items())], dtype=np.float64)
    acc = 0.0
    for term in (counts * np.log2(counts)).tolist():
        acc += term
    n = np.array([len(data)], dtype=np.float64)
    return float((np.log2(n) - acc / n)[0])


def _email_one(v: str) -> list[Any]:
    v = v.lower()
    at = v.rfind("@")
    domain = v[at + 1 :] if at >= 0 else None
    user = v[:at] if at >= 0 else v
    if not domain:
        domain = None
    user_len = float(len(user))
    digits = sum(1 for c in user if c in _DIGITS)
    return [
        domain,
        None if domain is None else float(domain in FREE_MAIL_DOMAINS),
        user_len,
        digits / user_len if user_len > 0 else None,
        _entropy_one(user),
    ]


def _ip_one(v: str) -> list[Any]:
    quad = _V4_QUAD.fullmatch(v)
    if quad is not None and all(int(o) <= 255 for o in quad.groups()):
        o = quad.groups()
        value = (int(o[0]) << 24) + (int(o[1]) << 16) + (int(o[2]) << 8) + int(o[3])
        return [4.0, float(_v4_special(value)), f"{o[0]}.{o[1]}", f"{o[0]}.{o[1]}.{o[2]}"]
    return list(_ip_info(v))


def _card_bin_one(v: str) -> list[Any]:
    digits = "".join(c for c in v if c in _DIGITS)
    if not digits:
        return [None, None, None, None]
    return [digits, float(digits[:1]), float(digits[:2]), float(len(digits))]


def _shares(units: Sequence[str], buckets: int, salt: bytes) -> list[float]:
    counts = [0] * buckets
    for unit in units:
        counts[_bucket(unit, buckets, salt)] += 1
    total = len(units)
    return [c / total for c in counts] if total else [0.0] * buckets


def _text_one(v: str, buckets: int) -> list[Any]:
    text = _SPACE_RUN.sub(" ", v.lower())
    tokens = _WORD.findall(text)
    padded = f" {text} "
    grams = [padded[i : i + 3] for i in range(len(padded) - 2)]
    return [
        float(len(text)),
        float(len(tokens)),
        *_shares(tokens, buckets, b"tok"),
        *_shares(grams, buckets, b"chr"),
    ]


def _datetime_one(v: str) -> list[Any]:
    m = _ISO_TIMESTAMP.fullmatch(v)
    if m is None:
        raise _BatchOnly
    year, month, day = int(m[1]), int(m[2]), int(m[3])
    hour, minute, second = (int(m[i]) if m[i] else 0 for i in (4, 5, 6))
    offset = timedelta(0)
    if m[8]:
        off_h, off_m = int(m[9]), int(m[10])
        if off_h > 23 or off_m > 59:
            raise _BatchOnly
        offset = timedelta(hours=off_h, minutes=off_m) * (-1 if m[8] == "-" else 1)
    if second == 60:
        raise _BatchOnly  # chrono reads a leap second as the next one; datetime refuses it
    try:
        local = datetime(year, month, day, hour, minute, second, tzinfo=timezone(offset))
    except ValueError:
        return [None, None]  # no such date or time: the batch parser gives null too
    utc = local.astimezone(UTC)
    return [float(utc.hour), float(utc.weekday())]


def _boolean_one(v: str) -> list[Any]:
    low = v.lower()
    return [1.0 if low in _TRUE else 0.0 if low in _FALSE else None]


def _derive_one(kind: Kind, v: str | None, text_buckets: int, width: int) -> list[Any]:
    """`_derive` of one prepared (stripped, non-blank, ASCII) value or None."""
    if v is None or kind == "excluded":
        return [None] * width
    if kind == "email":
        return _email_one(v)
    if kind == "ip":
        return _ip_one(v)
    if kind == "card_bin":
        return _card_bin_one(v)
    if kind == "phone":
        return list(_phone_info(_PHONE_PUNCTUATION.sub("", v)))
    if kind == "useragent":
        return [*_ua_info(v), 1.0 if _MOBILE_UA_RE.search(v) else 0.0]
    if kind == "text":
        return _text_one(v, text_buckets)
    if kind == "categorical":
        return [v]
    if kind == "numeric":
        x = _number_one(v)
        return [x if math.isfinite(x) else None]
    if kind == "boolean":
        return _boolean_one(v)
    return _datetime_one(v)


_CHEAP_KINDS: Final = frozenset({"categorical", "numeric", "boolean", "excluded"})


def _derive_distinct(kind: Kind, s: pl.Series, text_buckets: int) -> list[pl.Series]:
    """`_derive` on each distinct value once, then spread back (values repeat a lot in practice).

    Every derivation is a function of the value alone, so the result is the same either way.
    """
    if kind in _CHEAP_KINDS or len(s) < 64:
        return _derive(kind, s, text_buckets)
    frame = s.rename("v").to_frame()
    uniq = frame.unique()
    if uniq.height * 2 > frame.height:
        return _derive(kind, s, text_buckets)
    idx = frame.join(
        uniq.with_row_index("_i"), on="v", how="left", maintain_order="left", nulls_equal=True
    )["_i"]
    return [d.gather(idx) for d in _derive(kind, uniq["v"], text_buckets)]


def _encode(name: str, vocabulary: Sequence[str]) -> pl.Expr:
    """Category -> code 0..k-1; anything else -> k ("rare/unseen"); missing -> NaN."""
    k = len(vocabulary)
    codes = pl.col(name).replace_strict(
        list(vocabulary), [float(i) for i in range(k)], default=float(k), return_dtype=pl.Float32
    )
    return pl.when(pl.col(name).is_null()).then(_NAN).otherwise(codes).cast(pl.Float32)


def _fit_vocabulary(s: pl.Series, rare_min_count: int, max_categories: int) -> list[str]:
    counts = s.drop_nulls().value_counts(name="n")
    kept = counts.filter(pl.col("n") >= rare_min_count).sort(
        ["n", s.name], descending=[True, False]
    )
    return kept[s.name].head(max(max_categories - 1, 0)).to_list()


class FeaturePipeline:
    """Turns AFD events into a Float32 LightGBM matrix; the same object trains and predicts.

    Build it with `fit`, store it with `to_dict`. Categorical features (marked *) are integer
    codes 0..k stored as Float32, k meaning rare or unseen, for LightGBM's native categoricals;
    every missing value is NaN. Values are stripped, blanks are missing, then `default_value`
    fills missing values. Features per variable `v`, by variableType then dataType:

    - EMAIL_ADDRESS: v__domain*, v__free_mail, v__user_len, v__user_digit_ratio,
      v__user_entropy (bits, over the UTF-8 bytes of the part before the last "@")
    - IP_ADDRESS: v__version (4/6), v__private (not public unicast), v__prefix16*, v__prefix24*
      (for IPv6: the /32 and /48)
    - CARD_BIN: v* (the digits), v__prefix1, v__prefix2, v__length
    - PHONE_NUMBER, BILLING_PHONE, SHIPPING_PHONE: v__country_code, v__valid, v__possible
      (phonenumbers, default region US)
    - USERAGENT: v__browser*, v__os*, v__device* (ua-parser families), v__is_mobile
    - FREE_FORM_TEXT: v__len, v__tokens, v__tok00.. (word tokens) and v__chr00.. (character
      3-grams), each hashed with BLAKE2b into `text_buckets` shares summing to 1
    - dataType DATETIME: v__hour, v__dow (UTC, Monday = 0); dataType BOOLEAN: v as 0/1
    - NUMERIC, PRICE, or no known type with dataType INTEGER/FLOAT: v as a float
    - CATEGORICAL, address parts, codes and anything else: v*
    - ORDER_ID, FINGERPRINT, FRAUD_LABEL: none (see EXCLUDED_VARIABLE_TYPES)

    TRANSACTION_FRAUD_INSIGHTS adds the entity aggregates of `aggregates.py` at the end.
    """

    def __init__(
        self,
        *,
        variables: Sequence[VariableSpec],
        model_type: ModelType,
        text_buckets: int,
        vocabularies: Mapping[str, Sequence[str]],
        windows: Sequence[timedelta],
        amount_variable: str | None,
        value_variables: Sequence[str],
    ) -> None:
        self.variables = list(variables)
        self.model_type: ModelType = model_type
        self.text_buckets = text_buckets
        self.vocabularies = {k: list(v) for k, v in vocabularies.items()}
        self.windows = tuple(windows)
        self.amount_variable = amount_variable
        self.value_variables = list(value_variables)
        self.kinds: dict[str, Kind] = {v.name: variable_kind(v) for v in self.variables}
        self.excluded_variables = {
            v.name: EXCLUDED_VARIABLE_TYPES[v.variable_type.strip().upper()]
            for v in self.variables
            if self.kinds[v.name] == "excluded"
        }
        self.feature_names: list[str] = []
        self.categorical_features: list[str] = []
        self.feature_variable: dict[str, str] = {}
        for spec in self.variables:
            for name, categorical in _feature_layout(spec, self.kinds[spec.name], text_buckets):
                self.feature_names.append(name)
                self.feature_variable[name] = spec.name
                if categorical:
                    self.categorical_features.append(name)
        if self.is_tfi:
            agg = aggregate_feature_variables(
                self.windows, self.amount_variable, self.value_variables
            )
            self.feature_names += list(agg)
            self.feature_variable.update(agg)
        if len(set(self.feature_names)) != len(self.feature_names):
            raise ValueError("variable names produce duplicate feature names")

    @property
    def is_tfi(self) -> bool:
        return self.model_type == "TRANSACTION_FRAUD_INSIGHTS"

    @classmethod
    def fit(
        cls,
        events: pl.DataFrame,
        variables: Sequence[VariableSpec],
        *,
        model_type: ModelType = "ONLINE_FRAUD_INSIGHTS",
        rare_min_count: int = 20,
        max_categories: int = 200,
        text_buckets: int = 32,
        windows: Sequence[timedelta] = DEFAULT_WINDOWS,
        amount_variable: str | None = AUTO,
        value_variables: Sequence[str] | None = None,
    ) -> FeaturePipeline:
        """Learn category vocabularies from `events` (TFI: amount "auto" and value None pick by type)."""
        names = [v.name for v in variables]
        if len(set(names)) != len(names):
            raise ValueError("variable names must be unique")
        if clash := set(names) & set(EVENT_COLUMNS):
            raise ValueError(f"variables may not use reserved event column names: {sorted(clash)}")
        if text_buckets < 0 or max_categories < 1 or rare_min_count < 1:
            raise ValueError("text_buckets >= 0, max_categories >= 1, rare_min_count >= 1")
        specs = {v.name: v for v in variables}
        amount: str | None = None
        values: list[str] = []
        if model_type == "TRANSACTION_FRAUD_INSIGHTS":
            amount = _pick_amount(variables) if amount_variable == AUTO else amount_variable
            values = (
                [v.name for v in variables if v.variable_type.strip().upper() in TFI_VALUE_TYPES]
                if value_variables is None
                else list(value_variables)
            )
            for name in [amount, *values]:
                if name is not None and name not in specs:
                    raise ValueError(f"TFI aggregate variable {name!r} is not an event variable")
        shell = cls(
            variables=variables,
            model_type=model_type,
            text_buckets=text_buckets,
            vocabularies={},
            windows=windows,
            amount_variable=amount,
            value_variables=values,
        )
        derived = shell._derived(events)
        vocab = {
            name: _fit_vocabulary(derived[name], rare_min_count, max_categories)
            for name in shell.categorical_features
        }
        shell.vocabularies = vocab
        return shell

    # --- transform ----------------------------------------------------------------------------

    def _prepared(self, events: pl.DataFrame) -> pl.DataFrame:
        """One Utf8 column per variable: stripped, empty -> missing, then the default applied."""
        exprs = []
        for spec in self.variables:
            if spec.name in events.columns:
                col = pl.col(spec.name).cast(pl.Utf8).str.strip_chars()
                col = pl.when(col.str.len_chars() > 0).then(col)
            else:
                col = pl.lit(None, dtype=pl.Utf8)
            default = (spec.default_value or "").strip()
            if default:
                col = col.fill_null(pl.lit(default))
            exprs.append(col.alias(spec.name))
        return events.select(exprs)

    def _derived(self, events: pl.DataFrame) -> dict[str, pl.Series]:
        prepared = self._prepared(events)
        out: dict[str, pl.Series] = {}
        for spec in self.variables:
            kind = self.kinds[spec.name]
            layout = _feature_layout(spec, kind, self.text_buckets)
            series = _derive_distinct(kind, prepared[spec.name], self.text_buckets)
            for (name, _), s in zip(layout, series, strict=True):
                out[name] = s.alias(name)
        return out

    def transform(
        self, events: pl.DataFrame, *, history: EntityHistory | None = None
    ) -> pl.DataFrame:
        """Float32 features, columns exactly `feature_names`, one row per event, NaN for missing.

        TFI: without `history` the aggregates come from `events` themselves (training, batch
        scoring); with it, each row is scored against the history alone (online prediction; call
        `observe` afterwards).
        """
        derived = self._derived(events)
        categorical = set(self.categorical_features)
        # One select for all columns: each separate Series operation costs a query of its own,
        # which is most of the time of a one-row prediction.
        out = pl.DataFrame(list(derived.values()), height=events.height).select(
            (
                _encode(name, self.vocabularies[name])
                if name in categorical
                else pl.col(name).cast(pl.Float32).fill_null(_NAN)
            ).alias(name)
            for name in derived
        )
        if self.is_tfi:
            agg = (
                self._aggregates_online(events, history)
                if history is not None
                else batch_aggregates(
                    self._aggregate_input(events),
                    windows=self.windows,
                    amount_variable=self.amount_variable,
                    value_variables=self.value_variables,
                )
            )
            out = out.hstack(agg.select(pl.all().cast(pl.Float32).fill_null(_NAN)).get_columns())
        return out.select(self.feature_names)

    def transform_one(
        self, event: Mapping[str, Any], *, history: EntityHistory | None = None
    ) -> np.ndarray[Any, np.dtype[np.float32]] | None:
        """`transform` of one event without polars: a (1, n) Float32 row, equal to the batch path.

        `event` maps variable names (and ENTITY_ID) to raw strings, and EVENT_TIMESTAMP to an
        aware datetime. None when a value needs the batch path (non-ASCII text, or a number or
        timestamp spelled in a form only polars' parser reads): call `transform` then.
        """
        if self.is_tfi and history is None:
            return None
        prepared = self._prepared_one(event)
        if prepared is None:
            return None
        row: list[float] = []
        try:
            for spec, names in self._layout_one:
                values = _derive_one(
                    self.kinds[spec.name], prepared[spec.name], self.text_buckets, len(names)
                )
                for (name, categorical), value in zip(names, values, strict=True):
                    if value is None:
                        row.append(_NAN)
                    elif categorical:
                        codes = self._codes_one[name]
                        row.append(float(codes.get(value, len(codes))))
                    else:
                        row.append(value)
            if self.is_tfi and history is not None:
                row += self._aggregates_one(event, prepared, history)
        except _BatchOnly:
            return None
        return np.array([row], dtype=np.float32)

    @functools.cached_property
    def _layout_one(self) -> list[tuple[VariableSpec, list[tuple[str, bool]]]]:
        return [
            (spec, _feature_layout(spec, self.kinds[spec.name], self.text_buckets))
            for spec in self.variables
        ]

    @functools.cached_property
    def _codes_one(self) -> dict[str, dict[str, int]]:
        return {
            name: {value: i for i, value in enumerate(vocabulary)}
            for name, vocabulary in self.vocabularies.items()
        }

    def _prepared_one(self, event: Mapping[str, Any]) -> dict[str, str | None] | None:
        """As `_prepared`, for one event; None when a value is not ASCII text."""
        out: dict[str, str | None] = {}
        for spec in self.variables:
            raw = event.get(spec.name)
            if raw is not None and not isinstance(raw, str):
                return None
            value = raw.strip(_ASCII_SPACE) if raw is not None else None
            if value is not None and not value.isascii():
                return None
            default = (spec.default_value or "").strip()  # as `_prepared` strips it
            if not value:
                if not default.isascii():
                    return None
                value = default or None
            out[spec.name] = value
        return out

    def _aggregates_one(
        self, event: Mapping[str, Any], prepared: Mapping[str, str | None], history: EntityHistory
    ) -> list[float]:
        entity = _entity_one(event)
        timestamp = event.get("EVENT_TIMESTAMP")
        if entity is None or not isinstance(timestamp, datetime):
            return [_NAN] * len(history.feature_names)
        values = {v: prepared.get(v) for v in self.value_variables}
        return list(history.features(entity, timestamp, values).values())

    def observe_one(self, history: EntityHistory, event: Mapping[str, Any]) -> bool:
        """`observe` of one event without polars (same event shape as `transform_one`).

        False when a value needs the batch path: call `observe` with a one-row frame then.
        """
        prepared = self._prepared_one(event)
        if prepared is None:
            return False
        try:
            entity = _entity_one(event)
            raw_amount = prepared.get(self.amount_variable) if self.amount_variable else None
            amount = _number_one(raw_amount) if raw_amount is not None else None
        except _BatchOnly:
            return False
        timestamp = event.get("EVENT_TIMESTAMP")
        if entity is None or not isinstance(timestamp, datetime):
            return True  # nothing to record, as in `observe`
        event_id = event.get("EVENT_ID")
        key = f"{event_id}@{timestamp.isoformat()}" if event_id is not None else None
        values = {v: prepared.get(v) for v in self.value_variables}
        history.observe(entity, timestamp, amount, values, key=key)
        return True

    def _aggregate_input(self, events: pl.DataFrame) -> pl.DataFrame:
        prepared = self._prepared(events)
        entity = (
            pl.col("ENTITY_ID").cast(pl.Utf8).str.strip_chars()
            if "ENTITY_ID" in events.columns
            else pl.lit(None, dtype=pl.Utf8)
        )
        base = events.select(
            pl.when(entity.str.len_chars() > 0).then(entity).alias("ENTITY_ID"),
            timestamp_expr(events),
        )
        used = [n for n in dict.fromkeys([self.amount_variable, *self.value_variables]) if n]
        return base.hstack(prepared.select(used).get_columns())

    def _rows_for_history(
        self, events: pl.DataFrame
    ) -> list[tuple[str | None, Any, float | None, dict[str, str | None], str | None]]:
        """(entity, timestamp, amount, values, key) per event; key: its id and time, if known."""
        frame = self._aggregate_input(events)
        ids: list[Any] = (
            events["EVENT_ID"].cast(pl.Utf8).to_list()
            if "EVENT_ID" in events.columns
            else [None] * frame.height
        )
        amounts: list[float | None] = (
            frame.select(parse_amount_expr(pl.col(self.amount_variable))).to_series().to_list()
            if self.amount_variable is not None
            else [None] * frame.height
        )
        rows = []
        for i, rec in enumerate(frame.iter_rows(named=True)):
            amount = amounts[i]
            if amount is not None and math.isnan(amount):
                amount = None
            values = {v: rec[v] for v in self.value_variables}
            ts = rec["EVENT_TIMESTAMP"]
            key = f"{ids[i]}@{ts.isoformat()}" if ids[i] is not None and ts is not None else None
            rows.append((rec["ENTITY_ID"], ts, amount, values, key))
        return rows

    def _aggregates_online(self, events: pl.DataFrame, history: EntityHistory) -> pl.DataFrame:
        names = aggregate_feature_names(self.windows, self.amount_variable, self.value_variables)
        records: list[list[float]] = []
        for entity, ts, _, values, _ in self._rows_for_history(events):
            if entity is None or ts is None:
                records.append([_NAN] * len(names))
            else:
                feats = history.features(entity, ts, values)
                records.append([feats[n] for n in names])
        return pl.DataFrame(records, schema=dict.fromkeys(names, pl.Float64), orient="row")

    def new_history(self) -> EntityHistory:
        """An empty EntityHistory configured like this pipeline's aggregates."""
        return EntityHistory(
            windows=self.windows,
            amount_variable=self.amount_variable,
            value_variables=self.value_variables,
        )

    def observe(self, history: EntityHistory, events: pl.DataFrame) -> None:
        """Record events in `history`, normalised exactly as `transform` sees them."""
        for entity, ts, amount, values, key in self._rows_for_history(events):
            if entity is not None and ts is not None:
                history.observe(entity, ts, amount, values, key=key)

    # --- persistence --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description; `from_dict` rebuilds an identical pipeline."""
        return {
            "format_version": _FORMAT_VERSION,
            "model_type": self.model_type,
            "text_buckets": self.text_buckets,
            "variables": [
                {
                    "name": v.name,
                    "data_type": v.data_type,
                    "variable_type": v.variable_type,
                    "default_value": v.default_value,
                }
                for v in self.variables
            ],
            "vocabularies": self.vocabularies,
            "windows_s": [int(w.total_seconds()) for w in self.windows],
            "amount_variable": self.amount_variable,
            "value_variables": self.value_variables,
            "feature_names": self.feature_names,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeaturePipeline:
        if d.get("format_version") != _FORMAT_VERSION:
            raise ValueError(f"unsupported feature pipeline format {d.get('format_version')!r}")
        pipeline = cls(
            variables=[VariableSpec(**v) for v in d["variables"]],
            model_type=d["model_type"],
            text_buckets=d["text_buckets"],
            vocabularies=d["vocabularies"],
            windows=[timedelta(seconds=s) for s in d["windows_s"]],
            amount_variable=d["amount_variable"],
            value_variables=d["value_variables"],
        )
        if pipeline.feature_names != d["feature_names"]:
            raise ValueError("stored feature names do not match this code's feature layout")
        return pipeline


def _pick_amount(variables: Sequence[VariableSpec]) -> str | None:
    numeric = [
        v
        for v in variables
        if v.variable_type.strip().upper() in _NUMERIC_TYPES and variable_kind(v) == "numeric"
    ]
    for v in numeric:
        if _AMOUNT_NAME.search(v.name):
            return v.name
    prices = [v for v in numeric if v.variable_type.strip().upper() == "PRICE"]
    return prices[0].name if prices else None
