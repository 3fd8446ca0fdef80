"""LightGBM -> ONNX export parity (categoricals, NaN, float32 thresholds) and explanations."""

from __future__ import annotations

from typing import Any

import lightgbm
import numpy as np
import numpy.typing as npt
import onnxmltools
import onnxruntime as ort
import pytest
from onnxmltools.convert.common.data_types import FloatTensorType

from services.fraud.adapters.onnx_export import (
    booster_to_onnx,
    exact_float32_model,
    explain,
    onnx_input_output,
)

N_FEATURES = 6
NAMES = ["epoch_seconds", "amount", "merchant", "card_type", "velocity", "amount_cents"]


def _data(n: int, rng: np.random.Generator) -> npt.NDArray[np.float32]:
    X = np.empty((n, N_FEATURES), dtype=np.float32)
    # Large magnitudes: adjacent float32 values are 128 apart, so thresholds sit between them.
    X[:, 0] = np.float32(1.7e9) + rng.integers(0, 400, n).astype(np.float32) * np.float32(128)
    X[:, 1] = rng.lognormal(3, 1, n)
    X[:, 2] = rng.integers(0, 150, n)  # many categories -> multi-category ("a||b||c") splits
    X[:, 3] = rng.integers(0, 4, n)  # few categories -> one-vs-rest splits
    X[:, 4] = rng.normal(size=n)
    X[:, 5] = rng.integers(0, 2_000_000, n).astype(np.float32)
    X[rng.random(n) < 0.1, 1] = np.nan
    X[rng.random(n) < 0.1, 2] = np.nan
    return X


@pytest.fixture(scope="module")
def booster() -> lightgbm.Booster:
    rng = np.random.default_rng(0)
    n = 20_000
    X = _data(n, rng)
    step = ((X[:, 0] - np.float32(1.7e9)) / 128).astype(int)
    risky = np.isin(X[:, 2], rng.choice(150, 40, replace=False))
    logit = (
        1.5 * (step % 2 == 0)
        + 2.0 * risky
        + 0.8 * (X[:, 3] == 2)
        + np.nan_to_num(np.log(X[:, 1]) - 3)
        + X[:, 4]
        + (X[:, 5] % 3 == 0)
        - 3
    )
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    train_set = lightgbm.Dataset(
        X, y, feature_name=NAMES, categorical_feature=["merchant", "card_type"]
    )
    params = {
        "objective": "binary",
        "verbosity": -1,
        "num_leaves": 31,
        "min_data_in_leaf": 5,
        "min_data_per_group": 5,
        "cat_smooth": 1.0,
        "max_bin": 1023,
        "num_threads": 1,
        "seed": 0,
    }
    return lightgbm.train(params, train_set, num_boost_round=60)


@pytest.fixture(scope="module")
def test_rows() -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(1)
    X = _data(10_000, rng)
    X[rng.random(10_000) < 0.05, 4] = np.nan  # NaN where training had none
    X[rng.random(10_000) < 0.05, 3] = np.nan
    X[:200, 2] = 500  # a category never seen in training
    return X


def _session(model: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _split_kinds(booster: lightgbm.Booster) -> set[str]:
    kinds: set[str] = set()

    def walk(node: dict[str, Any]) -> None:
        if "split_feature" not in node:
            return
        threshold = node["threshold"]
        if node["decision_type"] == "==":
            kinds.add("multi-category" if "||" in str(threshold) else "one-category")
        walk(node["left_child"])
        walk(node["right_child"])

    for tree in booster.dump_model()["tree_info"]:
        walk(tree["tree_structure"])
    return kinds


def test_onnx_matches_lightgbm_with_categoricals_and_nan(
    booster: lightgbm.Booster, test_rows: npt.NDArray[np.float32]
) -> None:
    assert _split_kinds(booster) == {"multi-category", "one-category"}
    model = booster_to_onnx(booster, N_FEATURES)
    label, probabilities = _session(model).run(None, {"input": test_rows})
    expected = np.asarray(booster.predict(test_rows))
    assert probabilities.shape == (10_000, 2)
    assert np.abs(probabilities[:, 1] - expected).max() < 1e-5
    assert np.abs(probabilities.sum(axis=1) - 1).max() < 1e-5
    assert np.array_equal(label, (expected > 0.5).astype(np.int64))
    assert onnx_input_output(model) == {
        "inputs": {"input": ["N", N_FEATURES]},
        "outputs": {"label": ["N"], "probabilities": ["N", 2]},
    }


def test_plain_onnxmltools_conversion_is_not_exact(
    booster: lightgbm.Booster, test_rows: npt.NDArray[np.float32]
) -> None:
    """Documents why exact_float32_model exists; if this fails, onnxmltools fixed the cast."""
    plain = onnxmltools.convert_lightgbm(
        booster, initial_types=[("input", FloatTensorType([None, N_FEATURES]))], zipmap=False
    )
    probabilities = _session(plain.SerializeToString()).run(None, {"input": test_rows})[1]
    expected = np.asarray(booster.predict(test_rows))
    assert np.abs(probabilities[:, 1] - expected).max() > 1e-3


def test_float32_thresholds_do_not_change_lightgbm_predictions(
    booster: lightgbm.Booster, test_rows: npt.NDArray[np.float32]
) -> None:
    exact = exact_float32_model(booster)
    assert exact.num_trees() == booster.num_trees()
    assert np.array_equal(exact.predict(test_rows), booster.predict(test_rows))


def test_explain_rolls_shap_values_up_to_variables(
    booster: lightgbm.Booster, test_rows: npt.NDArray[np.float32]
) -> None:
    row = test_rows[0]
    variables = {
        "epoch_seconds": "event_time",
        "amount": "amount",
        "amount_cents": "amount",
        "merchant": "merchant_id",
        "card_type": "card",
        "velocity": ["card", "merchant_id"],
    }
    top = explain(booster, row, variables, top=10)
    names = [name for name, _ in top]
    assert sorted(names) == sorted(
        ["event_time", "amount", "merchant_id", "card", "card + merchant_id"]
    )
    magnitudes = [abs(v) for _, v in top]
    assert magnitudes == sorted(magnitudes, reverse=True)
    contrib = booster.predict(row.reshape(1, -1), pred_contrib=True)[0]
    assert sum(v for _, v in top) + contrib[-1] == pytest.approx(
        booster.predict(row.reshape(1, -1), raw_score=True)[0]
    )
    by_name = dict(top)
    assert by_name["amount"] == pytest.approx(contrib[1] + contrib[5])
    assert len(explain(booster, row, variables, top=2)) == 2
