"""Fraud feature pipeline: enrichment values, rare bucketing, batch/online identity, no look-ahead."""

from __future__ import annotations

import ipaddress
import json
import math
import random
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from services.fraud.domain.aggregates import EntityHistory, batch_aggregates, window_label
from services.fraud.domain.features import (
    FeaturePipeline,
    VariableSpec,
    is_model_input,
    timestamp_expr,
)

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "afd-samples"
T0 = datetime(2024, 3, 4, 10, 0, tzinfo=UTC)  # a Monday

REGISTRATION_VARIABLES = [
    VariableSpec("ip_address", "STRING", "IP_ADDRESS"),
    VariableSpec("email_address", "STRING", "EMAIL_ADDRESS"),
    VariableSpec("billing_state", "STRING", "BILLING_STATE"),
    VariableSpec("user_agent", "STRING", "USERAGENT"),
    VariableSpec("billing_postal", "STRING", "BILLING_ZIP"),
    VariableSpec("phone_number", "STRING", "PHONE_NUMBER"),
    VariableSpec("billing_address", "STRING", "FREE_FORM_TEXT"),
]
TRANSACTION_VARIABLES = [
    VariableSpec("card_bin", "INTEGER", "CARD_BIN"),
    VariableSpec("billing_state", "STRING", "BILLING_STATE"),
    VariableSpec("billing_zip", "STRING", "BILLING_ZIP"),
    VariableSpec("ip_address", "STRING", "IP_ADDRESS"),
    VariableSpec("customer_email", "STRING", "EMAIL_ADDRESS"),
    VariableSpec("billing_phone", "STRING", "PHONE_NUMBER"),
    VariableSpec("user_agent", "STRING", "USERAGENT"),
    VariableSpec("product_category", "STRING", "PRODUCT_CATEGORY"),
    VariableSpec("order_price", "FLOAT", "PRICE"),
    VariableSpec("payment_currency", "STRING", "CURRENCY_CODE"),
    VariableSpec("merchant", "STRING", "CATEGORICAL"),
]
UA_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 16_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/16.5 Mobile/15E148 Safari/604.1"
)
UA_CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)


def _sample(name: str) -> pl.DataFrame:
    path = SAMPLES / name
    if not path.exists():
        pytest.skip(f"AFD sample data not found at {path} (shared/data/afd-samples is absent)")
    df = pl.read_csv(path, infer_schema=False)
    return df.with_columns(timestamp_expr(df))


def _events(rows: Sequence[Mapping[str, str | None]], **extra: list[object]) -> pl.DataFrame:
    """Hand-made events: one Utf8 column per variable, timestamps one minute apart."""
    n = len(rows)
    names = sorted({k for r in rows for k in r})
    data: dict[str, list[object]] = {k: [r.get(k) for r in rows] for k in names}
    data.setdefault("EVENT_TIMESTAMP", [T0 + timedelta(minutes=i) for i in range(n)])
    data.update(extra)
    schema: dict[str, pl.DataType] = {k: pl.Utf8() for k in names}
    schema["EVENT_TIMESTAMP"] = pl.Datetime("us", "UTC")
    return pl.DataFrame(data, schema=schema)


def _same(a: pl.DataFrame, b: pl.DataFrame) -> bool:
    """Exact equality, NaN equal to NaN."""
    assert a.columns == b.columns
    x, y = a.to_numpy(), b.to_numpy()
    return bool(np.all((x == y) | (np.isnan(x) & np.isnan(y))))


def _feature(pipeline: FeaturePipeline, events: pl.DataFrame, name: str) -> list[float]:
    return pipeline.transform(events)[name].to_list()


# --- enrichment -------------------------------------------------------------------------------


def test_email_features() -> None:
    spec = [VariableSpec("email", "STRING", "EMAIL_ADDRESS")]
    ev = _events(
        [
            {"email": "Alice99@GMail.com"},
            {"email": "bob@corp.example"},
            {"email": None},
            {"email": "no-at-sign"},
        ]
    )
    p = FeaturePipeline.fit(ev, spec, rare_min_count=1)
    x = p.transform(ev)
    assert x["email__free_mail"].to_list()[:2] == [1.0, 0.0]
    assert math.isnan(x["email__free_mail"][2]) and math.isnan(x["email__free_mail"][3])
    assert x["email__user_len"].to_list()[:2] == [7.0, 3.0]
    assert x["email__user_digit_ratio"][0] == pytest.approx(2 / 7)
    # "alice99": a l i c e 9 9 -> 5 symbols once, one twice
    expected = -(5 * (1 / 7) * math.log2(1 / 7) + (2 / 7) * math.log2(2 / 7))
    assert x["email__user_entropy"][0] == pytest.approx(expected, rel=1e-6)
    bob = -((2 / 3) * math.log2(2 / 3) + (1 / 3) * math.log2(1 / 3))
    assert x["email__user_entropy"][1] == pytest.approx(bob, rel=1e-6)
    domains = x["email__domain"].to_list()
    vocab = p.vocabularies["email__domain"]
    assert domains[0] == vocab.index("gmail.com") and domains[1] == vocab.index("corp.example")
    assert math.isnan(domains[2]) and math.isnan(domains[3])
    assert x.schema["email__domain"] == pl.Float32


def test_ip_features() -> None:
    spec = [VariableSpec("ip", "STRING", "IP_ADDRESS")]
    values = ["10.0.0.1", "8.8.8.8", "192.168.1.20", "2001:4860::8888", "::1", "junk", None]
    ev = _events([{"ip": v} for v in values])
    x = FeaturePipeline.fit(ev, spec).transform(ev)
    version = x["ip__version"].to_list()
    private = x["ip__private"].to_list()
    assert version[:5] == [4.0, 4.0, 4.0, 6.0, 6.0]
    assert private[:5] == [1.0, 0.0, 1.0, 0.0, 1.0]
    assert all(math.isnan(v) for v in version[5:] + private[5:])


def test_ipv4_fast_path_agrees_with_ipaddress() -> None:
    spec = [VariableSpec("ip", "STRING", "IP_ADDRESS")]
    edges = [
        "0.0.0.0", "0.255.255.255", "1.0.0.0", "9.255.255.255", "10.0.0.0", "10.255.255.255",
        "11.0.0.0", "126.255.255.255", "127.0.0.1", "128.0.0.0", "169.253.255.255", "169.254.0.1",
        "169.255.0.0", "172.15.255.255", "172.16.0.0", "172.31.255.255", "172.32.0.0",
        "192.0.0.7", "192.0.0.8", "192.0.0.170", "192.0.0.171", "192.0.0.172", "192.0.2.1",
        "192.167.255.255", "192.168.0.0", "192.169.0.0", "198.17.255.255", "198.18.0.0",
        "198.19.255.255", "198.20.0.0", "198.51.100.7", "203.0.113.9", "223.255.255.255",
        "224.0.0.1", "239.255.255.255", "240.0.0.1", "255.255.255.255", "8.8.4.4",
    ]  # fmt: skip
    x = FeaturePipeline.fit(_events([{"ip": v} for v in edges]), spec).transform(
        _events([{"ip": v} for v in edges])
    )
    for value, flag in zip(edges, x["ip__private"].to_list(), strict=True):
        a = ipaddress.ip_address(value)
        expected = (
            a.is_private
            or a.is_reserved
            or a.is_loopback
            or a.is_link_local
            or a.is_multicast
            or a.is_unspecified
        )
        assert flag == float(expected), value


def test_ip_prefixes_are_rare_bucketed() -> None:
    spec = [VariableSpec("ip", "STRING", "IP_ADDRESS")]
    rows = [{"ip": f"81.2.{i % 3}.{i}"} for i in range(60)] + [{"ip": "5.6.7.8"}]
    ev = _events(rows)
    p = FeaturePipeline.fit(ev, spec, rare_min_count=20)
    assert p.vocabularies["ip__prefix16"] == ["81.2"]
    assert p.vocabularies["ip__prefix24"] == ["81.2.0", "81.2.1", "81.2.2"]
    x = p.transform(ev)
    assert x["ip__prefix16"].to_list() == [0.0] * 60 + [1.0]
    assert x["ip__prefix24"][-1] == 3.0  # the rare/unseen code
    assert set(p.categorical_features) == {"ip__prefix16", "ip__prefix24"}


def test_phone_features_tolerate_junk() -> None:
    spec = [VariableSpec("phone", "STRING", "PHONE_NUMBER")]
    values = ["(555)355 - 1785", "+44 20 7946 0958", "+1 650-253-0000", "not a phone", None]
    ev = _events([{"phone": v} for v in values])
    x = FeaturePipeline.fit(ev, spec).transform(ev)
    assert x["phone__country_code"].to_list()[:3] == [1.0, 44.0, 1.0]
    assert math.isnan(x["phone__country_code"][3])
    assert x["phone__valid"].to_list()[:4] == [0.0, 1.0, 1.0, 0.0]  # 555 numbers are fictional
    assert x["phone__possible"][0] == 1.0
    assert math.isnan(x["phone__valid"][4])


def test_user_agent_families() -> None:
    spec = [VariableSpec("ua", "STRING", "USERAGENT")]
    ev = _events([{"ua": UA_IPHONE}, {"ua": UA_CHROME}, {"ua": None}])
    p = FeaturePipeline.fit(ev, spec, rare_min_count=1)
    x = p.transform(ev)

    def family(name: str, row: int) -> str:
        return p.vocabularies[name][int(x[name][row])]

    assert family("ua__browser", 0) == "Mobile Safari" and family("ua__os", 0) == "iOS"
    assert family("ua__device", 0) == "iPhone"
    assert family("ua__browser", 1) == "Chrome" and family("ua__os", 1) == "Windows"
    assert x["ua__is_mobile"].to_list()[:2] == [1.0, 0.0]
    assert math.isnan(x["ua__browser"][2])


def test_card_bin_features() -> None:
    spec = [VariableSpec("bin", "INTEGER", "CARD_BIN")]
    ev = _events([{"bin": "411111"}, {"bin": "5500 00"}, {"bin": None}])
    x = FeaturePipeline.fit(ev, spec, rare_min_count=1).transform(ev)
    assert x["bin__prefix1"].to_list()[:2] == [4.0, 5.0]
    assert x["bin__prefix2"].to_list()[:2] == [41.0, 55.0]
    assert x["bin__length"].to_list()[:2] == [6.0, 6.0]
    assert x["bin"].to_list()[:2] == [0.0, 1.0]  # both seen once: tie broken by value
    assert math.isnan(x["bin"][2])


def test_plain_types_defaults_and_exclusions() -> None:
    specs = [
        VariableSpec("amount", "FLOAT", "PRICE"),
        VariableSpec("qty", "INTEGER", "NUMERIC", default_value="1"),
        VariableSpec("flag", "BOOLEAN", "CATEGORICAL"),
        VariableSpec("when", "DATETIME", "CATEGORICAL"),
        VariableSpec("order_id", "STRING", "ORDER_ID"),
        VariableSpec("device", "STRING", "FINGERPRINT"),
    ]
    ev = _events(
        [
            {"amount": "12.5", "qty": "3", "flag": "true", "when": "2024-03-09T23:15:00Z"},
            {"amount": "abc", "qty": None, "flag": "0", "when": "2024-03-04 06:00:00"},
            {"amount": None, "qty": " ", "flag": "maybe", "when": "never"},
        ]
    )
    p = FeaturePipeline.fit(ev, specs)
    x = p.transform(ev)
    assert p.excluded_variables.keys() == {"order_id", "device"}
    assert not is_model_input(specs[4])
    assert all(p.feature_variable[f] not in ("order_id", "device") for f in p.feature_names)
    assert x["amount"][0] == 12.5 and math.isnan(x["amount"][1]) and math.isnan(x["amount"][2])
    assert x["qty"].to_list() == [3.0, 1.0, 1.0]  # default applied to missing and blank
    assert x["flag"][0] == 1.0 and x["flag"][1] == 0.0 and math.isnan(x["flag"][2])
    assert x["when__hour"][0] == 23.0 and x["when__dow"][0] == 5.0  # Saturday
    assert x["when__hour"][1] == 6.0 and x["when__dow"][1] == 0.0  # Monday
    assert math.isnan(x["when__hour"][2])
    assert x.dtypes == [pl.Float32] * x.width
    assert x.columns == p.feature_names


def test_free_form_text_hashing_is_stable_and_normalised() -> None:
    spec = [VariableSpec("note", "STRING", "FREE_FORM_TEXT")]
    ev = _events([{"note": "Ship to 12 Main St"}, {"note": "ship  TO 12 main st"}, {"note": None}])
    p = FeaturePipeline.fit(ev, spec, text_buckets=8)
    x = p.transform(ev)
    tok = [f"note__tok{i:02d}" for i in range(8)]
    chars = [f"note__chr{i:02d}" for i in range(8)]
    assert x.select(tok).row(0) == x.select(tok).row(1)  # case and spacing do not matter
    assert sum(x.select(tok).row(0)) == pytest.approx(1.0)
    assert sum(x.select(chars).row(0)) == pytest.approx(1.0)
    assert x["note__tokens"][0] == 5.0
    assert all(math.isnan(v) for v in x.select(tok).row(2))
    # Same buckets in a fresh pipeline (no dependence on Python's per-process hash seed).
    again = FeaturePipeline.fit(ev, spec, text_buckets=8).transform(ev)
    assert _same(x, again)


def test_categorical_rare_bucketing_and_max_categories() -> None:
    spec = [VariableSpec("cat", "STRING", "CATEGORICAL")]
    rows = [{"cat": "a"}] * 30 + [{"cat": "b"}] * 25 + [{"cat": "c"}] * 21 + [{"cat": "d"}] * 5
    ev = _events(rows)
    p = FeaturePipeline.fit(ev, spec, rare_min_count=20, max_categories=3)
    assert p.vocabularies["cat"] == ["a", "b"]  # c is frequent enough but over the cap
    x = p.transform(_events([{"cat": "a"}, {"cat": "b"}, {"cat": "c"}, {"cat": "zzz"}, {}]))
    codes = x["cat"].to_list()
    assert codes[:4] == [0.0, 1.0, 2.0, 2.0] and math.isnan(codes[4])


def test_events_without_variables_or_rows() -> None:
    ev = _sample("transaction_data_2K_coldstart.csv")
    p = FeaturePipeline.fit(ev, TRANSACTION_VARIABLES, model_type="TRANSACTION_FRAUD_INSIGHTS")
    assert p.transform(ev[:0]).columns == p.feature_names
    bare = p.transform(pl.DataFrame({"ENTITY_ID": ["someone"]}))
    assert bare.height == 1 and all(math.isnan(v) for v in bare.row(0))


# --- one pipeline for training and prediction ------------------------------------------------


@pytest.mark.parametrize(
    ("name", "variables", "rows"),
    [
        ("registration_data_2K_coldstart.csv", REGISTRATION_VARIABLES, 50),
        # Repeated values here make the batch take the derive-once-per-distinct-value path.
        ("transaction_data_2K_coldstart.csv", TRANSACTION_VARIABLES, 25),
    ],
)
def test_one_row_features_equal_batch_features(
    name: str, variables: list[VariableSpec], rows: int
) -> None:
    ev = _sample(name)
    p = FeaturePipeline.fit(ev, variables)
    batch = p.transform(ev)
    assert batch.columns == p.feature_names and batch.height == ev.height
    for i in random.Random(7).sample(range(ev.height), rows):
        assert _same(p.transform(ev[i : i + 1]), batch[i : i + 1]), f"row {i}"


def test_to_dict_round_trip_gives_identical_features() -> None:
    ev = _sample("transaction_data_2K_coldstart.csv")
    p = FeaturePipeline.fit(ev, TRANSACTION_VARIABLES, model_type="TRANSACTION_FRAUD_INSIGHTS")
    stored = json.loads(json.dumps(p.to_dict()))
    q = FeaturePipeline.from_dict(stored)
    assert q.feature_names == p.feature_names
    assert q.categorical_features == p.categorical_features
    assert q.feature_variable == p.feature_variable
    assert _same(q.transform(ev), p.transform(ev))


def test_tfi_pipeline_feature_variables() -> None:
    ev = _sample("transaction_data_2K_coldstart.csv")
    p = FeaturePipeline.fit(ev, TRANSACTION_VARIABLES, model_type="TRANSACTION_FRAUD_INSIGHTS")
    assert p.amount_variable == "order_price"
    assert p.value_variables == [
        "card_bin",
        "billing_zip",
        "ip_address",
        "customer_email",
        "billing_phone",
        "user_agent",
    ]
    assert p.feature_variable["ENTITY_ID__count_1h"] == "ENTITY_ID"
    assert p.feature_variable["order_price__entity_sum_7d"] == "order_price"
    assert p.feature_variable["card_bin__entity_same_count"] == "card_bin"
    assert set(p.feature_variable) == set(p.feature_names)


def test_tfi_batch_equals_sequential_prediction_path() -> None:
    ev = _sample("transaction_data_2K_coldstart.csv")
    p = FeaturePipeline.fit(ev, TRANSACTION_VARIABLES, model_type="TRANSACTION_FRAUD_INSIGHTS")
    batch = p.transform(ev)
    # Aggregates only look at the entity's own events, so a handful of busy entities, replayed
    # event by event through transform(one_row, history) + observe, must match the full batch.
    busy = ev.group_by("ENTITY_ID").len().sort(["len", "ENTITY_ID"], descending=True)["ENTITY_ID"]
    rows = (
        ev.with_row_index("_i")
        .filter(pl.col("ENTITY_ID").is_in(busy.head(12).to_list()))
        .sort("EVENT_TIMESTAMP", "_i")
    )
    h = p.new_history()
    for i in rows["_i"].to_list():
        one = ev[i : i + 1]
        assert _same(p.transform(one, history=h), batch[i : i + 1]), f"row {i}"
        p.observe(h, one)
    assert rows.height >= 100


def test_batch_aggregates_equal_entity_history_on_whole_sample() -> None:
    ev = _sample("transaction_data_2K_coldstart.csv")
    p = FeaturePipeline.fit(ev, TRANSACTION_VARIABLES, model_type="TRANSACTION_FRAUD_INSIGHTS")
    inp = p._aggregate_input(ev)
    batch = batch_aggregates(
        inp,
        windows=p.windows,
        amount_variable=p.amount_variable,
        value_variables=p.value_variables,
    )
    h = p.new_history()
    rows = p._rows_for_history(ev)
    order = sorted(range(len(rows)), key=lambda i: rows[i][1])
    seq: list[list[float]] = [[]] * len(rows)
    for i in order:
        entity, ts, amount, values, _ = rows[i]
        assert entity is not None
        seq[i] = list(h.features(entity, ts, values).values())
        h.observe(entity, ts, amount, values)
    assert _same(batch, pl.DataFrame(seq, schema=batch.columns, orient="row"))
    assert (batch["ENTITY_ID__count_30d"] > 0).any()


def _random_events(seed: int, n: int) -> pl.DataFrame:
    rng = random.Random(seed)
    offsets = [0, 1, 30, 59, 60, 61, 1439, 1440, 10080, 43199, 43200, 50000]
    return pl.DataFrame(
        {
            "ENTITY_ID": [rng.choice(["a", "b", "c", None]) for _ in range(n)],
            "EVENT_TIMESTAMP": [
                T0 + timedelta(minutes=rng.choice(offsets) * rng.randint(0, 2))
                if rng.random() > 0.05
                else None
                for _ in range(n)
            ],
            "amount": [rng.choice(["1.5", "2.25", None, "x", "0.00005", "-3"]) for _ in range(n)],
            "card": [rng.choice(["x", "y", "z", None]) for _ in range(n)],
        },
        schema={
            "ENTITY_ID": pl.Utf8,
            "EVENT_TIMESTAMP": pl.Datetime("us", "UTC"),
            "amount": pl.Utf8,
            "card": pl.Utf8,
        },
    )


@pytest.mark.parametrize("seed", range(8))
def test_batch_aggregates_equal_history_with_ties_and_gaps(seed: int) -> None:
    ev = _random_events(seed, 150)
    windows = (timedelta(hours=1), timedelta(days=1), timedelta(days=30))
    batch = batch_aggregates(
        ev, windows=windows, amount_variable="amount", value_variables=["card"]
    )
    h = EntityHistory(windows=windows, amount_variable="amount", value_variables=["card"])
    amounts = ev.select(pl.col("amount").cast(pl.Float64, strict=False))["amount"].to_list()
    recs = ev.to_dicts()
    usable = [i for i, r in enumerate(recs) if r["ENTITY_ID"] and r["EVENT_TIMESTAMP"]]
    random.Random(seed).shuffle(usable)  # arbitrary order among equal timestamps
    usable.sort(key=lambda i: recs[i]["EVENT_TIMESTAMP"])
    expected = np.full((ev.height, batch.width), np.nan)
    for i in usable:
        r = recs[i]
        expected[i] = list(h.features(r["ENTITY_ID"], r["EVENT_TIMESTAMP"], r).values())
        h.observe(r["ENTITY_ID"], r["EVENT_TIMESTAMP"], amounts[i], r)
    assert _same(batch, pl.DataFrame(expected, schema=batch.columns))


def test_no_look_ahead_and_tie_rule() -> None:
    ev = pl.DataFrame(
        {
            "ENTITY_ID": ["e", "e", "e", "e", "f"],
            "EVENT_TIMESTAMP": [T0, T0, T0 + timedelta(minutes=30), T0 + timedelta(hours=2), T0],
            "amount": ["10", "20", "5", "1", "99"],
            "card": ["x", "x", "x", "y", "x"],
        },
        schema_overrides={"EVENT_TIMESTAMP": pl.Datetime("us", "UTC")},
    )
    out = batch_aggregates(
        ev,
        windows=[timedelta(hours=1), timedelta(days=1)],
        amount_variable="amount",
        value_variables=["card"],
    )
    assert out["ENTITY_ID__count_1h"].to_list() == [0.0, 0.0, 2.0, 0.0, 0.0]
    assert out["ENTITY_ID__count_1d"].to_list() == [0.0, 0.0, 2.0, 3.0, 0.0]
    assert out["amount__entity_sum_1h"].to_list() == [0.0, 0.0, 30.0, 0.0, 0.0]
    assert out["amount__entity_mean_1d"][2] == 15.0 and math.isnan(out["amount__entity_mean_1d"][0])
    assert out["card__entity_same_count"].to_list() == [0.0, 0.0, 2.0, 0.0, 0.0]
    assert out["card__entity_distinct"].to_list() == [0.0, 0.0, 1.0, 1.0, 0.0]
    secs = out["ENTITY_ID__secs_since_prev"].to_list()
    assert math.isnan(secs[0]) and math.isnan(secs[1]) and secs[2:4] == [1800.0, 5400.0]
    # Changing anything at or after an event's own time never changes its features.
    later = ev.with_columns(
        pl.when(pl.col("EVENT_TIMESTAMP") >= T0 + timedelta(minutes=30))
        .then(pl.lit("9999"))
        .otherwise(pl.col("amount"))
        .alias("amount")
    )
    again = batch_aggregates(
        later,
        windows=[timedelta(hours=1), timedelta(days=1)],
        amount_variable="amount",
        value_variables=["card"],
    )
    assert _same(out[:3], again[:3])


def test_entity_history_drops_old_events_but_keeps_value_counts() -> None:
    h = EntityHistory(windows=[timedelta(hours=1)], amount_variable=None, value_variables=["card"])
    for i in range(100):
        h.observe("e", T0 + timedelta(hours=i), None, {"card": "x"})
    state = h._entities["e"]
    assert len(state.ts) == 2  # the latest event and the one exactly a window before it
    f = h.features("e", T0 + timedelta(hours=100), {"card": "x"})
    assert f["card__entity_same_count"] == 100.0 and f["ENTITY_ID__count_1h"] == 1.0
    assert f["ENTITY_ID__secs_since_prev"] == 3600.0
    restored = EntityHistory.from_dict(json.loads(json.dumps(h.to_dict())))
    assert restored.features("e", T0 + timedelta(hours=100), {"card": "x"}) == f


def test_an_event_seen_again_replaces_itself_in_the_history() -> None:
    """A resent event (same id and time: AFD overwrites it) must not count twice."""
    h = EntityHistory(amount_variable="amount", value_variables=["card"])
    h.observe("e", T0, 10.0, {"card": "x"}, key="ev-1@t0")
    h.observe("e", T0, 25.0, {"card": "y"}, key="ev-1@t0")  # the overwrite: new values
    h.observe("e", T0, 5.0, {"card": "y"}, key="ev-2@t0")  # another event at the same time
    later = T0 + timedelta(minutes=5)
    f = h.features("e", later, {"card": "y"})
    assert f["ENTITY_ID__count_1h"] == 2.0 and f["amount__entity_sum_1h"] == 30.0
    assert f["card__entity_same_count"] == 2.0 and f["card__entity_distinct"] == 1.0
    assert h.features("e", later, {"card": "x"})["card__entity_same_count"] == 0.0
    restored = EntityHistory.from_dict(json.loads(json.dumps(h.to_dict())))
    restored.observe("e", T0, 25.0, {"card": "y"}, key="ev-1@t0")
    assert restored.features("e", later, {"card": "y"}) == f


def test_pipeline_observe_keys_events_by_id_and_time() -> None:
    ev = _sample("transaction_data_2K_coldstart.csv")
    p = FeaturePipeline.fit(ev, TRANSACTION_VARIABLES, model_type="TRANSACTION_FRAUD_INSIGHTS")
    once, twice = p.new_history(), p.new_history()
    p.observe(once, ev)
    p.observe(twice, ev)
    # Retries come soon after: the newest events, within every entity's largest window.
    p.observe(twice, ev.sort("EVENT_TIMESTAMP").tail(300))
    probe = ev.tail(50).with_columns(
        pl.col("EVENT_TIMESTAMP") + timedelta(seconds=1), pl.lit("probe").alias("EVENT_ID")
    )
    assert _same(p.transform(probe, history=twice), p.transform(probe, history=once))


def test_window_labels() -> None:
    assert [window_label(w) for w in (timedelta(hours=1), timedelta(days=30))] == ["1h", "30d"]
    assert window_label(timedelta(minutes=15)) == "15m"
    with pytest.raises(ValueError):
        window_label(timedelta(milliseconds=1))
