"""Automated diagnosis of a trained fraud model and its training data."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import polars as pl

from services.fraud.domain.metrics import FeatureVariable, ModelMetrics, roc_auc, variables_of

Severity = Literal["INFO", "WARNING", "CRITICAL"]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

EVENT_TIMESTAMP = "EVENT_TIMESTAMP"
# The label itself (and its bookkeeping) concentrates fraud by definition: never a finding.
NOT_VARIABLES = frozenset({EVENT_TIMESTAMP, "EVENT_ID", "EVENT_LABEL", "LABEL_TIMESTAMP"})
_SEVERITY_ORDER = {"CRITICAL": 0, "WARNING": 1, "INFO": 2}


@dataclass(frozen=True)
class Diagnosis:
    code: str
    severity: Severity
    message: str
    advice: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "advice": self.advice,
            "details": self.details,
        }


@dataclass(frozen=True)
class DiagnosticThresholds:
    auc_low: float = 0.8
    auc_too_good: float = 0.99
    # AFD: an uncertainty range wider than 0.1 indicates high model uncertainty.
    auc_uncertainty: float = 0.1
    dominance_share: float = 0.5
    leakage_auc: float = 0.99
    leakage_max_rows: int = 100_000
    psi_moderate: float = 0.1
    psi_major: float = 0.25
    drift_top_features: int = 10
    category_fraud_share: float = 0.9
    category_max_legit_share: float = 0.5
    category_min_fraud: int = 20
    trend_z: float = 3.0
    trend_ratio: float = 1.5
    trend_min_weeks: int = 4
    label_missing_high: float = 0.2


# --- weekly rates ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class WeeklyRates:
    """Per-week counts over contiguous Monday-started weeks (empty weeks have NaN rates)."""

    week_start: npt.NDArray[np.datetime64]
    labeled: IntArray
    fraud: IntArray
    events: IntArray | None = None
    label_missing: IntArray | None = None

    @property
    def fraud_rate(self) -> FloatArray:
        with np.errstate(invalid="ignore", divide="ignore"):
            out: FloatArray = np.where(self.labeled > 0, self.fraud / self.labeled, np.nan)
        return out

    @property
    def label_missing_rate(self) -> FloatArray | None:
        if self.events is None or self.label_missing is None:
            return None
        with np.errstate(invalid="ignore", divide="ignore"):
            out: FloatArray = np.where(self.events > 0, self.label_missing / self.events, np.nan)
        return out


def _week_index(timestamps: npt.ArrayLike) -> IntArray:
    days = np.asarray(timestamps).astype("datetime64[D]").astype(np.int64)
    # 1970-01-01 was a Thursday; shift so that weeks start on Monday.
    out: IntArray = (days + 3) // 7
    return out


def is_label_missing(labels: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Missing raw labels: None, NaN or blank strings."""
    values = np.asarray(labels, dtype=object)
    return np.array(
        [
            v is None
            or (isinstance(v, float) and math.isnan(v))
            or (isinstance(v, str) and not v.strip())
            for v in values
        ],
        dtype=bool,
    )


def weekly_rates(
    y: npt.ArrayLike,
    timestamps: npt.ArrayLike,
    *,
    label_column: npt.ArrayLike | None = None,
    label_timestamps: npt.ArrayLike | None = None,
) -> WeeklyRates:
    """Weekly fraud rate of labeled events and, given raw labels, the label-missing rate."""
    labels = np.asarray(y)
    weeks = _week_index(timestamps)
    missing_weeks: IntArray | None = None
    missing: npt.NDArray[np.bool_] | None = None
    if label_column is not None:
        if label_timestamps is None or len(np.asarray(label_timestamps)) != len(
            np.asarray(label_column, dtype=object)
        ):
            raise ValueError("label_column needs label_timestamps of the same length")
        missing = is_label_missing(label_column)
        missing_weeks = _week_index(label_timestamps)
    all_weeks = weeks if missing_weeks is None else np.concatenate([weeks, missing_weeks])
    if len(all_weeks) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return WeeklyRates(np.zeros(0, dtype="datetime64[D]"), empty, empty)
    first = int(all_weeks.min())
    size = int(all_weeks.max()) - first + 1
    starts = (np.arange(first, first + size) * 7 - 3).astype("datetime64[D]")
    labeled = np.bincount(weeks - first, minlength=size)
    fraud = np.bincount(weeks - first, weights=(labels == 1), minlength=size).astype(np.int64)
    events = None
    missing_counts = None
    if missing_weeks is not None and missing is not None:
        events = np.bincount(missing_weeks - first, minlength=size)
        missing_counts = np.bincount(missing_weeks - first, weights=missing, minlength=size).astype(
            np.int64
        )
    return WeeklyRates(starts, labeled, fraud, events, missing_counts)


@dataclass(frozen=True)
class Trend:
    z: float
    first: float
    last: float

    @property
    def ratio(self) -> float:
        if self.first <= 0:
            return math.inf if self.last > 0 else 1.0
        return self.last / self.first


def cochran_armitage(successes: npt.ArrayLike, totals: npt.ArrayLike) -> Trend | None:
    """Cochran-Armitage test for a linear trend in proportions over ordered groups.

    Returns the z statistic and the weighted least-squares fitted rate at the first and last
    group (the effect size), or None when there is nothing to test.
    """
    x = np.asarray(successes, dtype=np.float64)
    n = np.asarray(totals, dtype=np.float64)
    keep = n > 0
    t = np.arange(len(n), dtype=np.float64)[keep]
    x, n = x[keep], n[keep]
    total = n.sum()
    if len(n) < 2 or total == 0:
        return None
    p = x.sum() / total
    t_mean = (n * t).sum() / total
    s_tt = (n * (t - t_mean) ** 2).sum()
    if s_tt == 0 or p in (0.0, 1.0):
        return None
    stat = (t * (x - n * p)).sum()
    z = stat / math.sqrt(p * (1 - p) * s_tt)
    slope = stat / s_tt
    return Trend(
        z=float(z),
        first=float(p + slope * (t[0] - t_mean)),
        last=float(p + slope * (t[-1] - t_mean)),
    )


def _is_trend(trend: Trend | None, limits: DiagnosticThresholds) -> bool:
    if trend is None or abs(trend.z) < limits.trend_z:
        return False
    return trend.ratio >= limits.trend_ratio or trend.ratio <= 1 / limits.trend_ratio


# --- drift and leakage helpers -------------------------------------------------------------


def population_stability_index(
    expected: npt.ArrayLike, actual: npt.ArrayLike, *, categorical: bool = False, bins: int = 10
) -> float:
    """PSI of ``actual`` against ``expected``; missing values (NaN) are a bin of their own.

    Numeric values are binned at the expected deciles; categorical values per category, with
    categories unseen in ``expected`` pooled into one extra bin.
    """
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    e_nan, a_nan = np.isnan(e), np.isnan(a)
    e_ok, a_ok = e[~e_nan], a[~a_nan]
    if categorical:
        cats = np.unique(e_ok)
        e_bin = np.searchsorted(cats, e_ok)
        a_pos = np.clip(np.searchsorted(cats, a_ok), 0, max(len(cats) - 1, 0))
        seen = (cats[a_pos] == a_ok) if len(cats) else np.zeros(len(a_ok), dtype=bool)
        a_bin = np.where(seen, a_pos, len(cats))
        n_bins = len(cats) + 1
    else:
        edges: FloatArray = (
            np.unique(np.quantile(e_ok, np.linspace(0, 1, bins + 1)[1:-1]))
            if len(e_ok)
            else np.zeros(0)
        )
        e_bin = np.searchsorted(edges, e_ok, side="right")
        a_bin = np.searchsorted(edges, a_ok, side="right")
        n_bins = len(edges) + 1
    e_counts = np.append(np.bincount(e_bin, minlength=n_bins), e_nan.sum()).astype(np.float64)
    a_counts = np.append(np.bincount(a_bin, minlength=n_bins), a_nan.sum()).astype(np.float64)
    if e_counts.sum() == 0 or a_counts.sum() == 0:
        return 0.0
    # Floor empty bins so one missing category does not make the index infinite.
    e_share = np.maximum(e_counts / e_counts.sum(), 1e-4)
    a_share = np.maximum(a_counts / a_counts.sum(), 1e-4)
    return float(np.sum((a_share - e_share) * np.log(a_share / e_share)))


def _stratified_sample(y: npt.NDArray[Any], max_rows: int, seed: int = 0) -> IntArray:
    """All fraud rows plus a sample of legit rows; AUC is unchanged in expectation."""
    idx = np.arange(len(y), dtype=np.int64)
    if len(y) <= max_rows:
        return idx
    pos, neg = idx[y == 1], idx[y != 1]
    take = max(max_rows - len(pos), min(len(neg), 1000))
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([pos, rng.choice(neg, min(take, len(neg)), replace=False)]))


def _out_of_fold_target_encoding(
    codes: npt.NDArray[Any], y: npt.NDArray[Any], *, folds: int = 5, seed: int = 0
) -> FloatArray:
    """Each row's category fraud rate estimated without that row's fold (smoothed to the prior).

    Out-of-fold estimates keep identifier-like columns (one category per event) from looking
    predictive: an unseen category gets the prior.
    """
    keys = np.where(np.isnan(codes), -np.inf, codes)
    cats, inv = np.unique(keys, return_inverse=True)
    fold = np.random.default_rng(seed).integers(0, folds, len(y))
    prior = float(np.mean(y == 1))
    out = np.empty(len(y))
    total_n = np.bincount(inv, minlength=len(cats)).astype(np.float64)
    total_pos = np.bincount(inv, weights=(y == 1), minlength=len(cats))
    for k in range(folds):
        mask = fold == k
        n_k = np.bincount(inv[mask], minlength=len(cats))
        pos_k = np.bincount(inv[mask], weights=(y[mask] == 1), minlength=len(cats))
        n_other = total_n - n_k
        pos_other = total_pos - pos_k
        out[mask] = ((pos_other + prior) / (n_other + 1.0))[inv[mask]]
    return out


def single_feature_auc(
    values: npt.ArrayLike, y: npt.ArrayLike, *, categorical: bool = False
) -> float:
    """How well one feature alone separates fraud from legit, as max(AUC, 1 - AUC).

    Numeric features are ranked by value with missing values placed both lowest and highest
    (missingness alone can leak a label); categorical ones by out-of-fold target encoding.
    """
    v = np.asarray(values, dtype=np.float64)
    labels = np.asarray(y)
    if categorical:
        candidates = [_out_of_fold_target_encoding(v, labels)]
    elif np.isnan(v).any():
        candidates = [np.where(np.isnan(v), -np.inf, v), np.where(np.isnan(v), np.inf, v)]
    else:
        candidates = [v]
    best = 0.5
    for c in candidates:
        auc = roc_auc(labels, np.nan_to_num(c, neginf=-1e300, posinf=1e300))
        if math.isfinite(auc):
            best = max(best, auc, 1.0 - auc)
    return best


# --- the individual checks -----------------------------------------------------------------


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _check_auc(metrics: ModelMetrics, limits: DiagnosticThresholds) -> list[Diagnosis]:
    out: list[Diagnosis] = []
    details = {"auc": metrics.auc, "lower": metrics.auc_lower, "upper": metrics.auc_upper}
    if not math.isfinite(metrics.auc):
        return out
    if metrics.auc < limits.auc_low:
        out.append(
            Diagnosis(
                "AUC_LOW",
                "WARNING",
                f"The model's AUC is {metrics.auc:.3f}, below {limits.auc_low}: there is room "
                "for improvement.",
                "Add more labeled events (especially fraud), add variables that carry "
                "information about the fraud pattern (identity, device, velocity, history), "
                "and check that labels are accurate and complete.",
                details,
            )
        )
    elif metrics.auc > limits.auc_too_good:
        out.append(
            Diagnosis(
                "AUC_TOO_GOOD",
                "WARNING",
                f"The model's AUC is {metrics.auc:.4f}, above {limits.auc_too_good}: this is "
                "too good to be true for most fraud problems.",
                "Check for label leakage: a variable that is only known after the fact "
                "(investigation status, chargeback date, manual review outcome) or that is "
                "derived from the label. Remove such variables and retrain.",
                details,
            )
        )
    if math.isfinite(metrics.uncertainty) and metrics.uncertainty > limits.auc_uncertainty:
        out.append(
            Diagnosis(
                "AUC_UNCERTAIN",
                "WARNING",
                f"The AUC could plausibly lie anywhere between {metrics.auc_lower:.3f} and "
                f"{metrics.auc_upper:.3f}; with {metrics.n_fraud} fraud events in the "
                "validation data the estimate is unreliable.",
                "Train on a longer period or collect more labeled fraud events.",
                details,
            )
        )
    return out


def _check_dominance(metrics: ModelMetrics, limits: DiagnosticThresholds) -> list[Diagnosis]:
    shares: dict[str, float] = dict(metrics.variable_importance_share)
    for names, share in metrics.aggregated_importance_share.items():
        shares[" + ".join(names)] = share
    if not shares:
        return []
    name, share = max(shares.items(), key=lambda kv: kv[1])
    if share <= limits.dominance_share:
        return []
    return [
        Diagnosis(
            "VARIABLE_DOMINATES",
            "WARNING",
            f"The variable '{name}' accounts for {_pct(share)} of the model's total variable "
            "importance; the model relies mostly on this one input.",
            f"Make sure '{name}' is known at prediction time and is not a proxy for the label. "
            "A model that depends on one variable is fragile: if that input changes or is "
            "gamed, performance drops. Consider adding more informative variables.",
            {"variable": name, "share": share},
        )
    ]


def _check_leakage(
    X_train: npt.NDArray[Any],
    y_train: npt.NDArray[Any],
    feature_names: Sequence[str],
    categorical: set[str],
    feature_variable: FeatureVariable,
    limits: DiagnosticThresholds,
) -> list[Diagnosis]:
    rows = _stratified_sample(y_train, limits.leakage_max_rows)
    X = X_train[rows]
    y = y_train[rows]
    if not ((y == 1).any() and (y != 1).any()):
        return []
    out = []
    for j, name in enumerate(feature_names):
        auc = single_feature_auc(X[:, j], y, categorical=name in categorical)
        if auc < limits.leakage_auc:
            continue
        variable = ", ".join(variables_of(name, feature_variable))
        out.append(
            Diagnosis(
                "LABEL_LEAKAGE",
                "CRITICAL",
                f"The variable '{variable}' (feature '{name}') alone separates fraud from "
                f"legitimate events almost perfectly (single-variable AUC {auc:.4f}).",
                f"Check whether '{variable}' is only known after the outcome (for example an "
                "investigation status, chargeback or review result) or is derived from the "
                "label. If so, remove it: it will not be available when scoring new events.",
                {"variable": variable, "feature": name, "single_feature_auc": auc},
            )
        )
    return out


def _check_drift(
    metrics: ModelMetrics,
    X_train: npt.NDArray[Any],
    X_holdout: npt.NDArray[Any],
    feature_names: Sequence[str],
    categorical: set[str],
    feature_variable: FeatureVariable,
    limits: DiagnosticThresholds,
) -> list[Diagnosis]:
    shares = metrics.feature_importance_share
    ranked = [f for f, s in sorted(shares.items(), key=lambda kv: -kv[1]) if s > 0]
    if not ranked:
        ranked = list(feature_names)
    column = {name: j for j, name in enumerate(feature_names)}
    out = []
    for name in ranked[: limits.drift_top_features]:
        if name not in column:
            continue
        j = column[name]
        psi = population_stability_index(
            X_train[:, j], X_holdout[:, j], categorical=name in categorical
        )
        if psi < limits.psi_moderate:
            continue
        major = psi >= limits.psi_major
        variable = ", ".join(variables_of(name, feature_variable))
        out.append(
            Diagnosis(
                "FEATURE_DRIFT",
                "WARNING" if major else "INFO",
                f"The distribution of '{variable}' (feature '{name}') in the most recent "
                f"events differs {'strongly' if major else 'moderately'} from the training "
                f"period (PSI {psi:.2f}).",
                "If this variable grows with time (a timestamp, counter or ID), remove it. "
                "Otherwise check the upstream data for changes in collection or encoding; "
                "real shifts in behaviour mean the model should be retrained more often.",
                {"variable": variable, "feature": name, "psi": psi},
            )
        )
    return out


def _concentration(
    values: npt.NDArray[Any], y: npt.NDArray[Any], limits: DiagnosticThresholds
) -> tuple[Any, float, float, int] | None:
    frame = pl.DataFrame({"v": values, "y": (y == 1)})
    stats = frame.group_by("v").agg(
        pl.col("y").sum().alias("fraud"), (~pl.col("y")).sum().alias("legit")
    )
    total_fraud = int(stats["fraud"].sum())
    total_legit = int(stats["legit"].sum())
    if total_fraud < limits.category_min_fraud or total_legit == 0:
        return None
    top = stats.sort(["fraud", "legit"], descending=[True, False]).row(0, named=True)
    fraud_share = top["fraud"] / total_fraud
    legit_share = top["legit"] / total_legit
    if fraud_share < limits.category_fraud_share or legit_share > limits.category_max_legit_share:
        return None
    return top["v"], fraud_share, legit_share, int(top["fraud"])


def _concentration_diagnosis(
    variable: str, value: Any, fraud_share: float, legit_share: float, n_fraud: int
) -> Diagnosis:
    shown = "missing" if value is None else repr(value)
    return Diagnosis(
        "FRAUD_CONCENTRATED",
        "WARNING",
        f"{_pct(fraud_share)} of fraud events have {variable} = {shown}, while only "
        f"{_pct(legit_share)} of legitimate events do. The model may learn this simple pattern "
        "and little else.",
        "Check whether fraud labels were collected for all values of "
        f"'{variable}' (a sampling problem) or whether fraud really is limited to {shown}. "
        "Add fraud examples from other segments, or consider a rule or a separate model for "
        "this segment.",
        {
            "variable": variable,
            "value": value,
            "fraud_share": fraud_share,
            "legit_share": legit_share,
            "fraud_events": n_fraud,
        },
    )


def _check_categories(
    X_all: npt.NDArray[Any],
    y_all: npt.NDArray[Any],
    feature_names: Sequence[str],
    categorical_features: Sequence[str],
    feature_variable: FeatureVariable,
    raw_events: pl.DataFrame | None,
    limits: DiagnosticThresholds,
) -> list[Diagnosis]:
    out = []
    covered: set[str] = set()
    if raw_events is not None:
        if raw_events.height != len(y_all):
            raise ValueError("raw_events must have one row per labeled event (train then holdout)")
        for name, dtype in raw_events.schema.items():
            if name in NOT_VARIABLES or dtype not in (pl.Utf8, pl.Categorical):
                continue
            found = _concentration(raw_events[name].cast(pl.Utf8).to_numpy(), y_all, limits)
            covered.add(name)
            if found:
                out.append(_concentration_diagnosis(name, *found))
    column = {name: j for j, name in enumerate(feature_names)}
    for name in categorical_features:
        sources = variables_of(name, feature_variable)
        if len(sources) == 1 and sources[0] in covered:
            continue
        codes = X_all[:, column[name]].astype(np.float64)
        values = np.array([None if math.isnan(c) else c for c in codes.tolist()], dtype=object)
        found = _concentration(values, y_all, limits)
        if found:
            out.append(_concentration_diagnosis(" + ".join(sources), *found))
    return out


def _check_trends(rates: WeeklyRates, limits: DiagnosticThresholds) -> list[Diagnosis]:
    out = []
    if int((rates.labeled > 0).sum()) >= limits.trend_min_weeks:
        trend = cochran_armitage(rates.fraud, rates.labeled)
        if trend is not None and _is_trend(trend, limits):
            rising = trend.last > trend.first
            out.append(
                Diagnosis(
                    "FRAUD_RATE_TREND",
                    "WARNING",
                    f"The weekly fraud rate {'rises' if rising else 'falls'} over the training "
                    f"period, from about {_pct(max(trend.first, 0.0))} to "
                    f"{_pct(max(trend.last, 0.0))}.",
                    (
                        "Fraud is increasing or changing: retrain often and weigh recent data."
                        if rising
                        else "A fraud rate that falls towards the end often means labels have "
                        "not matured yet (chargebacks and reports arrive weeks later). Leave the "
                        "most recent weeks out of training, or wait for their labels."
                    ),
                    {"z": trend.z, "first_rate": trend.first, "last_rate": trend.last},
                )
            )
    if rates.events is not None and rates.label_missing is not None:
        total = int(rates.events.sum())
        missing_share = int(rates.label_missing.sum()) / total if total else 0.0
        if missing_share > limits.label_missing_high:
            out.append(
                Diagnosis(
                    "LABELS_MISSING",
                    "WARNING",
                    f"{_pct(missing_share)} of events have no label.",
                    "Unlabeled events are left out of training. Backfill labels, or decide "
                    "explicitly how to treat them (as legitimate only when unreported events "
                    "are known to be legitimate).",
                    {"missing_share": missing_share},
                )
            )
        if int((rates.events > 0).sum()) >= limits.trend_min_weeks:
            trend = cochran_armitage(rates.label_missing, rates.events)
            if trend is not None and _is_trend(trend, limits):
                rising = trend.last > trend.first
                out.append(
                    Diagnosis(
                        "LABEL_MISSING_TREND",
                        "WARNING",
                        f"The share of events without a label {'rises' if rising else 'falls'} "
                        f"over time, from about {_pct(max(trend.first, 0.0))} to "
                        f"{_pct(max(trend.last, 0.0))}.",
                        (
                            "Recent events are not labeled yet: the newest fraud is "
                            "under-represented. Wait for labels to mature or leave the most "
                            "recent weeks out of training."
                            if rising
                            else "Labeling coverage changed over time; check that the labeling "
                            "process was the same across the whole period."
                        ),
                        {"z": trend.z, "first_rate": trend.first, "last_rate": trend.last},
                    )
                )
    return out


# --- entry points --------------------------------------------------------------------------


def diagnose(
    *,
    metrics: ModelMetrics,
    X_train: npt.NDArray[Any],
    X_holdout: npt.NDArray[Any],
    y_train: npt.ArrayLike,
    y_holdout: npt.ArrayLike,
    timestamps: npt.ArrayLike,
    feature_names: Sequence[str],
    feature_variable: FeatureVariable,
    categorical_features: Sequence[str] = (),
    raw_events: pl.DataFrame | None = None,
    label_column: npt.ArrayLike | None = None,
    label_timestamps: npt.ArrayLike | None = None,
    thresholds: DiagnosticThresholds | None = None,
) -> list[Diagnosis]:
    """Run every check; findings come back most severe first.

    ``timestamps`` and ``raw_events`` (optional, raw Utf8 values) have one row per labeled
    event, training rows first and then holdout rows, as ``y_train`` and ``y_holdout``.
    ``label_column`` holds the raw labels of all events, unlabeled ones included, with their
    ``label_timestamps`` (defaults: ``raw_events``' EVENT_TIMESTAMP, then ``timestamps``,
    whichever has the same length).
    """
    limits = thresholds or DiagnosticThresholds()
    Xtr = np.asarray(X_train, dtype=np.float64)
    Xho = np.asarray(X_holdout, dtype=np.float64)
    ytr = np.asarray(y_train)
    yho = np.asarray(y_holdout)
    ts = np.asarray(timestamps)
    y_all = np.concatenate([ytr, yho])
    if len(ts) != len(y_all):
        raise ValueError("timestamps must cover y_train then y_holdout")
    categorical = set(categorical_features)

    label_ts = None
    if label_column is not None:
        n_labels = len(np.asarray(label_column, dtype=object))
        if label_timestamps is not None:
            label_ts = np.asarray(label_timestamps)
        elif (
            raw_events is not None
            and EVENT_TIMESTAMP in raw_events.columns
            and raw_events.height == n_labels
        ):
            label_ts = raw_events[EVENT_TIMESTAMP].cast(pl.Datetime("us")).to_numpy()
        elif len(ts) == n_labels:
            label_ts = ts
        else:
            raise ValueError("label_column needs label_timestamps")

    found: list[Diagnosis] = []
    found += _check_auc(metrics, limits)
    found += _check_dominance(metrics, limits)
    found += _check_leakage(Xtr, ytr, feature_names, categorical, feature_variable, limits)
    found += _check_drift(metrics, Xtr, Xho, feature_names, categorical, feature_variable, limits)
    found += _check_categories(
        np.concatenate([Xtr, Xho]),
        y_all,
        feature_names,
        categorical_features,
        feature_variable,
        raw_events,
        limits,
    )
    found += _check_trends(
        weekly_rates(y_all, ts, label_column=label_column, label_timestamps=label_ts), limits
    )
    return sorted(found, key=lambda d: (_SEVERITY_ORDER[d.severity], d.code))


def data_validation_metrics(diagnoses: Sequence[Diagnosis]) -> dict[str, Any]:
    """Diagnoses as AFD ``dataValidationMetrics``: per-variable ones become field messages."""
    files: list[dict[str, str]] = []
    fields: list[dict[str, str]] = []
    for d in diagnoses:
        title = d.code.replace("_", " ").capitalize()
        content = f"{d.message} {d.advice}"
        variable = d.details.get("variable")
        if isinstance(variable, str):
            fields.append(
                {
                    "fieldName": variable,
                    "identifier": d.code,
                    "title": title,
                    "content": content,
                    "type": d.severity,
                }
            )
        else:
            files.append({"title": title, "content": content, "type": d.severity})
    return {"fileLevelMessages": files, "fieldLevelMessages": fields}
