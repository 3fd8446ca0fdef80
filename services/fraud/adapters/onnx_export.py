"""LightGBM booster -> ONNX (exact for float32 inputs) and per-variable SHAP explanations."""

from __future__ import annotations

import math
from typing import Any

import lightgbm
import numpy as np
import numpy.typing as npt
import onnx
import onnxmltools
from onnxmltools.convert.common.data_types import FloatTensorType

from services.fraud.domain.metrics import FeatureVariable, variables_of

INPUT_NAME = "input"
OUTPUT_NAMES = ("label", "probabilities")

# Bits of LightGBM's per-node decision_type (include/LightGBM/tree.h).
_CATEGORICAL_MASK = 1
_DEFAULT_LEFT_MASK = 2
_MISSING_NONE, _MISSING_ZERO, _MISSING_NAN = 0, 1, 2


def _floor_float32(value: float) -> float:
    """Largest float32 <= value, so ``x <= value`` and ``x <= result`` agree for float32 x."""
    with np.errstate(over="ignore"):
        f = np.float32(value)
    if math.isinf(f) and f < 0:
        return value
    if float(f) > value:
        f = np.nextafter(f, np.float32(-np.inf))
    return float(f)


def _patch_tree(thresholds: list[str], decision_types: list[str]) -> tuple[list[str], list[str]]:
    new_thresholds: list[str] = []
    new_types: list[str] = []
    for raw_threshold, raw_type in zip(thresholds, decision_types, strict=True):
        decision = int(raw_type)
        if decision & _CATEGORICAL_MASK:
            # LightGBM sends NaN right at categorical splits whatever default_left says; the
            # converter reads default_left as "NaN goes left", so clear it.
            new_thresholds.append(raw_threshold)
            new_types.append(str(decision & ~_DEFAULT_LEFT_MASK))
            continue
        missing = (decision >> 2) & 3
        if missing == _MISSING_ZERO:
            raise NotImplementedError("zero_as_missing models cannot be exported to ONNX")
        threshold = _floor_float32(float(raw_threshold))
        if missing == _MISSING_NONE:
            # Without a missing type LightGBM predicts NaN as 0.0; the converter sends NaN left
            # exactly when default_left is set and the threshold is >= 0, which is that rule.
            decision |= _DEFAULT_LEFT_MASK
        new_thresholds.append(repr(threshold))
        new_types.append(str(decision))
    return new_thresholds, new_types


def exact_float32_model(booster: lightgbm.Booster) -> lightgbm.Booster:
    """The same model with thresholds that survive onnxmltools' cast to float32.

    ONNX TreeEnsemble stores thresholds as float32, rounded to nearest. LightGBM compares the
    float32 input, widened to double, with a double threshold; when the cast rounds a threshold
    up onto a value that occurs in the data (common for large magnitudes such as epoch seconds
    or amounts in cents, where adjacent float32 values are far apart) those rows take the other
    branch. Replacing every threshold t by the largest float32 <= t changes nothing for float32
    inputs and makes the cast exact.
    """
    text = booster.model_to_string()
    first = text.find("\nTree=") + 1
    tail = text.index("end of trees")
    if first == 0:
        return lightgbm.Booster(model_str=text)
    blocks = ["Tree=" + b for b in text[first:tail].split("Tree=")[1:]]
    patched = [_patch_block(block) for block in blocks]
    # The header lists each tree's byte length; keep it in step with the rewritten trees.
    header = "\n".join(
        "tree_sizes=" + " ".join(str(len(b.encode())) for b in patched)
        if line.startswith("tree_sizes=")
        else line
        for line in text[:first].split("\n")
    )
    return lightgbm.Booster(model_str=header + "".join(patched) + text[tail:])


def _patch_block(block: str) -> str:
    lines = block.split("\n")
    at = {line.split("=", 1)[0]: i for i, line in enumerate(lines) if "=" in line}
    if "threshold" not in at or "decision_type" not in at:
        return block
    thresholds = lines[at["threshold"]].split("=", 1)[1].split()
    decision_types = lines[at["decision_type"]].split("=", 1)[1].split()
    thresholds, decision_types = _patch_tree(thresholds, decision_types)
    lines[at["threshold"]] = "threshold=" + " ".join(thresholds)
    lines[at["decision_type"]] = "decision_type=" + " ".join(decision_types)
    return "\n".join(lines)


def _set_batch_shapes(model: onnx.ModelProto, n_features: int, n_classes: int) -> None:
    wanted: dict[str, list[int | None]] = {
        INPUT_NAME: [None, n_features],
        "label": [None],
        "probabilities": [None, n_classes],
    }
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        del dims[:]
        for size in wanted[value.name]:
            dim = dims.add()
            if size is None:
                dim.dim_param = "N"
            else:
                dim.dim_value = size


def booster_to_onnx(booster: lightgbm.Booster, n_features: int | None = None) -> bytes:
    """ONNX model with input "input" float32 [N, n_features] and outputs "label" int64 [N]
    and "probabilities" float32 [N, 2] (column 1 = fraud probability).

    Categorical splits (LightGBM native categoricals, "a||b||c" sets) are converted by
    onnxmltools into chains of BRANCH_EQ nodes, which the tests check against LightGBM.
    """
    n = n_features if n_features is not None else booster.num_feature()
    if n != booster.num_feature():
        raise ValueError(f"booster has {booster.num_feature()} features, not {n}")
    model = onnxmltools.convert_lightgbm(
        exact_float32_model(booster),
        initial_types=[(INPUT_NAME, FloatTensorType([None, n]))],
        zipmap=False,
    )
    names = tuple(o.name for o in model.graph.output)
    if names != OUTPUT_NAMES:
        raise RuntimeError(f"unexpected ONNX outputs {names}")
    _set_batch_shapes(model, n, 2)
    onnx.checker.check_model(model)
    data: bytes = model.SerializeToString()
    return data


def explain(
    booster: lightgbm.Booster,
    X_row: npt.ArrayLike,
    feature_variable: FeatureVariable,
    top: int = 5,
) -> list[tuple[str, float]]:
    """The ``top`` input variables that moved this event's log-odds most, with their SHAP sum.

    Positive values drove the risk up, negative down (AFD's ``logOddsImpact``). Features
    derived from several variables are reported under "a + b".
    """
    row = np.asarray(X_row, dtype=np.float64).reshape(1, -1)
    # One thread: OpenMP workers spin-wait for a descheduled peer on busy hosts, which turned a
    # 1.6 ms explanation into 8 ms under load; one row gains nothing from more threads.
    contrib = np.asarray(booster.predict(row, pred_contrib=True, num_threads=1))[0, :-1]
    totals: dict[str, float] = {}
    for name, value in zip(booster.feature_name(), contrib, strict=True):
        key = " + ".join(variables_of(name, feature_variable))
        totals[key] = totals.get(key, 0.0) + float(value)
    ranked = sorted(totals.items(), key=lambda kv: (-abs(kv[1]), kv[0]))
    return ranked[:top]


def onnx_input_output(model_bytes: bytes) -> dict[str, Any]:
    """Names and shapes of the exported graph (for registering the model)."""
    model = onnx.load_from_string(model_bytes)

    def shape(value: onnx.ValueInfoProto) -> list[int | str]:
        return [
            d.dim_param if d.dim_param else d.dim_value for d in value.type.tensor_type.shape.dim
        ]

    return {
        "inputs": {i.name: shape(i) for i in model.graph.input},
        "outputs": {o.name: shape(o) for o in model.graph.output},
    }
