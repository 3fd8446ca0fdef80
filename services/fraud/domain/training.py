"""LightGBM training with a time-ordered holdout and an FPR-based 0-1000 score calibration."""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import lightgbm
import numpy as np
import numpy.typing as npt

from services.fraud.domain.metrics import roc_auc

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

SCORE_MIN = 0.0
SCORE_MAX = 1000.0

# Log-odds where the calibration pins score 0 and 1000; probabilities beyond are clipped.
_LOGIT_LIMIT = 40.0


# --- time split ---------------------------------------------------------------------------


def time_split(
    timestamps: npt.NDArray[Any], holdout_fraction: float = 0.15
) -> tuple[IntArray, IntArray]:
    """Split row indices by event time: the latest ``holdout_fraction`` of rows is the holdout.

    Both index arrays are returned in ascending event-time order; ties in time are broken by row
    order (stable sort), so the split is deterministic.
    """
    n = len(timestamps)
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError("holdout_fraction must be in (0, 1)")
    if n < 2:
        raise ValueError("need at least two events to split")
    order = np.argsort(np.asarray(timestamps), kind="stable").astype(np.int64)
    n_holdout = min(n - 1, max(1, math.ceil(n * holdout_fraction)))
    return order[: n - n_holdout], order[n - n_holdout :]


# --- score calibration --------------------------------------------------------------------


def score_for_fpr(fpr: npt.ArrayLike) -> FloatArray:
    """The fixed FPR -> score curve: 1.0 -> 0, 10% -> 600, 2% -> 900, 0 -> 1000.

    The two published AFD anchors (score 600 ~ 10% FPR, 900 ~ 2% FPR) are kept exactly; between
    them and down to FPR 1 the curve is linear in log(FPR); below 2% it approaches 1000 as
    ``1000 - 100 * sqrt(fpr / 0.02)`` so that the riskiest tail still gets distinct scores.
    """
    f = np.clip(np.asarray(fpr, dtype=np.float64), 0.0, 1.0)
    safe = np.maximum(f, 1e-300)
    high = 600.0 * np.log10(1.0 / safe)
    mid = 600.0 + 300.0 * np.log(0.1 / safe) / np.log(5.0)
    low = 1000.0 - 100.0 * np.sqrt(f / 0.02)
    out: FloatArray = np.where(f >= 0.1, high, np.where(f >= 0.02, mid, low))
    return out


def fpr_for_score(score: npt.ArrayLike) -> FloatArray:
    """Inverse of :func:`score_for_fpr`: the legitimate-event FPR a score threshold stands for."""
    s = np.clip(np.asarray(score, dtype=np.float64), SCORE_MIN, SCORE_MAX)
    high = 10.0 ** (-s / 600.0)
    mid = 0.1 * np.exp(-(s - 600.0) * np.log(5.0) / 300.0)
    low = 0.02 * ((1000.0 - s) / 100.0) ** 2
    out: FloatArray = np.where(s <= 600.0, high, np.where(s <= 900.0, mid, low))
    return out


def _logit(probabilities: npt.ArrayLike) -> FloatArray:
    p = np.asarray(probabilities, dtype=np.float64)
    with np.errstate(divide="ignore"):
        z = np.log(p) - np.log1p(-p)
    out: FloatArray = np.clip(np.nan_to_num(z, nan=0.0), -_LOGIT_LIMIT, _LOGIT_LIMIT)
    return out


@dataclass(frozen=True)
class ScoreCalibration:
    """Monotonic probability -> 0..1000 score map; a score threshold stands for an FPR.

    Knots are (log-odds, score) pairs, both strictly increasing; scores are linear between knots,
    so distinct probabilities always get distinct scores (ties only where the model ties).
    """

    log_odds: tuple[float, ...]
    scores: tuple[float, ...]
    n_legit: int = 0

    def __post_init__(self) -> None:
        x = np.asarray(self.log_odds)
        s = np.asarray(self.scores)
        if len(x) != len(s) or len(x) < 2:
            raise ValueError("calibration needs at least two matching knots")
        if np.any(np.diff(x) <= 0) or np.any(np.diff(s) <= 0):
            raise ValueError("calibration knots must be strictly increasing")
        if s[0] < SCORE_MIN or s[-1] > SCORE_MAX:
            raise ValueError("calibration scores must lie in [0, 1000]")

    @classmethod
    def fit(
        cls, probabilities: npt.ArrayLike, y: npt.ArrayLike, *, max_knots: int = 256
    ) -> ScoreCalibration:
        """Fit on held-out predictions: knots at quantiles of the legitimate events' scores.

        A legitimate event's score is ``score_for_fpr`` of its mid-rank FPR (the share of legit
        events ranked above it, ties counted half), so a threshold T flags about
        ``fpr_for_score(T)`` of legitimate traffic. Only legit events are used: the score is a
        FPR scale, which is also why class weighting in training does not change it.
        """
        p = np.asarray(probabilities, dtype=np.float64)
        labels = np.asarray(y)
        legit = np.sort(_logit(p[labels == 0]))
        n0 = len(legit)
        if n0 == 0:
            raise ValueError("calibration needs legitimate events")
        uniq, counts = np.unique(legit, return_counts=True)
        above = n0 - np.cumsum(counts)
        fpr_mid = (above + 0.5 * counts) / n0
        # Geometric FPR levels keep resolution in the low-FPR tail where thresholds are set.
        levels = np.unique(
            np.concatenate(
                [np.geomspace(1.0 / n0, 1.0, max_knots // 2), np.linspace(0.0, 1.0, max_knots // 2)]
            )
        )
        pick = np.unique(np.clip(np.searchsorted(-fpr_mid, -levels, side="left"), 0, len(uniq) - 1))
        pick = np.unique(np.concatenate([[0, len(uniq) - 1], pick]))
        xs = uniq[pick]
        ss = score_for_fpr(fpr_mid[pick])
        keep = (xs > -_LOGIT_LIMIT) & (xs < _LOGIT_LIMIT) & (ss > SCORE_MIN) & (ss < SCORE_MAX)
        xs, ss = xs[keep], ss[keep]
        log_odds = np.concatenate([[-_LOGIT_LIMIT], xs, [_LOGIT_LIMIT]])
        scores = np.concatenate([[SCORE_MIN], ss, [SCORE_MAX]])
        return cls(
            log_odds=tuple(float(v) for v in log_odds),
            scores=tuple(float(v) for v in scores),
            n_legit=n0,
        )

    def score(self, probabilities: npt.ArrayLike) -> FloatArray:
        """Scores in [0, 1000], non-decreasing in probability."""
        out: FloatArray = np.interp(_logit(probabilities), self._knots[0], self._knots[1])
        return out

    def score_one(self, probability: float) -> float:
        """`score` of one probability, rounded to 0.1 as served, in plain floats: the served
        path scores one event at a time, where numpy's per-call set-up costs more than the
        arithmetic. The same operations as `_logit`, `np.interp` and `np.round(x, 1)`."""
        p = float(probability)
        if p == 0.0:
            z = -_LOGIT_LIMIT  # log(0) = -inf, clipped
        elif p == 1.0:
            z = _LOGIT_LIMIT  # log1p(-1) = -inf, so +inf, clipped
        elif 0.0 < p < 1.0:
            z = min(max(math.log(p) - math.log1p(-p), -_LOGIT_LIMIT), _LOGIT_LIMIT)
        else:
            z = 0.0  # NaN or outside [0, 1]: numpy gives NaN, which `_logit` maps to 0
        xs, ys = self.log_odds, self.scores
        j = bisect.bisect_right(xs, z) - 1
        if j < 0:
            value = ys[0]
        elif j >= len(xs) - 1:
            value = ys[-1]
        else:  # np.interp's formula, term for term
            slope = (ys[j + 1] - ys[j]) / (xs[j + 1] - xs[j])
            value = slope * (z - xs[j]) + ys[j]
        return round(value * 10.0) / 10.0  # np.round(x, 1): rint(x * 10) / 10, half to even

    @cached_property
    def _knots(self) -> tuple[FloatArray, FloatArray]:
        return np.asarray(self.log_odds), np.asarray(self.scores)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "fpr-piecewise-linear-logit",
            "log_odds": list(self.log_odds),
            "scores": list(self.scores),
            "n_legit": self.n_legit,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScoreCalibration:
        return cls(
            log_odds=tuple(float(v) for v in data["log_odds"]),
            scores=tuple(float(v) for v in data["scores"]),
            n_legit=int(data.get("n_legit", 0)),
        )


# --- training -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingConfig:
    holdout_fraction: float = 0.15
    # Share of the training part (its most recent slice) used for early stopping and calibration.
    validation_fraction: float = 0.15
    search_trials: int = 6
    seed: int = 0
    max_rounds: int = 1000
    early_stopping_rounds: int = 50
    num_threads: int = 0
    # The search trains on all fraud plus a sample of legit events, capped at this many rows.
    search_max_rows: int = 50_000
    search_max_rounds: int = 400
    search_early_stopping_rounds: int = 30


@dataclass(frozen=True)
class HoldoutPredictions:
    index: IntArray
    y: npt.NDArray[np.int8]
    probability: FloatArray
    score: FloatArray
    timestamps: npt.NDArray[Any]


@dataclass(frozen=True)
class TrialResult:
    params: dict[str, Any]
    validation_auc: float
    best_iteration: int


@dataclass
class TrainedModel:
    booster: lightgbm.Booster
    feature_names: list[str]
    categorical_features: list[str]
    params: dict[str, Any]
    best_iteration: int
    calibration: ScoreCalibration
    holdout: HoldoutPredictions
    train_index: IntArray
    validation_auc: float
    trials: list[TrialResult] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def predict_proba(self, X: npt.NDArray[np.floating[Any]]) -> FloatArray:
        out: FloatArray = np.asarray(self.booster.predict(X), dtype=np.float64)
        return out

    def score(self, X: npt.NDArray[np.floating[Any]]) -> FloatArray:
        return self.calibration.score(self.predict_proba(X))

    def gain_importance(self) -> dict[str, float]:
        return gain_importance(self.booster)


def gain_importance(booster: lightgbm.Booster) -> dict[str, float]:
    """Total split gain per feature."""
    gains = booster.feature_importance(importance_type="gain")
    return {name: float(g) for name, g in zip(booster.feature_name(), gains, strict=True)}


def logodds_importance(
    booster: lightgbm.Booster,
    X: npt.NDArray[np.floating[Any]],
    *,
    max_rows: int = 20_000,
    seed: int = 0,
) -> dict[str, float]:
    """Mean absolute SHAP contribution (log-odds) per feature, on at most ``max_rows`` rows.

    This is on the same scale as AFD's ``logOddsMetrics`` variable importance.
    """
    rows = np.asarray(X)
    if len(rows) > max_rows:
        pick = np.sort(np.random.default_rng(seed).choice(len(rows), max_rows, replace=False))
        rows = rows[pick]
    contrib = np.asarray(booster.predict(rows, pred_contrib=True))[:, :-1]
    means = np.abs(contrib).mean(axis=0)
    return {name: float(m) for name, m in zip(booster.feature_name(), means, strict=True)}


def _base_params(config: TrainingConfig) -> dict[str, Any]:
    return {
        "objective": "binary",
        "metric": "auc",
        "verbosity": -1,
        "seed": config.seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": config.num_threads,
        # Caps each leaf's log-odds step. At 0.2% fraud a leaf of legit rows has a tiny hessian
        # (p(1-p) per row), so uncapped Newton steps explode, above all with class weights or a
        # high learning rate: validation AUC then peaks at the first tree (measured 0.75 vs 0.96).
        "max_delta_step": 1.0,
    }


def _search_space(rng: np.random.Generator, trial: int) -> dict[str, Any]:
    """Trial 0 is a sensible default; the others are random draws from the space."""
    if trial == 0:
        return {
            "num_leaves": 31,
            "learning_rate": 0.05,
            "min_data_in_leaf": 50,
            "feature_fraction": 0.8,
            "lambda_l2": 1.0,
            "class_weight_power": 0.0,
        }
    return {
        "num_leaves": int(rng.choice([15, 31, 63, 127])),
        "learning_rate": float(np.exp(rng.uniform(np.log(0.02), np.log(0.15)))),
        "min_data_in_leaf": int(rng.choice([20, 50, 100, 200])),
        "feature_fraction": float(rng.uniform(0.5, 1.0)),
        "lambda_l2": float(np.exp(rng.uniform(np.log(0.01), np.log(10.0)))),
        "class_weight_power": float(rng.choice([0.0, 0.25, 0.5])),
    }


def _lightgbm_params(
    config: TrainingConfig, searched: Mapping[str, Any], class_ratio: float, sampled: float
) -> dict[str, Any]:
    """LightGBM parameters for a point of the search space.

    Class weighting is searched as ``scale_pos_weight = (legit/fraud) ** power`` with power in
    {0, 0.25, 0.5}, default 0. The full ratio (is_unbalance) was measured to fail on 0.17%
    fraud: the ~580x fraud hessians let the first trees fit a handful of fraud rows and early
    stopping ends at iteration 1 (holdout AUC 0.72 against 0.96 unweighted). The output score
    is rank-based (ScoreCalibration), so weighting is only a regularisation knob here and the
    validation AUC decides. ``sampled`` is the share of legit rows kept in the search sample;
    scaling the fraud weight by it makes the sample weigh the classes as the full data would.
    """
    params = {**_base_params(config), **searched}
    power = float(params.pop("class_weight_power"))
    params["scale_pos_weight"] = class_ratio**power * sampled
    return params


_DATASET_PARAMS = {"feature_pre_filter": False, "verbosity": -1}


def _dataset(
    X: npt.NDArray[Any],
    y: npt.NDArray[Any],
    feature_names: Sequence[str],
    categorical_features: Sequence[str],
    reference: lightgbm.Dataset | None = None,
) -> lightgbm.Dataset:
    return lightgbm.Dataset(
        X,
        label=y,
        feature_name=list(feature_names),
        categorical_feature=list(categorical_features),
        reference=reference,
        params=_DATASET_PARAMS,
        free_raw_data=True,
    )


def _fit(
    params: dict[str, Any],
    train_set: lightgbm.Dataset,
    valid_set: lightgbm.Dataset,
    rounds: int,
    patience: int,
) -> lightgbm.Booster:
    return lightgbm.train(
        params,
        train_set,
        num_boost_round=rounds,
        valid_sets=[valid_set],
        valid_names=["validation"],
        callbacks=[lightgbm.early_stopping(patience, first_metric_only=True, verbose=False)],
    )


def _require_both_classes(y: npt.NDArray[Any], where: str) -> None:
    if not ((y == 1).any() and (y == 0).any()):
        raise ValueError(f"the {where} needs both fraud and legitimate events")


def train(
    X: npt.NDArray[np.floating[Any]],
    y: npt.NDArray[Any],
    timestamps: npt.NDArray[Any],
    *,
    feature_names: Sequence[str],
    categorical_features: Sequence[str] = (),
    config: TrainingConfig | None = None,
) -> TrainedModel:
    """Train a binary LightGBM fraud model on the oldest 85%, evaluate on the newest 15%.

    The most recent ``validation_fraction`` of the training part drives early stopping, the
    hyper-parameter choice and the score calibration. The early-stopped model is kept rather
    than refitted on all training rows: the calibration needs out-of-sample predictions of the
    very model that serves, and the holdout metrics then describe exactly that model.
    """
    cfg = config or TrainingConfig()
    started = time.perf_counter()
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y).astype(np.int8)
    timestamps = np.asarray(timestamps)
    if X.ndim != 2 or X.shape[1] != len(feature_names):
        raise ValueError("X must be [n, len(feature_names)]")
    if len(y) != len(X) or len(timestamps) != len(X):
        raise ValueError("X, y and timestamps must have the same length")
    unknown = set(categorical_features) - set(feature_names)
    if unknown:
        raise ValueError(f"unknown categorical features: {sorted(unknown)}")

    train_idx, holdout_idx = time_split(timestamps, cfg.holdout_fraction)
    fit_idx, valid_idx = time_split(timestamps[train_idx], cfg.validation_fraction)
    fit_idx, valid_idx = train_idx[fit_idx], train_idx[valid_idx]
    _require_both_classes(y[fit_idx], "training slice")
    _require_both_classes(y[valid_idx], "validation slice (most recent training events)")
    _require_both_classes(y[holdout_idx], "holdout (most recent events)")

    rng = np.random.default_rng(cfg.seed)
    X_valid, y_valid = X[valid_idx], y[valid_idx]

    # Search on all fraud plus a sample of legit rows: the cheap part of the budget.
    trials: list[TrialResult] = []
    y_fit = y[fit_idx]
    pos = fit_idx[y_fit == 1]
    neg = fit_idx[y_fit == 0]
    class_ratio = len(neg) / len(pos)
    n_neg = min(len(neg), max(cfg.search_max_rows - len(pos), 1))
    search_idx = np.sort(np.concatenate([pos, rng.choice(neg, n_neg, replace=False)]))
    t0 = time.perf_counter()
    chosen = _search_space(rng, 0)
    if cfg.search_trials > 1:
        search_set = _dataset(X[search_idx], y[search_idx], feature_names, categorical_features)
        search_valid = _dataset(X_valid, y_valid, feature_names, categorical_features, search_set)
        for trial in range(cfg.search_trials):
            searched = _search_space(rng, trial)
            booster = _fit(
                _lightgbm_params(cfg, searched, class_ratio, n_neg / len(neg)),
                search_set,
                search_valid,
                cfg.search_max_rounds,
                cfg.search_early_stopping_rounds,
            )
            auc = float(booster.best_score["validation"]["auc"])
            trials.append(TrialResult(searched, auc, int(booster.best_iteration)))
        # max() keeps the first of equals, so the default configuration wins ties.
        chosen = max(trials, key=lambda t: t.validation_auc).params
    t_search = time.perf_counter() - t0

    t0 = time.perf_counter()
    params = _lightgbm_params(cfg, chosen, class_ratio, 1.0)
    train_set = _dataset(X[fit_idx], y_fit, feature_names, categorical_features)
    valid_set = _dataset(X_valid, y_valid, feature_names, categorical_features, train_set)
    full = _fit(params, train_set, valid_set, cfg.max_rounds, cfg.early_stopping_rounds)
    best = int(full.best_iteration) or full.current_iteration()
    # Keep exactly the early-stopped trees so predict, ONNX export and SHAP agree by default.
    booster = lightgbm.Booster(model_str=full.model_to_string(num_iteration=best))
    t_fit = time.perf_counter() - t0

    p_valid = np.asarray(booster.predict(X_valid), dtype=np.float64)
    calibration = ScoreCalibration.fit(p_valid, y_valid)
    p_holdout = np.asarray(booster.predict(X[holdout_idx]), dtype=np.float64)
    holdout = HoldoutPredictions(
        index=holdout_idx,
        y=y[holdout_idx],
        probability=p_holdout,
        score=calibration.score(p_holdout),
        timestamps=np.asarray(timestamps)[holdout_idx],
    )
    return TrainedModel(
        booster=booster,
        feature_names=list(feature_names),
        categorical_features=list(categorical_features),
        params=params,
        best_iteration=best,
        calibration=calibration,
        holdout=holdout,
        train_index=train_idx,
        validation_auc=roc_auc(y_valid, p_valid),
        trials=trials,
        timings={
            "search_s": t_search,
            "fit_s": t_fit,
            "total_s": time.perf_counter() - started,
        },
    )
