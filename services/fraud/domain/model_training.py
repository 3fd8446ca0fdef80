"""One training run, end to end: validate, label, build features, train, measure, diagnose, export."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl

from services.fraud.domain.features import FeaturePipeline, VariableSpec
from services.fraud.domain.training import TrainingConfig, logodds_importance, train


class TrainingRejected(ValueError):
    """The data failed validation; `findings` say why, in plain language."""

    def __init__(self, findings: list[dict[str, Any]]) -> None:
        errors = [f["message"] for f in findings if f["level"] == "ERROR"]
        super().__init__("training data rejected: " + " ".join(errors))
        self.findings = findings


@dataclass
class TrainingOutcome:
    artifacts: dict[str, bytes]
    training_result: dict[str, Any]
    training_result_v2: dict[str, Any]
    findings: list[dict[str, Any]]
    diagnostics: list[dict[str, Any]]
    timings: dict[str, float] = field(default_factory=dict)


def _finding(f: Any) -> dict[str, Any]:
    return {"level": f.level, "code": f.code, "message": f.message, "details": f.details}


def run_training(
    events: pl.DataFrame,
    variables: Sequence[VariableSpec],
    *,
    model_type: Literal["ONLINE_FRAUD_INSIGHTS", "TRANSACTION_FRAUD_INSIGHTS"],
    label_mapper: Mapping[str, Sequence[str]],
    unlabeled: str,
    threads: int = 0,
    config: TrainingConfig | None = None,
) -> TrainingOutcome:
    """Everything between stored events and a trained, measured, exportable model version."""
    from services.fraud.adapters import charts
    from services.fraud.adapters.onnx_export import booster_to_onnx
    from services.fraud.domain.diagnostics import diagnose, weekly_rates
    from services.fraud.domain.metrics import model_metrics
    from services.fraud.domain.validation import label_events, validate_training_data

    fraud, legit = list(label_mapper.get("FRAUD", [])), list(label_mapper.get("LEGIT", []))
    treatment = "IGNORE" if unlabeled == "AUTO" else unlabeled
    findings = validate_training_data(
        events,
        variables,
        model_type=model_type,
        fraud_labels=fraud,
        legit_labels=legit,
        unlabeled=treatment,  # type: ignore[arg-type]
    )
    reported = [_finding(f) for f in findings]
    if any(f.level == "ERROR" for f in findings):
        raise TrainingRejected(reported)
    # Features come from every event (a TFI entity's history includes its unlabelled events);
    # only the labelled rows train.
    ordered = events.sort("EVENT_TIMESTAMP").with_row_index("_row")
    pipeline = FeaturePipeline.fit(ordered, variables, model_type=model_type)
    X_all = pipeline.transform(ordered).to_numpy().astype(np.float32)
    labelled = label_events(ordered, fraud_labels=fraud, legit_labels=legit, unlabeled=treatment)  # type: ignore[arg-type]
    X = X_all[labelled["_row"].to_numpy()]
    y = labelled["_label"].to_numpy().astype(np.int8)
    timestamps = labelled["EVENT_TIMESTAMP"].to_numpy()
    cfg = config or TrainingConfig(num_threads=threads)
    trained = train(
        X,
        y,
        timestamps,
        feature_names=pipeline.feature_names,
        categorical_features=pipeline.categorical_features,
        config=cfg,
    )
    variable_types = {v.name: v.variable_type for v in variables}
    holdout = trained.holdout.index
    train_index = trained.train_index
    metrics = model_metrics(
        trained.holdout.y,
        trained.holdout.score,
        feature_importance=logodds_importance(trained.booster, X[holdout]),
        feature_variable=pipeline.feature_variable,
    )
    order = np.concatenate([train_index, holdout])
    diagnoses = diagnose(
        metrics=metrics,
        X_train=X[train_index],
        X_holdout=X[holdout],
        y_train=y[train_index],
        y_holdout=y[holdout],
        timestamps=timestamps[order],
        feature_names=pipeline.feature_names,
        feature_variable=pipeline.feature_variable,
        categorical_features=pipeline.categorical_features,
        raw_events=labelled[order],
        label_column=events["EVENT_LABEL"].to_numpy() if "EVENT_LABEL" in events.columns else None,
        label_timestamps=events["EVENT_TIMESTAMP"].to_numpy()
        if "EVENT_LABEL" in events.columns
        else None,
    )
    data_metrics = {
        "fieldLevelMessages": [],
        "fileLevelMessages": [
            {"title": f["code"], "content": f["message"], "type": f["level"]} for f in reported
        ],
    }
    results = metrics.to_afd_training_result(
        variable_types=variable_types, model_type=model_type, data_validation=data_metrics
    )
    training_result, training_result_v2 = results["trainingResult"], results["trainingResultV2"]
    artifacts = {
        "booster.txt": trained.booster.model_to_string().encode(),
        "model.onnx": booster_to_onnx(trained.booster, len(pipeline.feature_names)),
        "pipeline.json": json.dumps(pipeline.to_dict()).encode(),
        "calibration.json": json.dumps(trained.calibration.to_dict()).encode(),
        "metrics.json": json.dumps(metrics.to_dict(), default=float).encode(),
    }
    rates = weekly_rates(
        y,
        timestamps,
        label_column=events["EVENT_LABEL"].to_numpy() if "EVENT_LABEL" in events.columns else None,
        label_timestamps=events["EVENT_TIMESTAMP"].to_numpy()
        if "EVENT_LABEL" in events.columns
        else None,
    )
    extension: Literal["svg", "png"]
    for extension in ("svg", "png"):
        artifacts[f"roc.{extension}"] = charts.roc_svg(metrics, format=extension)
        artifacts[f"score_distribution.{extension}"] = charts.score_distribution_svg(
            metrics, format=extension
        )
        artifacts[f"importance.{extension}"] = charts.importance_svg(metrics, format=extension)
        artifacts[f"fraud_rate.{extension}"] = charts.fraud_rate_svg(rates, format=extension)
    return TrainingOutcome(
        artifacts=artifacts,
        training_result=training_result,
        training_result_v2=training_result_v2,
        findings=reported,
        diagnostics=[d.to_dict() for d in diagnoses],
        timings=dict(trained.timings),
    )
