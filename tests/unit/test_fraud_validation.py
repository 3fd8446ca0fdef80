"""Fraud training-data validation: each AFD-style check fires when it should, and only then."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from services.fraud.domain.features import VariableSpec, timestamp_expr
from services.fraud.domain.validation import Finding, label_events, validate_training_data

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "afd-samples"
START = datetime(2024, 1, 1, tzinfo=UTC)
NOW = datetime(2024, 12, 1, tzinfo=UTC)
VARIABLES = [
    VariableSpec("ip_address", "STRING", "IP_ADDRESS"),
    VariableSpec("email_address", "STRING", "EMAIL_ADDRESS"),
    VariableSpec("billing_state", "STRING", "BILLING_STATE"),
]
LABELS: dict[str, Any] = {"fraud_labels": ["fraud"], "legit_labels": ["legit"]}


def _events(
    n: int = 12_000,
    fraud_rate: float = 0.05,
    weeks: int = 26,
    seed: int = 0,
    rate_by_week: list[float] | None = None,
) -> pl.DataFrame:
    """Synthetic events spread evenly over `weeks` weeks, labels drawn at `fraud_rate`."""
    rng = np.random.default_rng(seed)
    offsets = np.sort(rng.integers(0, weeks * 7 * 86_400, n))
    week = offsets // (7 * 86_400)
    rate = np.asarray(rate_by_week)[week] if rate_by_week is not None else fraud_rate
    fraud = rng.random(n) < rate
    return pl.DataFrame(
        {
            "EVENT_ID": [f"ev{i}" for i in range(n)],
            "EVENT_TIMESTAMP": [START + timedelta(seconds=int(s)) for s in offsets],
            "ENTITY_TYPE": ["customer"] * n,
            "ENTITY_ID": [f"c{i}" for i in rng.integers(0, 3000, n)],
            "EVENT_LABEL": np.where(fraud, "fraud", "legit").tolist(),
            "ip_address": [f"10.{a}.{b}.1" for a, b in rng.integers(0, 200, (n, 2))],
            "email_address": [f"user{i}@example.com" for i in rng.integers(0, 5000, n)],
            "billing_state": rng.choice(["NY", "CA", "TX", "WA"], n).tolist(),
        },
        schema_overrides={"EVENT_TIMESTAMP": pl.Datetime("us", "UTC")},
    )


def _validate(events: pl.DataFrame, **kw: Any) -> list[Finding]:
    args: dict[str, Any] = {
        "model_type": "ONLINE_FRAUD_INSIGHTS",
        "unlabeled": "IGNORE",
        "now": NOW,
        **LABELS,
        **kw,
    }
    variables = args.pop("variables", VARIABLES)
    return validate_training_data(events, variables, **args)


def _codes(findings: list[Finding], level: str | None = None) -> set[str]:
    return {f.code for f in findings if level is None or f.level == level}


def _sample(name: str) -> pl.DataFrame:
    path = SAMPLES / name
    if not path.exists():
        pytest.skip(f"AFD sample data not found at {path} (shared/data/afd-samples is absent)")
    df = pl.read_csv(path, infer_schema=False)
    return df.with_columns(timestamp_expr(df))


# --- labels -----------------------------------------------------------------------------------


def test_label_events_maps_labels_and_treats_unlabeled_per_setting() -> None:
    ev = pl.DataFrame({"EVENT_LABEL": ["fraud", "legit", None, "", "abuse", " legit "]})
    kw: dict[str, Any] = {"fraud_labels": ["fraud"], "legit_labels": ["legit"]}
    assert label_events(ev, unlabeled="IGNORE", **kw)["_label"].to_list() == [1, 0, 0]
    assert label_events(ev, unlabeled="FRAUD", **kw)["_label"].to_list() == [1, 0, 1, 1, 0]
    assert label_events(ev, unlabeled="LEGIT", **kw)["_label"].to_list() == [1, 0, 0, 0, 0]
    assert label_events(ev, unlabeled="IGNORE", **kw).schema["_label"] == pl.Int8


def test_clean_data_has_no_errors_or_warnings() -> None:
    findings = _validate(_events())
    assert not _codes(findings, "ERROR") and not _codes(findings, "WARNING")
    assert {"LABEL_SUMMARY", "MISSING_VALUE_RATES"} <= _codes(findings, "INFO")


def test_unmapped_labels_are_named() -> None:
    ev = _events().with_columns(
        pl.when(pl.int_range(pl.len()) < 3)
        .then(pl.lit("chargeback"))
        .otherwise(pl.col("EVENT_LABEL"))
        .alias("EVENT_LABEL")
    )
    (finding,) = [f for f in _validate(ev) if f.code == "UNMAPPED_LABELS"]
    assert finding.level == "ERROR" and "'chargeback' (3)" in finding.message
    assert finding.details["labels"] == {"chargeback": 3}


def test_label_mapper_overlap_and_empty_classes() -> None:
    codes = _codes(_validate(_events(), fraud_labels=["fraud", "legit"]), "ERROR")
    assert "LABEL_IN_BOTH_CLASSES" in codes
    assert "EMPTY_LABEL_MAPPER" in _codes(_validate(_events(), legit_labels=[]), "ERROR")


# --- sizes --------------------------------------------------------------------------------------


def test_too_few_events() -> None:
    assert "TOO_FEW_EVENTS" in _codes(_validate(_events(n=9_000, fraud_rate=0.1)), "ERROR")
    assert "TOO_FEW_EVENTS" not in _codes(_validate(_events(n=10_000, fraud_rate=0.1)))
    assert "TOO_FEW_EVENTS" not in _codes(_validate(_events(n=900, fraud_rate=0.5), min_events=500))


def test_too_few_fraud_events() -> None:
    assert "TOO_FEW_FRAUD_EVENTS" in _codes(_validate(_events(fraud_rate=0.02)), "ERROR")
    assert "TOO_FEW_FRAUD_EVENTS" not in _codes(_validate(_events(fraud_rate=0.05)))


def test_unlabeled_events_count_only_when_mapped() -> None:
    ev = _events(n=12_000).with_columns(
        pl.when(pl.int_range(pl.len()) % 4 == 0)
        .then(None)
        .otherwise(pl.col("EVENT_LABEL"))
        .alias("EVENT_LABEL")
    )
    ignored = [f for f in _validate(ev) if f.code == "TOO_FEW_EVENTS"]
    assert ignored and "unlabeled" in ignored[0].message
    assert "TOO_FEW_EVENTS" not in _codes(_validate(ev, unlabeled="LEGIT"))


def test_too_few_variables() -> None:
    one = [VARIABLES[0], VariableSpec("EVENT_ID", "STRING", "ORDER_ID")]
    findings = _validate(_events(), variables=one)
    assert "TOO_FEW_VARIABLES" in _codes(findings, "ERROR")
    assert "VARIABLE_NOT_USED" in _codes(findings, "INFO")
    assert "TOO_FEW_VARIABLES" not in _codes(_validate(_events(), variables=VARIABLES[:2]))


def test_tfi_needs_entities_in_each_class() -> None:
    ev = _events()
    few = ev.with_columns(
        pl.when(pl.col("EVENT_LABEL") == "fraud")
        .then(pl.lit("c") + (pl.int_range(pl.len()) % 50).cast(pl.Utf8))
        .otherwise(pl.col("ENTITY_ID"))
        .alias("ENTITY_ID")
    )
    (finding,) = [
        f for f in _validate(few, model_type="TRANSACTION_FRAUD_INSIGHTS") if f.level == "ERROR"
    ]
    assert finding.code == "TOO_FEW_ENTITIES" and finding.details["fraud_entities"] == 50
    assert not _codes(_validate(ev, model_type="TRANSACTION_FRAUD_INSIGHTS"), "ERROR")
    assert "TOO_FEW_ENTITIES" not in _codes(_validate(few))  # OFI does not need entities


# --- variables ------------------------------------------------------------------------------


def test_missing_rate_warning_and_info() -> None:
    ev = _events().with_columns(
        pl.when(pl.int_range(pl.len()) % 4 == 0).then(pl.lit("")).otherwise("ip_address")
        .alias("ip_address"),
        pl.when(pl.int_range(pl.len()) % 10 == 0).then(None).otherwise("email_address")
        .alias("email_address"),
    )  # fmt: skip
    findings = _validate(ev)
    high = [f for f in findings if f.code == "HIGH_MISSING_RATE"]
    assert [f.details["variable"] for f in high] == ["ip_address"]
    assert high[0].level == "WARNING" and "25%" in high[0].message
    (rates,) = [f for f in findings if f.code == "MISSING_VALUE_RATES"]
    assert rates.details["rates"] == {
        "ip_address": 0.25,
        "email_address": 0.1,
        "billing_state": 0.0,
    }


def test_variable_missing_from_data() -> None:
    extra = [*VARIABLES, VariableSpec("device", "STRING", "CATEGORICAL")]
    assert "VARIABLE_NOT_IN_DATA" in _codes(_validate(_events(), variables=extra), "WARNING")


def test_single_value_variable() -> None:
    ev = _events().with_columns(pl.lit("US").alias("billing_state"))
    (finding,) = [f for f in _validate(ev) if f.code == "SINGLE_VALUE_VARIABLE"]
    assert finding.level == "WARNING" and finding.details["variable"] == "billing_state"


# --- time -------------------------------------------------------------------------------------


def test_label_maturity() -> None:
    rates = [0.06] * 22 + [0.01] * 4
    (finding,) = [
        f for f in _validate(_events(rate_by_week=rates)) if f.code == "LABELS_MAY_NOT_BE_MATURE"
    ]
    assert finding.level == "WARNING" and "not be mature" in finding.message
    assert finding.details["recent_fraud_rate"] < 0.02
    steady = _events(rate_by_week=[0.06] * 26)
    assert "LABELS_MAY_NOT_BE_MATURE" not in _codes(_validate(steady))


def test_unstable_fraud_rate() -> None:
    swinging = [0.01, 0.12] * 13
    (finding,) = [
        f for f in _validate(_events(rate_by_week=swinging)) if f.code == "UNSTABLE_FRAUD_RATE"
    ]
    assert finding.level == "WARNING" and finding.details["excess_cv"] > 0.5
    # Weekly noise from ~460 events a week at 5% is not instability.
    assert "UNSTABLE_FRAUD_RATE" not in _codes(_validate(_events()))


def test_unparseable_and_future_timestamps() -> None:
    ev = _events(n=10_500, fraud_rate=0.1).with_columns(pl.col("EVENT_TIMESTAMP").cast(pl.Utf8))
    raw = ev.with_columns(
        pl.when(pl.int_range(pl.len()) == 5)
        .then(pl.lit("yesterday"))
        .when(pl.int_range(pl.len()) == 6)
        .then(pl.lit("2031-01-01T00:00:00Z"))
        .otherwise(pl.col("EVENT_TIMESTAMP"))
        .alias("EVENT_TIMESTAMP")
    )
    findings = _validate(raw)
    (bad,) = [f for f in findings if f.code == "INVALID_TIMESTAMPS"]
    assert bad.level == "ERROR" and bad.details == {"count": 1, "examples": ["yesterday"]}
    (future,) = [f for f in findings if f.code == "FUTURE_TIMESTAMPS"]
    assert future.level == "WARNING" and future.details["count"] == 1
    assert not _codes(_validate(ev), "ERROR")  # ISO strings parse fine


# --- the real AFD samples ---------------------------------------------------------------------


def test_registration_20k_sample_passes() -> None:
    ev = _sample("registration_data_20K_minimum.csv")
    findings = _validate(ev, variables=VARIABLES[:2])
    assert not _codes(findings, "ERROR"), [f.message for f in findings]
    (summary,) = [f for f in findings if f.code == "LABEL_SUMMARY"]
    assert summary.details["used"] == 20_000 and summary.details["fraud"] >= 400
    assert summary.details["fraud_rate"] == pytest.approx(0.05, abs=0.002)


@pytest.mark.parametrize(
    ("name", "model_type", "labels"),
    [
        ("registration_data_2K_coldstart.csv", "ONLINE_FRAUD_INSIGHTS", ("fraud", "legit")),
        ("transaction_data_2K_coldstart.csv", "TRANSACTION_FRAUD_INSIGHTS", ("1", "0")),
        (
            "Insurance_FraudulentAutoInsuranceClaims_2K_coldstart.csv",
            "ONLINE_FRAUD_INSIGHTS",
            ("fraud", "legit"),
        ),
    ],
)
def test_2k_samples_are_too_small(name: str, model_type: str, labels: tuple[str, str]) -> None:
    ev = _sample(name)
    variables = [
        VariableSpec(c, "STRING", "CATEGORICAL")
        for c in ev.columns
        if c.upper() != c  # the variables are the lower-case columns
    ]
    findings = _validate(
        ev,
        variables=variables,
        model_type=model_type,
        fraud_labels=[labels[0]],
        legit_labels=[labels[1]],
    )
    assert "TOO_FEW_EVENTS" in _codes(findings, "ERROR")
    assert "UNMAPPED_LABELS" not in _codes(findings)
