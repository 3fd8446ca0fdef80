"""Holdout model metrics (AUC, ROC, thresholds, importance) in AFD's trainingResult shapes."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

POPULATION = 100_000
SCORE_MAX = 1000.0
FeatureVariable: TypeAlias = Mapping[str, str | Sequence[str]]
MODEL_TYPE_KEYS = {"ONLINE_FRAUD_INSIGHTS": "ofi", "TRANSACTION_FRAUD_INSIGHTS": "tfi"}


# --- ranking metrics ----------------------------------------------------------------------


def _class_counts(y: npt.ArrayLike, scores: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Fraud and legit counts per distinct score, distinct scores ascending."""
    labels = np.asarray(y)
    inv = np.unique(np.asarray(scores, dtype=np.float64), return_inverse=True)[1]
    size = int(inv.max()) + 1 if len(inv) else 0
    pos = np.bincount(inv[labels == 1], minlength=size).astype(np.float64)
    neg = np.bincount(inv[labels != 1], minlength=size).astype(np.float64)
    return pos, neg


def _auc_from_counts(pos: FloatArray, neg: FloatArray) -> float:
    n_pos, n_neg = pos.sum(), neg.sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    # Mann-Whitney U: each fraud beats the legit events below it and ties count half.
    return float((pos * (np.cumsum(neg) - 0.5 * neg)).sum() / (n_pos * n_neg))


def roc_auc(y: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Area under the ROC curve (Mann-Whitney U with ties counted half)."""
    return _auc_from_counts(*_class_counts(y, scores))


def bootstrap_auc(
    y: npt.ArrayLike, scores: npt.ArrayLike, *, rounds: int = 200, seed: int = 0
) -> FloatArray:
    """AUCs of ``rounds`` stratified bootstrap resamples (fraud and legit resampled apart).

    Stratifying keeps the number of fraud events fixed, which matters when there are only a
    few dozen of them; resamples are counted per distinct score so no re-sorting is needed.
    """
    labels = np.asarray(y)
    inv = np.unique(np.asarray(scores, dtype=np.float64), return_inverse=True)[1]
    size = int(inv.max()) + 1 if len(inv) else 0
    pos_bins = inv[labels == 1]
    neg_bins = inv[labels != 1]
    if len(pos_bins) == 0 or len(neg_bins) == 0:
        return np.full(rounds, np.nan)
    rng = np.random.default_rng(seed)
    out = np.empty(rounds)
    for i in range(rounds):
        pos = np.bincount(pos_bins[rng.integers(0, len(pos_bins), len(pos_bins))], minlength=size)
        neg = np.bincount(neg_bins[rng.integers(0, len(neg_bins), len(neg_bins))], minlength=size)
        out[i] = _auc_from_counts(pos.astype(np.float64), neg.astype(np.float64))
    return out


def _descending_cumulative(
    y: npt.ArrayLike, scores: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Distinct thresholds (descending) with cumulative fraud and legit counts at or above."""
    s = np.asarray(scores, dtype=np.float64)
    pos, neg = _class_counts(y, s)
    thresholds = np.unique(s)[::-1]
    return thresholds, np.cumsum(pos[::-1]), np.cumsum(neg[::-1])


def average_precision(y: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Area under the precision-recall curve as step-wise average precision."""
    _, tps, fps = _descending_cumulative(y, scores)
    if len(tps) == 0 or tps[-1] == 0:
        return float("nan")
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def roc_curve(
    y: npt.ArrayLike, scores: npt.ArrayLike, *, max_points: int = 1000
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(fpr, tpr, threshold) from (0, 0) to (1, 1); collinear points dropped, then thinned."""
    thresholds, tps, fps = _descending_cumulative(y, scores)
    n_pos = tps[-1] if len(tps) else 0.0
    n_neg = fps[-1] if len(fps) else 0.0
    fpr = np.concatenate([[0.0], fps / n_neg if n_neg else np.zeros_like(fps)])
    tpr = np.concatenate([[0.0], tps / n_pos if n_pos else np.zeros_like(tps)])
    thr = np.concatenate([[np.inf], thresholds])
    if len(fpr) > 2:
        keep = np.concatenate([[True], (np.diff(fpr, 2) != 0) | (np.diff(tpr, 2) != 0), [True]])
        fpr, tpr, thr = fpr[keep], tpr[keep], thr[keep]
    if len(fpr) > max_points:
        pick = np.unique(np.round(np.linspace(0, len(fpr) - 1, max_points)).astype(np.int64))
        fpr, tpr, thr = fpr[pick], tpr[pick], thr[pick]
    return fpr, tpr, thr


# --- threshold table ----------------------------------------------------------------------


@dataclass(frozen=True)
class ThresholdRow:
    """Outcome of flagging every event with score >= threshold.

    Counts are for an example population of 100,000 events at the holdout's fraud rate, as
    the AFD console shows them; ``precision`` is None when nothing is flagged.
    """

    threshold: float
    tpr: float
    fpr: float
    precision: float | None
    tp: int
    fp: int
    tn: int
    fn: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "tpr": self.tpr,
            "fpr": self.fpr,
            "precision": self.precision,
            "tp": self.tp,
            "fp": self.fp,
            "tn": self.tn,
            "fn": self.fn,
        }


def threshold_table(
    y: npt.ArrayLike, scores: npt.ArrayLike, *, step: float = 5.0
) -> tuple[ThresholdRow, ...]:
    """One row per threshold 0, step, ..., 1000 (an event is flagged when score >= threshold)."""
    labels = np.asarray(y)
    s = np.asarray(scores, dtype=np.float64)
    pos = np.sort(s[labels == 1])
    neg = np.sort(s[labels != 1])
    n_pos, n_neg = len(pos), len(neg)
    thresholds = np.arange(0.0, SCORE_MAX + step / 2, step)
    tp_raw = n_pos - np.searchsorted(pos, thresholds, side="left")
    fp_raw = n_neg - np.searchsorted(neg, thresholds, side="left")
    fraud_total = round(POPULATION * n_pos / max(n_pos + n_neg, 1))
    legit_total = POPULATION - fraud_total
    rows = []
    for t, tp_n, fp_n in zip(thresholds, tp_raw, fp_raw, strict=True):
        tpr = float(tp_n / n_pos) if n_pos else 0.0
        fpr = float(fp_n / n_neg) if n_neg else 0.0
        flagged = tp_n + fp_n
        tp = round(fraud_total * tpr)
        fp = round(legit_total * fpr)
        rows.append(
            ThresholdRow(
                threshold=float(t),
                tpr=tpr,
                fpr=fpr,
                precision=float(tp_n / flagged) if flagged else None,
                tp=tp,
                fp=fp,
                tn=legit_total - fp,
                fn=fraud_total - tp,
            )
        )
    return tuple(rows)


# --- importance ---------------------------------------------------------------------------


def variables_of(feature: str, feature_variable: FeatureVariable) -> tuple[str, ...]:
    """Input variables a feature was derived from (the feature itself when unmapped)."""
    source = feature_variable.get(feature, feature)
    if isinstance(source, str):
        return (source,)
    return tuple(sorted(set(source)))


def rollup_importance(
    feature_importance: Mapping[str, float], feature_variable: FeatureVariable
) -> tuple[dict[str, float], dict[tuple[str, ...], float]]:
    """Sum per-feature importance per input variable.

    Features derived from one variable add to that variable; features derived from several
    (e.g. "logins of this user from this IP") add to the group, as AFD's aggregated variables.
    """
    single: dict[str, float] = {}
    grouped: dict[tuple[str, ...], float] = {}
    for feature, value in feature_importance.items():
        sources = variables_of(feature, feature_variable)
        if len(sources) == 1:
            single[sources[0]] = single.get(sources[0], 0.0) + float(value)
        else:
            grouped[sources] = grouped.get(sources, 0.0) + float(value)
    return single, grouped


def _shares(values: Mapping[Any, float], total: float) -> dict[Any, float]:
    return {k: (v / total if total > 0 else 0.0) for k, v in values.items()}


def _sorted_desc(values: Mapping[Any, float]) -> dict[Any, float]:
    return dict(sorted(values.items(), key=lambda kv: (-kv[1], str(kv[0]))))


# --- the metrics bundle -------------------------------------------------------------------


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


@dataclass(frozen=True, eq=False)
class ModelMetrics:
    n_events: int
    n_fraud: int
    auc: float
    auc_lower: float
    auc_upper: float
    bootstrap_rounds: int
    auprc: float
    roc_fpr: FloatArray
    roc_tpr: FloatArray
    roc_threshold: FloatArray
    histogram_edges: FloatArray
    fraud_histogram: IntArray
    legit_histogram: IntArray
    thresholds: tuple[ThresholdRow, ...]
    feature_importance: dict[str, float]
    variable_importance: dict[str, float]
    aggregated_importance: dict[tuple[str, ...], float]

    @property
    def n_legit(self) -> int:
        return self.n_events - self.n_fraud

    @property
    def fraud_rate(self) -> float:
        return self.n_fraud / self.n_events if self.n_events else 0.0

    @property
    def uncertainty(self) -> float:
        """Width of the AUC range; AFD calls a width above 0.1 high uncertainty."""
        return self.auc_upper - self.auc_lower

    @property
    def _importance_total(self) -> float:
        return sum(self.variable_importance.values()) + sum(self.aggregated_importance.values())

    @property
    def feature_importance_share(self) -> dict[str, float]:
        return _shares(self.feature_importance, sum(self.feature_importance.values()))

    @property
    def variable_importance_share(self) -> dict[str, float]:
        return _shares(self.variable_importance, self._importance_total)

    @property
    def aggregated_importance_share(self) -> dict[tuple[str, ...], float]:
        return _shares(self.aggregated_importance, self._importance_total)

    def threshold_row(self, threshold: float) -> ThresholdRow:
        """The table row closest to ``threshold``."""
        return min(self.thresholds, key=lambda r: abs(r.threshold - threshold))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (NaN and infinities become None)."""
        return {
            "nEvents": self.n_events,
            "nFraud": self.n_fraud,
            "fraudRate": self.fraud_rate,
            "auc": _finite(self.auc),
            "aucLower": _finite(self.auc_lower),
            "aucUpper": _finite(self.auc_upper),
            "bootstrapRounds": self.bootstrap_rounds,
            "auprc": _finite(self.auprc),
            "roc": {
                "fpr": self.roc_fpr.tolist(),
                "tpr": self.roc_tpr.tolist(),
                "threshold": [_finite(float(t)) for t in self.roc_threshold],
            },
            "scoreDistribution": {
                "edges": self.histogram_edges.tolist(),
                "fraud": self.fraud_histogram.tolist(),
                "legit": self.legit_histogram.tolist(),
            },
            "thresholds": [row.to_dict() for row in self.thresholds],
            "featureImportance": self.feature_importance,
            "featureImportanceShare": self.feature_importance_share,
            "variableImportance": self.variable_importance,
            "variableImportanceShare": self.variable_importance_share,
            "aggregatedImportance": [
                {"variableNames": list(k), "importance": v, "share": s}
                for (k, v), s in zip(
                    self.aggregated_importance.items(),
                    self.aggregated_importance_share.values(),
                    strict=True,
                )
            ],
        }

    def to_afd_training_result(
        self,
        *,
        variable_types: Mapping[str, str] | None = None,
        default_variable_type: str = "NUMERIC",
        model_type: str = "ONLINE_FRAUD_INSIGHTS",
        data_validation: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``{"trainingResult": ..., "trainingResultV2": ...}`` as in DescribeModelVersions.

        ``variableImportance`` carries the caller's importance unit summed per variable; pass
        mean |SHAP| (``training.logodds_importance``) to get AFD's log-odds scale.
        """
        if model_type not in MODEL_TYPE_KEYS:
            raise ValueError(f"model_type must be one of {sorted(MODEL_TYPE_KEYS)}")
        types = variable_types or {}
        points = []
        for row in self.thresholds:
            point: dict[str, float] = {"fpr": row.fpr, "tpr": row.tpr, "threshold": row.threshold}
            if row.precision is not None:
                point["precision"] = row.precision
            points.append(point)
        log_odds = [
            {
                "variableName": name,
                "variableType": types.get(name, default_variable_type),
                "variableImportance": value,
            }
            for name, value in _sorted_desc(self.variable_importance).items()
        ]
        aggregated = [
            {"variableNames": list(names), "aggregatedVariablesImportance": value}
            for names, value in _sorted_desc(self.aggregated_importance).items()
        ]
        validation = dict(data_validation or {"fileLevelMessages": [], "fieldLevelMessages": []})
        performance: dict[str, Any] = {"auc": self.auc}
        if math.isfinite(self.auc_lower) and math.isfinite(self.auc_upper):
            performance["uncertaintyRange"] = {
                "lowerBoundValue": self.auc_lower,
                "upperBoundValue": self.auc_upper,
            }
        return {
            "trainingResult": {
                "dataValidationMetrics": validation,
                "trainingMetrics": {"auc": self.auc, "metricDataPoints": points},
                "variableImportanceMetrics": {"logOddsMetrics": log_odds},
            },
            "trainingResultV2": {
                "dataValidationMetrics": validation,
                "trainingMetricsV2": {
                    MODEL_TYPE_KEYS[model_type]: {
                        "metricDataPoints": points,
                        "modelPerformance": performance,
                    }
                },
                "variableImportanceMetrics": {"logOddsMetrics": log_odds},
                "aggregatedVariablesImportanceMetrics": {"logOddsMetrics": aggregated},
            },
        }


def model_metrics(
    y: npt.ArrayLike,
    scores: npt.ArrayLike,
    *,
    feature_importance: Mapping[str, float],
    feature_variable: FeatureVariable,
    bootstrap: int = 200,
    seed: int = 0,
    threshold_step: float = 5.0,
    histogram_bins: int = 50,
) -> ModelMetrics:
    """Metrics of holdout scores (0..1000, higher is riskier) against labels (1 = fraud)."""
    labels = (np.asarray(y) == 1).astype(np.int8)
    s = np.asarray(scores, dtype=np.float64)
    if labels.shape != s.shape or labels.ndim != 1:
        raise ValueError("y and scores must be 1-d arrays of the same length")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    auc = roc_auc(labels, s)
    if bootstrap > 0:
        aucs = bootstrap_auc(labels, s, rounds=bootstrap, seed=seed)
        lower, upper = (float(v) for v in np.nanpercentile(aucs, [2.5, 97.5]))
    else:
        lower = upper = float("nan")
    fpr, tpr, thr = roc_curve(labels, s)
    edges = np.linspace(0.0, SCORE_MAX, histogram_bins + 1)
    single, grouped = rollup_importance(feature_importance, feature_variable)
    return ModelMetrics(
        n_events=len(labels),
        n_fraud=int(labels.sum()),
        auc=auc,
        auc_lower=lower,
        auc_upper=upper,
        bootstrap_rounds=bootstrap,
        auprc=average_precision(labels, s),
        roc_fpr=fpr,
        roc_tpr=tpr,
        roc_threshold=thr,
        histogram_edges=edges,
        fraud_histogram=np.histogram(np.clip(s[labels == 1], 0, SCORE_MAX), edges)[0],
        legit_histogram=np.histogram(np.clip(s[labels == 0], 0, SCORE_MAX), edges)[0],
        thresholds=threshold_table(labels, s, step=threshold_step),
        feature_importance=_sorted_desc({k: float(v) for k, v in feature_importance.items()}),
        variable_importance=_sorted_desc(single),
        aggregated_importance=_sorted_desc(grouped),
    )
