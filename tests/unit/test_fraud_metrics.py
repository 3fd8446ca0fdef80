"""Fraud model metrics, AFD result shapes, automated diagnoses and charts."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import botocore.session
import numpy as np
import numpy.typing as npt
import polars as pl
import pytest
from botocore.validate import ParamValidator
from sklearn.metrics import average_precision_score, roc_auc_score  # type: ignore[import-untyped]

from runtime.charts import ChartFormat
from services.fraud.adapters import charts
from services.fraud.domain.diagnostics import (
    Diagnosis,
    DiagnosticThresholds,
    cochran_armitage,
    data_validation_metrics,
    diagnose,
    population_stability_index,
    weekly_rates,
)
from services.fraud.domain.metrics import (
    POPULATION,
    ModelMetrics,
    average_precision,
    model_metrics,
    roc_auc,
    roc_curve,
)

FloatArray = npt.NDArray[np.float64]


def scores_with_auc(y: npt.NDArray[Any], separation: float, seed: int = 0) -> FloatArray:
    """0..1000 scores whose fraud events sit ``separation`` standard deviations higher."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=len(y)) + separation * (y == 1)
    return np.asarray(1000 / (1 + np.exp(-(z - 2))), dtype=np.float64)


def labels(n: int = 20_000, rate: float = 0.02, seed: int = 0) -> npt.NDArray[np.int8]:
    return (np.random.default_rng(seed).random(n) < rate).astype(np.int8)


# --- ranking metrics -----------------------------------------------------------------------


def test_auc_matches_sklearn_with_and_without_ties() -> None:
    y = labels()
    continuous = scores_with_auc(y, 1.5)
    tied = np.round(continuous / 50) * 50
    for s in (continuous, tied):
        assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)


def test_roc_curve_spans_the_square_and_integrates_to_the_auc() -> None:
    y = labels(5000)
    s = np.round(scores_with_auc(y, 1.0))
    fpr, tpr, _ = roc_curve(y, s)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc(y, s), abs=1e-9)


def _metrics(y: npt.NDArray[Any], s: FloatArray, **kwargs: Any) -> ModelMetrics:
    importance = kwargs.pop("feature_importance", {"amount": 3.0, "email_domain": 1.0})
    variables = kwargs.pop("feature_variable", {"amount": "amount", "email_domain": "email"})
    return model_metrics(y, s, feature_importance=importance, feature_variable=variables, **kwargs)


def test_bootstrap_range_contains_the_auc_and_is_reproducible() -> None:
    y = labels(8000)
    s = scores_with_auc(y, 1.2)
    m = _metrics(y, s, bootstrap=200, seed=7)
    assert m.auc_lower < m.auc < m.auc_upper
    assert m.auc == pytest.approx(roc_auc_score(y, s))
    again = _metrics(y, s, bootstrap=200, seed=7)
    assert (again.auc_lower, again.auc_upper) == (m.auc_lower, m.auc_upper)


def test_threshold_table_counts_add_up_to_100000() -> None:
    y = labels()
    m = _metrics(y, scores_with_auc(y, 2.0))
    assert [r.threshold for r in m.thresholds] == list(np.arange(0.0, 1000.1, 5.0))
    frauds = {r.tp + r.fn for r in m.thresholds}
    assert len(frauds) == 1 and frauds.pop() == round(POPULATION * m.fraud_rate)
    for r in m.thresholds:
        assert r.tp + r.fp + r.tn + r.fn == POPULATION
    first, last = m.thresholds[0], m.thresholds[-1]
    assert (first.tpr, first.fpr) == (1.0, 1.0)
    assert np.all(np.diff([r.tpr for r in m.thresholds]) <= 0)
    assert m.threshold_row(902).threshold == 900
    assert last.precision is None or 0 <= last.precision <= 1
    assert m.fraud_histogram.sum() == m.n_fraud and m.legit_histogram.sum() == m.n_legit


def test_importance_rolls_up_to_variables_and_groups() -> None:
    y = labels(2000)
    m = _metrics(
        y,
        scores_with_auc(y, 1.0),
        feature_importance={"ip_asn": 2.0, "ip_country": 1.0, "email_age": 3.0, "ip_x_user": 4.0},
        feature_variable={
            "ip_asn": "ip_address",
            "ip_country": "ip_address",
            "email_age": "email_address",
            "ip_x_user": ["user_id", "ip_address"],
        },
        bootstrap=0,
    )
    assert m.variable_importance == {"email_address": 3.0, "ip_address": 3.0}
    assert m.aggregated_importance == {("ip_address", "user_id"): 4.0}
    assert m.variable_importance_share["ip_address"] == pytest.approx(0.3)
    total = sum(m.variable_importance_share.values()) + sum(m.aggregated_importance_share.values())
    assert total == pytest.approx(1.0)
    assert m.feature_importance_share["ip_x_user"] == pytest.approx(0.4)


@pytest.fixture(scope="module")
def afd_model() -> Any:
    return botocore.session.get_session().get_service_model("frauddetector")


def _assert_valid(afd_model: Any, shape: str, value: dict[str, Any]) -> None:
    report = ParamValidator().validate(value, afd_model.shape_for(shape))
    assert not report.has_errors(), report.generate_report()


def test_afd_training_results_validate_against_botocore_shapes(afd_model: Any) -> None:
    y = labels(5000)
    m = _metrics(
        y,
        scores_with_auc(y, 1.5),
        feature_importance={"a": 1.0, "b": 2.0, "ab": 0.5},
        feature_variable={"a": "amount", "b": "email", "ab": ["amount", "email"]},
    )
    result = m.to_afd_training_result(variable_types={"email": "EMAIL_ADDRESS"})
    _assert_valid(afd_model, "TrainingResult", result["trainingResult"])
    _assert_valid(afd_model, "TrainingResultV2", result["trainingResultV2"])
    v2 = result["trainingResultV2"]
    perf = v2["trainingMetricsV2"]["ofi"]["modelPerformance"]
    assert perf["auc"] == m.auc
    assert perf["uncertaintyRange"]["lowerBoundValue"] <= m.auc
    logodds = v2["variableImportanceMetrics"]["logOddsMetrics"]
    assert [x["variableName"] for x in logodds] == ["email", "amount"]
    assert logodds[0]["variableType"] == "EMAIL_ADDRESS"
    assert v2["aggregatedVariablesImportanceMetrics"]["logOddsMetrics"] == [
        {"variableNames": ["amount", "email"], "aggregatedVariablesImportance": 0.5}
    ]
    tfi = m.to_afd_training_result(model_type="TRANSACTION_FRAUD_INSIGHTS")
    _assert_valid(afd_model, "TrainingResultV2", tfi["trainingResultV2"])
    assert "tfi" in tfi["trainingResultV2"]["trainingMetricsV2"]
    json.dumps(m.to_dict(), allow_nan=False)


# --- diagnoses -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    X_train: FloatArray
    X_holdout: FloatArray
    y_train: npt.NDArray[np.int8]
    y_holdout: npt.NDArray[np.int8]
    timestamps: npt.NDArray[np.datetime64]
    names: list[str]
    categorical: list[str]


def clean_case(n: int = 24_000, seed: int = 0) -> Case:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.03).astype(np.int8)
    X = rng.normal(size=(n, 5))
    X[:, 0] += 1.0 * y
    X[:, 1] += 0.7 * y
    X[:, 2] = rng.integers(0, 8, n)  # product category, fraud spread over all categories
    X[rng.random(n) < 0.05, 3] = np.nan
    X[:, 4] = np.arange(n)  # an order id: unique per event
    seconds = np.sort(rng.uniform(0, 120 * 86_400, n)).astype(np.int64)
    ts = np.datetime64("2024-01-01", "us") + (seconds * 1_000_000).astype("timedelta64[us]")
    cut = int(n * 0.85)
    return Case(
        X[:cut],
        X[cut:],
        y[:cut],
        y[cut:],
        ts,
        ["amount", "velocity", "product_category", "device_age", "order_id"],
        ["product_category", "order_id"],
    )


def run(case: Case, *, auc_separation: float = 1.6, **kwargs: Any) -> list[Diagnosis]:
    importance = kwargs.pop(
        "importance",
        {"amount": 4.0, "velocity": 3.0, "product_category": 1.0, "device_age": 1.0},
    )
    metrics = model_metrics(
        case.y_holdout,
        scores_with_auc(case.y_holdout, auc_separation),
        feature_importance=importance,
        feature_variable={},
    )
    return diagnose(
        metrics=metrics,
        X_train=case.X_train,
        X_holdout=case.X_holdout,
        y_train=case.y_train,
        y_holdout=case.y_holdout,
        timestamps=case.timestamps,
        feature_names=case.names,
        feature_variable={},
        categorical_features=case.categorical,
        **kwargs,
    )


def codes(found: list[Diagnosis]) -> set[str]:
    return {d.code for d in found}


@pytest.fixture(scope="module")
def case() -> Case:
    return clean_case()


def test_clean_case_is_quiet(case: Case) -> None:
    assert run(case) == []


def test_auc_bounds_fire(case: Case) -> None:
    low = run(case, auc_separation=0.6)
    assert "AUC_LOW" in codes(low)
    high = run(case, auc_separation=6.0)
    assert "AUC_TOO_GOOD" in codes(high)
    assert all(d.message and d.advice for d in low + high)


def test_label_leakage_names_the_variable(case: Case) -> None:
    leaky = Case(
        np.column_stack([case.X_train, case.y_train * 2.0 + 1.0]),
        np.column_stack([case.X_holdout, case.y_holdout * 2.0 + 1.0]),
        case.y_train,
        case.y_holdout,
        case.timestamps,
        [*case.names, "investigation_status"],
        [*case.categorical, "investigation_status"],
    )
    found = [d for d in run(leaky) if d.code == "LABEL_LEAKAGE"]
    assert [d.details["variable"] for d in found] == ["investigation_status"]
    assert found[0].severity == "CRITICAL"
    assert "investigation_status" in found[0].message


def test_numeric_leakage_through_missingness_fires(case: Case) -> None:
    chargeback_days = np.where(case.y_train == 1, 30.0, np.nan)
    leaky = Case(
        np.column_stack([case.X_train, chargeback_days]),
        np.column_stack([case.X_holdout, np.full(len(case.y_holdout), np.nan)]),
        case.y_train,
        case.y_holdout,
        case.timestamps,
        [*case.names, "chargeback_days"],
        case.categorical,
    )
    found = [d for d in run(leaky) if d.code == "LABEL_LEAKAGE"]
    assert [d.details["feature"] for d in found] == ["chargeback_days"]


def test_dominating_variable_fires(case: Case) -> None:
    found = run(case, importance={"amount": 9.0, "velocity": 1.0, "device_age": 1.0})
    dominant = [d for d in found if d.code == "VARIABLE_DOMINATES"]
    assert dominant and dominant[0].details["variable"] == "amount"


def test_drift_fires_on_a_shifted_important_variable(case: Case) -> None:
    shifted = case.X_holdout.copy()
    shifted[:, 1] += 1.0
    found = run(
        Case(
            case.X_train,
            shifted,
            case.y_train,
            case.y_holdout,
            case.timestamps,
            case.names,
            case.categorical,
        )
    )
    drift = [d for d in found if d.code == "FEATURE_DRIFT"]
    assert [d.details["variable"] for d in drift] == ["velocity"]
    assert drift[0].severity == "WARNING" and drift[0].details["psi"] > 0.25


def test_psi_thresholds() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=50_000)
    assert population_stability_index(base, rng.normal(size=20_000)) < 0.01
    assert 0.1 < population_stability_index(base, rng.normal(0.4, 1, 20_000)) < 0.25
    cats = rng.integers(0, 5, 50_000).astype(float)
    assert population_stability_index(cats, np.full(1000, 9.0), categorical=True) > 1


def test_one_category_holding_the_fraud_fires(case: Case) -> None:
    rng = np.random.default_rng(5)

    def concentrate(X: FloatArray, y: npt.NDArray[Any]) -> FloatArray:
        X = X.copy()
        X[:, 2] = rng.integers(0, 8, len(y))
        X[y == 1, 2] = np.where(rng.random(int((y == 1).sum())) < 0.95, 3, 5)
        return X

    skewed = Case(
        concentrate(case.X_train, case.y_train),
        concentrate(case.X_holdout, case.y_holdout),
        case.y_train,
        case.y_holdout,
        case.timestamps,
        case.names,
        case.categorical,
    )
    found = [d for d in run(skewed) if d.code == "FRAUD_CONCENTRATED"]
    assert [(d.details["variable"], d.details["value"]) for d in found] == [
        ("product_category", 3.0)
    ]
    # The same check on raw string values, as the feature pipeline received them.
    raw = pl.DataFrame(
        {
            "product_category": [
                f"cat-{int(v)}"
                for v in np.concatenate([skewed.X_train[:, 2], skewed.X_holdout[:, 2]])
            ],
            "EVENT_TIMESTAMP": case.timestamps,
            # The label concentrates fraud by definition: it is not a variable to warn about.
            "EVENT_LABEL": [
                "fraud" if y else "legit"
                for y in np.concatenate([skewed.y_train, skewed.y_holdout])
            ],
        }
    )
    found = [d for d in run(skewed, raw_events=raw) if d.code == "FRAUD_CONCENTRATED"]
    assert [(d.details["variable"], d.details["value"]) for d in found] == [
        ("product_category", "cat-3")
    ]


def test_fraud_rate_and_missing_label_trends_fire(case: Case) -> None:
    n_train = len(case.y_train)
    y_all = np.concatenate([case.y_train, case.y_holdout])
    days = (case.timestamps - case.timestamps[0]).astype("timedelta64[D]").astype(int)
    rng = np.random.default_rng(9)
    rising = (rng.random(len(y_all)) < 0.01 + 0.05 * days / days.max()).astype(np.int8)
    raw_labels = np.full(len(y_all), "legit", dtype=object)
    raw_labels[days > 100] = None
    raw_labels[(days > 100) & (rng.random(len(y_all)) < 0.2)] = "fraud"
    trending = Case(
        case.X_train,
        case.X_holdout,
        rising[:n_train],
        rising[n_train:],
        case.timestamps,
        case.names,
        case.categorical,
    )
    found = codes(run(trending, label_column=raw_labels))
    assert {"FRAUD_RATE_TREND", "LABEL_MISSING_TREND"} <= found
    assert "FRAUD_RATE_TREND" not in codes(run(case))


def test_cochran_armitage_and_weekly_rates() -> None:
    flat = cochran_armitage([10, 11, 9, 10, 10], [1000] * 5)
    assert flat is not None and abs(flat.z) < 1
    up = cochran_armitage([5, 10, 20, 40, 80], [1000] * 5)
    assert up is not None and up.z > 5 and up.last > up.first
    ts = np.array(["2024-01-01", "2024-01-07", "2024-01-08", "2024-01-29"], dtype="datetime64[us]")
    rates = weekly_rates([1, 0, 0, 1], ts)
    assert rates.week_start[0] == np.datetime64("2024-01-01")  # a Monday
    assert rates.labeled.tolist() == [2, 1, 0, 0, 1]
    assert rates.fraud.tolist() == [1, 0, 0, 0, 1]
    assert np.isnan(rates.fraud_rate[2])


def test_diagnoses_map_to_afd_data_validation_metrics(afd_model: Any, case: Case) -> None:
    found = run(case, auc_separation=0.6, importance={"amount": 9.0, "velocity": 1.0})
    validation = data_validation_metrics(found)
    _assert_valid(afd_model, "DataValidationMetrics", validation)
    assert validation["fieldLevelMessages"][0]["fieldName"] == "amount"
    y = case.y_holdout
    metrics = _metrics(y, scores_with_auc(y, 1.0))
    result = metrics.to_afd_training_result(data_validation=validation)
    _assert_valid(afd_model, "TrainingResultV2", result["trainingResultV2"])
    assert DiagnosticThresholds().psi_major == 0.25


# --- charts --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chart_metrics() -> ModelMetrics:
    y = labels(6000, rate=0.05)
    return _metrics(
        y,
        scores_with_auc(y, 1.5),
        feature_importance={f"f{i}": float(i + 1) for i in range(20)},
        feature_variable={"f0": ["a", "b"]},
    )


def test_charts_are_valid_deterministic_svg_and_png(chart_metrics: ModelMetrics) -> None:
    y = labels(3000)
    ts = np.datetime64("2024-01-01", "us") + np.arange(3000).astype("timedelta64[h]")
    raw_labels = np.full(len(y), "fraud", dtype=object)
    raw_labels[::7] = None
    rates = weekly_rates(y, ts, label_column=raw_labels, label_timestamps=ts)
    renders: dict[str, Callable[[ChartFormat], bytes]] = {
        "roc": lambda fmt: charts.roc_svg(chart_metrics, format=fmt),
        "scores": lambda fmt: charts.score_distribution_svg(
            chart_metrics, threshold=850, format=fmt
        ),
        "importance": lambda fmt: charts.importance_svg(chart_metrics, top=15, format=fmt),
        "fraud_rate": lambda fmt: charts.fraud_rate_svg(rates, format=fmt),
    }
    ns = "{http://www.w3.org/2000/svg}"
    for name, render in renders.items():
        svg = render("svg")
        root = ET.fromstring(svg)  # noqa: S314 (our own output)
        assert root.tag == f"{ns}svg", name
        assert root.get("role") == "img"
        assert len(root.findall(f"{ns}title")) == 1, name
        title = root.find(f"{ns}title")
        desc = root.find(f"{ns}desc")
        assert title is not None and title.text, name
        assert desc is not None and desc.text, name
        assert any(t.tag == f"{ns}text" for t in root.iter()), "text must stay text"
        assert render("svg") == svg, f"{name} is not deterministic"
        png = render("png")
        assert png[:8] == b"\x89PNG\r\n\x1a\n", name
    assert b"a + b" in charts.importance_svg(chart_metrics, top=25)
    assert b"a + b" not in charts.importance_svg(chart_metrics, top=15)
    with pytest.raises(ValueError):
        charts.roc_svg(chart_metrics, format="gif")  # type: ignore[arg-type]
