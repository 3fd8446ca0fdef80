"""Training-data validation before a Fraud Detector model is trained, as AFD does it."""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import polars as pl

from services.fraud.domain.features import (
    EXCLUDED_VARIABLE_TYPES,
    ModelType,
    VariableSpec,
    is_model_input,
    timestamp_expr,
)

Level = Literal["ERROR", "WARNING", "INFO"]
Unlabeled = Literal["IGNORE", "FRAUD", "LEGIT"]

LABEL_COLUMN = "_label"
# AFD's published minimums for training data.
MIN_EVENTS = 10_000
MIN_FRAUD_EVENTS = 400
MIN_VARIABLES = 2
MIN_ENTITIES_PER_CLASS = 100


@dataclass(frozen=True)
class Finding:
    """One validation result. ERROR blocks training; WARNING and INFO only advise."""

    level: Level
    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


def _label_text() -> pl.Expr:
    return pl.col("EVENT_LABEL").cast(pl.Utf8).str.strip_chars()


def _unlabeled(label: pl.Expr) -> pl.Expr:
    return label.is_null() | (label.str.len_chars() == 0)


def label_events(
    events: pl.DataFrame,
    *,
    fraud_labels: Collection[str],
    legit_labels: Collection[str],
    unlabeled: Unlabeled,
) -> pl.DataFrame:
    """Adds `_label` (1 fraud, 0 legit, Int8); unlabeled events are dropped or mapped per `unlabeled`.

    Events whose label is in neither set are dropped here; validation reports them as an ERROR.
    """
    label = _label_text() if "EVENT_LABEL" in events.columns else pl.lit(None, dtype=pl.Utf8)
    fallback = {"IGNORE": None, "FRAUD": 1, "LEGIT": 0}[unlabeled]
    value = (
        pl.when(label.is_in(list(fraud_labels)))
        .then(pl.lit(1))
        .when(label.is_in(list(legit_labels)))
        .then(pl.lit(0))
        .when(_unlabeled(label))
        .then(pl.lit(fallback))
        .otherwise(None)
        .cast(pl.Int8)
    )
    return events.with_columns(value.alias(LABEL_COLUMN)).filter(pl.col(LABEL_COLUMN).is_not_null())


def validate_training_data(
    events: pl.DataFrame,
    variables: Sequence[VariableSpec],
    *,
    model_type: ModelType,
    fraud_labels: Collection[str],
    legit_labels: Collection[str],
    unlabeled: Unlabeled,
    min_events: int = MIN_EVENTS,
    min_fraud_events: int = MIN_FRAUD_EVENTS,
    min_variables: int = MIN_VARIABLES,
    min_entities_per_class: int = MIN_ENTITIES_PER_CLASS,
    max_missing_rate: float = 0.2,
    maturity_weeks: int = 4,
    maturity_ratio: float = 0.5,
    max_fraud_rate_cv: float = 0.5,
    min_week_events: int = 50,
    future_tolerance: timedelta = timedelta(minutes=5),
    now: datetime | None = None,
) -> list[Finding]:
    """Checks AFD runs before training; any ERROR means the data cannot be trained on as it is.

    Counts are of the events training would use: labeled ones, plus unlabeled ones when
    `unlabeled` maps them to a class.
    """
    findings: list[Finding] = []
    now = now or datetime.now(UTC)
    if "EVENT_LABEL" not in events.columns and unlabeled == "IGNORE":
        findings.append(
            Finding(
                "ERROR",
                "MISSING_LABELS",
                "The data has no EVENT_LABEL column, so there is nothing to learn from. "
                "Add the label of each event (for example 'fraud' or 'legit').",
            )
        )
    findings += _check_label_mapper(events, fraud_labels, legit_labels)
    findings += _check_timestamps(events, now, future_tolerance)
    labeled = label_events(
        events, fraud_labels=fraud_labels, legit_labels=legit_labels, unlabeled=unlabeled
    )
    findings += _check_counts(labeled, events.height, unlabeled, min_events, min_fraud_events)
    if model_type == "TRANSACTION_FRAUD_INSIGHTS":
        findings += _check_entities(labeled, min_entities_per_class)
    findings += _check_variables(labeled, variables, min_variables, max_missing_rate)
    if "EVENT_TIMESTAMP" in labeled.columns:
        timed = labeled.select(timestamp_expr(labeled).alias("ts"), LABEL_COLUMN).drop_nulls("ts")
        findings += _check_maturity(timed, maturity_weeks, maturity_ratio)
        findings += _check_stability(timed, max_fraud_rate_cv, min_week_events)
    return findings


def _check_label_mapper(
    events: pl.DataFrame, fraud_labels: Collection[str], legit_labels: Collection[str]
) -> list[Finding]:
    out: list[Finding] = []
    if not fraud_labels or not legit_labels:
        out.append(
            Finding(
                "ERROR",
                "EMPTY_LABEL_MAPPER",
                "Both FRAUD and LEGIT need at least one label value. Map your event labels to "
                "the two classes (for example FRAUD: ['fraud'], LEGIT: ['legit']).",
                {"fraud_labels": sorted(fraud_labels), "legit_labels": sorted(legit_labels)},
            )
        )
    both = sorted(set(fraud_labels) & set(legit_labels))
    if both:
        out.append(
            Finding(
                "ERROR",
                "LABEL_IN_BOTH_CLASSES",
                f"The labels {both} are mapped to both FRAUD and LEGIT. Map each label to one "
                "class only.",
                {"labels": both},
            )
        )
    if "EVENT_LABEL" not in events.columns:
        return out
    known = set(fraud_labels) | set(legit_labels)
    counts = (
        events.select(_label_text().alias("label"))
        .filter(~_unlabeled(pl.col("label")))
        .group_by("label")
        .len()
        .sort("label")
    )
    unknown = {
        str(r["label"]): int(r["len"])
        for r in counts.iter_rows(named=True)
        if r["label"] not in known
    }
    if unknown:
        shown = ", ".join(f"'{k}' ({v})" for k, v in list(unknown.items())[:10])
        out.append(
            Finding(
                "ERROR",
                "UNMAPPED_LABELS",
                f"Some events have labels that are neither FRAUD nor LEGIT in the label mapper: "
                f"{shown}. Add these values to the mapper or fix the labels in the data.",
                {"labels": unknown},
            )
        )
    return out


def _check_timestamps(events: pl.DataFrame, now: datetime, tolerance: timedelta) -> list[Finding]:
    if "EVENT_TIMESTAMP" not in events.columns:
        return [
            Finding(
                "ERROR",
                "MISSING_TIMESTAMPS",
                "The data has no EVENT_TIMESTAMP column. Every event needs the time it happened, "
                "in ISO 8601 (for example 2023-03-06T15:05:50Z).",
            )
        ]
    parsed = events.select(
        pl.col("EVENT_TIMESTAMP").cast(pl.Utf8).alias("raw"), timestamp_expr(events).alias("ts")
    )
    out: list[Finding] = []
    bad = parsed.filter(pl.col("ts").is_null())
    if bad.height:
        examples = bad["raw"].drop_nulls().unique().sort().head(5).to_list()
        out.append(
            Finding(
                "ERROR",
                "INVALID_TIMESTAMPS",
                f"{bad.height} events have a missing or unreadable EVENT_TIMESTAMP"
                + (f" (for example {examples})" if examples else "")
                + ". Use ISO 8601 timestamps such as 2023-03-06T15:05:50Z.",
                {"count": bad.height, "examples": examples},
            )
        )
    limit = now + tolerance
    future = parsed.filter(pl.col("ts") > limit)
    if future.height:
        latest = str(future["ts"].max())
        out.append(
            Finding(
                "WARNING",
                "FUTURE_TIMESTAMPS",
                f"{future.height} events have an EVENT_TIMESTAMP in the future (latest {latest}). "
                "Check the time zone and clock of the system that exported them.",
                {"count": future.height, "latest": latest, "now": now.isoformat()},
            )
        )
    return out


def _check_counts(
    labeled: pl.DataFrame, total: int, unlabeled: Unlabeled, min_events: int, min_fraud: int
) -> list[Finding]:
    n = labeled.height
    fraud = int(labeled[LABEL_COLUMN].sum()) if n else 0
    legit = n - fraud
    summary = {
        "events": total,
        "used": n,
        "fraud": fraud,
        "legit": legit,
        "fraud_rate": fraud / n if n else None,
        "unlabeled_treatment": unlabeled,
    }
    out = [
        Finding(
            "INFO",
            "LABEL_SUMMARY",
            f"{n} of {total} events can be used for training: {fraud} fraud and {legit} legit"
            + (f" ({fraud / n:.1%} fraud)." if n else "."),
            summary,
        )
    ]
    if n < min_events:
        out.append(
            Finding(
                "ERROR",
                "TOO_FEW_EVENTS",
                f"Only {n} events can be used for training; at least {min_events} are needed. "
                + (
                    f"{total - n} events are unlabeled or unmapped and ignored: label them, or "
                    "treat unlabeled events as LEGIT if most of them are legitimate. "
                    if total > n and unlabeled == "IGNORE"
                    else ""
                )
                + "Add more history if you can.",
                {**summary, "minimum": min_events},
            )
        )
    if fraud < min_fraud:
        out.append(
            Finding(
                "ERROR",
                "TOO_FEW_FRAUD_EVENTS",
                f"Only {fraud} events are labeled as fraud; at least {min_fraud} are needed. "
                "Add more labeled fraud, or a longer time range.",
                {**summary, "minimum": min_fraud},
            )
        )
    if n and legit == 0:
        out.append(
            Finding(
                "ERROR",
                "NO_LEGIT_EVENTS",
                "No event is labeled as legitimate, so the model cannot learn what normal looks "
                "like. Check the label mapper's LEGIT values.",
                summary,
            )
        )
    return out


def _check_entities(labeled: pl.DataFrame, minimum: int) -> list[Finding]:
    if "ENTITY_ID" not in labeled.columns:
        return [
            Finding(
                "ERROR",
                "MISSING_ENTITY_ID",
                "Transaction Fraud Insights needs ENTITY_ID on every event (the customer, "
                "account or card the event belongs to).",
            )
        ]
    entity = pl.col("ENTITY_ID").cast(pl.Utf8).str.strip_chars()
    per_class = (
        labeled.filter(entity.is_not_null() & (entity.str.len_chars() > 0))
        .group_by(LABEL_COLUMN)
        .agg(entity.n_unique().alias("n"))
    )
    counts = {int(r[LABEL_COLUMN]): int(r["n"]) for r in per_class.iter_rows(named=True)}
    fraud, legit = counts.get(1, 0), counts.get(0, 0)
    if fraud >= minimum and legit >= minimum:
        return []
    return [
        Finding(
            "ERROR",
            "TOO_FEW_ENTITIES",
            f"Transaction Fraud Insights needs at least {minimum} distinct entities in each "
            f"class; the data has {fraud} with fraud events and {legit} with legit events. "
            "Add events from more entities.",
            {"fraud_entities": fraud, "legit_entities": legit, "minimum": minimum},
        )
    ]


def _check_variables(
    labeled: pl.DataFrame, variables: Sequence[VariableSpec], minimum: int, max_missing: float
) -> list[Finding]:
    out: list[Finding] = []
    usable = []
    rates: dict[str, float] = {}
    n = labeled.height
    for spec in variables:
        if not is_model_input(spec):
            reason = EXCLUDED_VARIABLE_TYPES[spec.variable_type.strip().upper()]
            out.append(
                Finding(
                    "INFO",
                    "VARIABLE_NOT_USED",
                    f"Variable '{spec.name}' ({spec.variable_type}) is not used as a model "
                    f"input: {reason}.",
                    {"variable": spec.name, "variable_type": spec.variable_type},
                )
            )
            continue
        if spec.name not in labeled.columns:
            out.append(
                Finding(
                    "WARNING",
                    "VARIABLE_NOT_IN_DATA",
                    f"Variable '{spec.name}' is not in the data; the model cannot learn from it. "
                    "Check the column name, or remove the variable from the event type.",
                    {"variable": spec.name},
                )
            )
            continue
        usable.append(spec.name)
        text = pl.col(spec.name).cast(pl.Utf8).str.strip_chars()
        stats = labeled.select(
            (text.is_null() | (text.str.len_chars() == 0)).sum().alias("missing"),
            pl.when(text.str.len_chars() > 0).then(text).drop_nulls().n_unique().alias("distinct"),
        ).row(0, named=True)
        rate = stats["missing"] / n if n else 0.0
        rates[spec.name] = rate
        if n and rate > max_missing:
            fill = (
                f"Missing values will be replaced by the default value '{spec.default_value}'."
                if spec.default_value
                else "The model treats missing values as unknown."
            )
            out.append(
                Finding(
                    "WARNING",
                    "HIGH_MISSING_RATE",
                    f"Variable '{spec.name}' is missing in {rate:.0%} of events (more than "
                    f"{max_missing:.0%}). {fill} Fill it in at the source if you can, or drop the "
                    "variable if it is rarely known.",
                    {"variable": spec.name, "missing_rate": rate, "threshold": max_missing},
                )
            )
        if stats["distinct"] == 1:
            out.append(
                Finding(
                    "WARNING",
                    "SINGLE_VALUE_VARIABLE",
                    f"Variable '{spec.name}' has the same value in every event, so it cannot "
                    "tell fraud from legitimate events. Remove it or check the export.",
                    {"variable": spec.name},
                )
            )
    if len(usable) < minimum:
        out.append(
            Finding(
                "ERROR",
                "TOO_FEW_VARIABLES",
                f"The model needs at least {minimum} usable variables; found {len(usable)} "
                f"({usable}). Add more event variables to the event type and the data.",
                {"variables": usable, "minimum": minimum},
            )
        )
    if rates:
        listing = ", ".join(f"{k} {v:.1%}" for k, v in rates.items())
        out.append(
            Finding(
                "INFO",
                "MISSING_VALUE_RATES",
                f"Share of events with a missing value, per variable: {listing}.",
                {"rates": rates},
            )
        )
    return out


def _check_maturity(timed: pl.DataFrame, weeks: int, ratio: float) -> list[Finding]:
    """Fraud rate of the last `weeks` weeks well below the earlier rate: labels still arriving."""
    if timed.height == 0 or weeks <= 0:
        return []
    recent = pl.col("ts") > pl.col("ts").max() - timedelta(weeks=weeks)
    parts = timed.group_by(recent.alias("ts")).agg(
        pl.len().alias("n"), pl.col(LABEL_COLUMN).cast(pl.Int64).sum().alias("fraud")
    )
    by = {bool(r["ts"]): (int(r["n"]), int(r["fraud"])) for r in parts.iter_rows(named=True)}
    (n_old, f_old), (n_new, f_new) = by.get(False, (0, 0)), by.get(True, (0, 0))
    if not n_old or not n_new or not f_old:
        return []
    p_old, p_new = f_old / n_old, f_new / n_new
    # Only warn when the drop is both large and clearly beyond chance (z <= -2).
    z = (p_new - p_old) / math.sqrt(p_old * (1 - p_old) / n_new) if p_old < 1 else 0.0
    if p_new >= ratio * p_old or z > -2.0:
        return []
    return [
        Finding(
            "WARNING",
            "LABELS_MAY_NOT_BE_MATURE",
            f"The fraud rate of the last {weeks} weeks ({p_new:.2%}) is well below the earlier "
            f"rate ({p_old:.2%}): labels may not be mature yet (fraud is often reported weeks "
            "later). Leave out the most recent weeks, or wait until their labels settle.",
            {
                "recent_weeks": weeks,
                "recent_fraud_rate": p_new,
                "earlier_fraud_rate": p_old,
                "recent_events": n_new,
                "z": z,
            },
        )
    ]


def _check_stability(timed: pl.DataFrame, max_cv: float, min_week_events: int) -> list[Finding]:
    """Weekly fraud rates varying more than sampling noise explains.

    The measure is the coefficient of variation of the weekly fraud rate after removing the
    variance that binomial sampling alone gives weeks of that size:
    sqrt(max(0, var(rate_w) - mean(p(1-p)/n_w))) / p, over weeks with enough events.
    """
    weekly = (
        timed.group_by(pl.col("ts").dt.truncate("1w").alias("week"))
        .agg(pl.len().alias("n"), pl.col(LABEL_COLUMN).cast(pl.Int64).sum().alias("fraud"))
        .filter(pl.col("n") >= min_week_events)
        .sort("week")
    )
    if weekly.height < 4:
        return []
    n = weekly["n"].cast(pl.Float64).to_list()
    f = weekly["fraud"].cast(pl.Float64).to_list()
    p = sum(f) / sum(n)
    if p <= 0 or p >= 1:
        return []
    rates = [fi / ni for fi, ni in zip(f, n, strict=True)]
    mean = sum(rates) / len(rates)
    var = sum((r - mean) ** 2 for r in rates) / len(rates)
    noise = sum(p * (1 - p) / ni for ni in n) / len(n)
    cv = math.sqrt(max(0.0, var - noise)) / p
    raw_cv = math.sqrt(var) / p
    if cv <= max_cv:
        return []
    return [
        Finding(
            "WARNING",
            "UNSTABLE_FRAUD_RATE",
            f"The weekly fraud rate varies a lot over time (excess coefficient of variation "
            f"{cv:.2f}, limit {max_cv:.2f}; weekly rates from {min(rates):.2%} to "
            f"{max(rates):.2%}). Sample fraud and legitimate events from the same periods, "
            "uniformly over time, so the model is evaluated fairly.",
            {
                "excess_cv": cv,
                "raw_cv": raw_cv,
                "threshold": max_cv,
                "weeks": [str(w) for w in weekly["week"].to_list()],
                "weekly_fraud_rates": rates,
            },
        )
    ]
