"""Fraud model training: time split, LightGBM training and the 0-1000 score calibration."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest
from sklearn.metrics import roc_auc_score  # type: ignore[import-untyped]

from services.fraud.domain.training import (
    ScoreCalibration,
    TrainedModel,
    TrainingConfig,
    fpr_for_score,
    gain_importance,
    logodds_importance,
    score_for_fpr,
    time_split,
    train,
)

FAST = TrainingConfig(search_trials=3, max_rounds=300, search_max_rounds=150, num_threads=1)


@dataclass(frozen=True)
class Data:
    X: npt.NDArray[np.float32]
    y: npt.NDArray[np.int8]
    timestamps: npt.NDArray[np.datetime64]
    names: list[str]


def synthetic(n: int = 12_000, seed: int = 0) -> Data:
    """A known signal in two numeric features and one categorical, plus noise and NaNs."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6)).astype(np.float32)
    X[:, 4] = rng.integers(0, 40, n)
    X[rng.random(n) < 0.05, 4] = np.nan
    X[rng.random(n) < 0.1, 2] = np.nan
    risky = np.isin(X[:, 4], [3, 7, 11, 19, 23])
    logit = 2.0 * X[:, 0] - 1.5 * X[:, 1] + 2.5 * risky - 4.5
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    seconds = rng.uniform(0, 90 * 86_400, n).astype(np.int64)
    ts = np.datetime64("2024-01-01T00:00:00", "us") + (seconds * 1_000_000).astype(
        "timedelta64[us]"
    )
    return Data(X, y, ts, ["amount_z", "age_z", "noise_a", "noise_b", "category", "noise_c"])


@pytest.fixture(scope="module")
def data() -> Data:
    return synthetic()


@pytest.fixture(scope="module")
def model(data: Data) -> TrainedModel:
    return train(
        data.X,
        data.y,
        data.timestamps,
        feature_names=data.names,
        categorical_features=["category"],
        config=FAST,
    )


def test_time_split_holds_out_the_latest_15_percent() -> None:
    rng = np.random.default_rng(1)
    ts = np.datetime64("2024-01-01", "us") + rng.permutation(1000).astype("timedelta64[s]")
    train_idx, holdout_idx = time_split(ts, 0.15)
    assert len(holdout_idx) == 150 and len(train_idx) == 850
    assert ts[train_idx].max() < ts[holdout_idx].min()
    assert np.all(np.diff(ts[holdout_idx]) >= np.timedelta64(0, "us"))
    assert sorted(np.concatenate([train_idx, holdout_idx]).tolist()) == list(range(1000))
    with pytest.raises(ValueError):
        time_split(ts, 1.5)


def test_training_learns_the_signal(model: TrainedModel, data: Data) -> None:
    holdout = model.holdout
    assert np.array_equal(holdout.y, data.y[holdout.index])
    assert data.timestamps[model.train_index].max() <= holdout.timestamps.min()
    assert roc_auc_score(holdout.y, holdout.probability) > 0.85
    # The score is a monotonic map of the probability, so it ranks identically.
    assert roc_auc_score(holdout.y, holdout.score) == pytest.approx(
        roc_auc_score(holdout.y, holdout.probability)
    )
    assert model.booster.current_iteration() == model.best_iteration
    assert len(model.trials) == FAST.search_trials
    assert {"search_s", "fit_s", "total_s"} <= set(model.timings)
    assert 0 < model.params["scale_pos_weight"]


def test_training_is_deterministic(model: TrainedModel, data: Data) -> None:
    again = train(
        data.X,
        data.y,
        data.timestamps,
        feature_names=data.names,
        categorical_features=["category"],
        config=FAST,
    )
    assert again.params == model.params
    assert again.best_iteration == model.best_iteration
    assert np.array_equal(again.holdout.probability, model.holdout.probability)
    assert again.calibration == model.calibration


def test_importances_name_every_feature(model: TrainedModel, data: Data) -> None:
    gain = gain_importance(model.booster)
    assert set(gain) == set(data.names)
    assert max(gain, key=lambda k: gain[k]) in {"amount_z", "age_z", "category"}
    shap = logodds_importance(model.booster, data.X, max_rows=2000)
    assert set(shap) == set(data.names)
    assert all(v >= 0 for v in shap.values())


def test_training_needs_fraud_in_the_holdout(data: Data) -> None:
    y = data.y.copy()
    y[time_split(data.timestamps, 0.15)[1]] = 0
    with pytest.raises(ValueError, match="holdout"):
        train(data.X, y, data.timestamps, feature_names=data.names, config=FAST)


def test_score_curve_keeps_afd_anchors() -> None:
    assert score_for_fpr([1.0, 0.1, 0.02, 0.0]) == pytest.approx([0, 600, 900, 1000])
    fprs = np.geomspace(1e-6, 1, 200)
    scores = score_for_fpr(fprs)
    assert np.all(np.diff(scores) < 0)
    assert fpr_for_score(scores) == pytest.approx(fprs, rel=1e-9)


def test_calibration_is_monotonic_bounded_and_informative() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random(20_000) < 0.02).astype(np.int8)
    p = 1 / (1 + np.exp(-(rng.normal(size=20_000) + 3 * y - 4)))
    cal = ScoreCalibration.fit(p, y)
    grid = np.concatenate([[0.0, 1.0], np.sort(rng.random(5000)), np.sort(p)])
    grid.sort()
    scores = cal.score(grid)
    assert scores.min() >= 0 and scores.max() <= 1000
    assert np.all(np.diff(scores) >= 0)
    distinct = np.diff(grid) > 0
    # Strictly informative: distinct probabilities in the data range get distinct scores.
    inside = distinct & (grid[:-1] > 1e-12) & (grid[1:] < 1 - 1e-12)
    assert np.all(np.diff(scores)[inside] > 0)
    # A threshold flags about the FPR it stands for on the data it was fitted on.
    legit = cal.score(p[y == 0])
    assert np.mean(legit >= 600) == pytest.approx(0.10, abs=0.01)
    assert np.mean(legit >= 900) == pytest.approx(0.02, abs=0.005)


def test_one_score_equals_the_batch_score_as_served() -> None:
    rng = np.random.default_rng(5)
    y = (rng.random(20_000) < 0.03).astype(np.int8)
    p = 1 / (1 + np.exp(-(rng.normal(size=20_000) + 3 * y - 4)))
    cal = ScoreCalibration.fit(p, y)
    edges = [0.0, 1.0, 1e-300, 1 - 1e-16, 0.5, float(np.nextafter(0, 1)), float("nan")]
    edges += [-0.1, 1.5, -0.0, float("inf")]  # outside [0, 1]: numpy's NaN, so the middle
    knots = 1 / (1 + np.exp(-np.array(cal.log_odds)))  # at and next to every knot
    at_knots = np.concatenate([knots, np.nextafter(knots, 0), np.nextafter(knots, 1)])
    probabilities = np.concatenate(
        [edges, at_knots, rng.random(5000), p[:5000], rng.random(500) ** 40]
    )
    with np.errstate(invalid="ignore"):
        batch = np.round(cal.score(probabilities), 1)
    one = [cal.score_one(float(v)) for v in probabilities]
    assert one == [float(v) for v in batch]  # bit for bit, so online and batch scores agree


def test_calibration_round_trips_through_json() -> None:
    rng = np.random.default_rng(4)
    y = (rng.random(5000) < 0.05).astype(np.int8)
    p = rng.random(5000)
    cal = ScoreCalibration.fit(p, y)
    loaded = ScoreCalibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert loaded == cal
    assert np.array_equal(loaded.score(p), cal.score(p))


def test_calibration_rejects_non_monotonic_knots() -> None:
    with pytest.raises(ValueError):
        ScoreCalibration(log_odds=(-1.0, 0.0, 1.0), scores=(0.0, 500.0, 400.0))
    with pytest.raises(ValueError):
        ScoreCalibration(log_odds=(-1.0, 1.0), scores=(0.0, 1001.0))
