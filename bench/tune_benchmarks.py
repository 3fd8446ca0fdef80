"""Simulated tuning benchmarks: LCDB learning curves and mf2 multi-fidelity functions, offline.

LCDB (PyPI `lcdb` 0.1.0) ships its database as CSV files inside the package: mean validation
error of 20 scikit-learn learners (default hyperparameters) on 248 OpenML datasets at training
set sizes ("anchors") 16, 23, 32, ... (x sqrt(2)), over 5 x 5 train/validation splits, with
the measured training time. The package's Python module imports `openml` and more at import
time, so the CSV is read directly and `lcdb` is never imported.

mf2 (PyPI `mf2` 2022.6.0) provides bi-fidelity analytic functions (a high- and a low-fidelity
version). Resources 1..R interpolate between them (see `FunctionBenchmark`). mf2's __init__
still imports `pkg_resources` (gone from setuptools >= 81) for its version string only, so
`import_mf2` supplies a stand-in module while importing it.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import math
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import polars as pl

from services.tuner.domain.pareto import hypervolume, pareto_front

__all__ = [
    "FunctionBenchmark",
    "LCDBBenchmark",
    "LearningCurves",
    "Objective",
    "branin_currin",
    "import_mf2",
    "lcdb_data_dir",
    "load_learning_curves",
    "mf2_branin",
    "mf2_hartmann3",
    "mf2_hartmann6",
]

FloatArray = npt.NDArray[np.float64]
Function = Callable[[FloatArray], FloatArray]

LCDB_METRIC_FILE: Final = "database-accuracy.csv"
MIN_STEP_SECONDS: Final = 1e-3  # LCDB rounds very fast fits down to 0 s


# -- LCDB ----------------------------------------------------------------------------------------


def lcdb_data_dir() -> Path:
    """The installed `lcdb` package folder holding its CSV database (not importing lcdb)."""
    spec = importlib.util.find_spec("lcdb")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        folder = Path(location)
        if (folder / LCDB_METRIC_FILE).is_file():
            return folder
    raise FileNotFoundError(
        f"the lcdb package with {LCDB_METRIC_FILE} is not installed (pip install lcdb)"
    )


def _short_learner_name(name: str) -> str:
    return name.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class LearningCurves:
    """Mean curves of one dataset: rows are learners, columns anchors (training-set sizes)."""

    openmlid: int
    dataset: str
    anchors: list[int]
    learners: list[str]
    error: FloatArray  # mean validation error (1 - accuracy)
    test_error: FloatArray  # mean test error
    train_time: FloatArray  # mean measured training time, seconds
    dropped_learners: list[str]  # learners without a value at every anchor


@functools.lru_cache(maxsize=8)
def load_learning_curves(openmlid: int) -> LearningCurves:
    """Mean validation/test error and training time per learner and anchor over all splits.

    Learners missing any anchor (failed or timed out in LCDB) are dropped.
    """
    folder = lcdb_data_dir()
    table = (
        pl.scan_csv(folder / LCDB_METRIC_FILE)
        .filter(pl.col("openmlid") == openmlid)
        .drop_nulls(["score_valid", "traintime"])
        .group_by("learner", "size_train")
        .agg(
            (1 - pl.col("score_valid")).mean().alias("error"),
            (1 - pl.col("score_test")).mean().alias("test_error"),
            pl.col("traintime").mean().alias("train_time"),
        )
        .collect()
    )
    if table.height == 0:
        raise LookupError(f"LCDB has no curves for OpenML dataset {openmlid}")
    anchors = sorted(int(a) for a in table["size_train"].unique().to_list())
    learners: list[str] = []
    dropped: list[str] = []
    rows: dict[str, dict[int, tuple[float, float, float]]] = {}
    for learner, size, error, test_error, seconds in table.select(
        "learner", "size_train", "error", "test_error", "train_time"
    ).iter_rows():
        rows.setdefault(str(learner), {})[int(size)] = (
            float(error),
            float(test_error) if test_error is not None else math.nan,
            float(seconds),
        )
    for learner in sorted(rows):
        if len(rows[learner]) == len(anchors):
            learners.append(learner)
        else:
            dropped.append(_short_learner_name(learner))
    values = np.array([[rows[learner][a] for a in anchors] for learner in learners])
    names = pl.read_csv(folder / "datasets.csv", columns=["openmlid", "Name"]).filter(
        pl.col("openmlid") == openmlid
    )
    dataset = str(names["Name"][0]) if names.height else str(openmlid)
    return LearningCurves(
        openmlid=openmlid,
        dataset=dataset,
        anchors=anchors,
        learners=[_short_learner_name(learner) for learner in learners],
        error=values[:, :, 0],
        test_error=values[:, :, 1],
        train_time=values[:, :, 2],
        dropped_learners=dropped,
    )


class LCDBBenchmark:
    """Model selection on learning curves: which learner, judged on growing training sets.

    Config: {"learner": one of the dataset's learners}. Resource r (1..number of anchors) is
    the r-th anchor; the metric is the mean validation error there ("test_error" and
    "train_size" are reported too). A step costs the measured mean training time at that
    anchor: scikit-learn learners refit from scratch on each larger sample, so time grows
    roughly with the anchor size.
    """

    metrics: list[str]
    modes: list[str]

    def __init__(self, curves: LearningCurves) -> None:
        self.curves = curves
        self.name = f"lcdb-{curves.dataset}"
        self.config_space: dict[str, Any] = {
            "learner": {"type": "choice", "categories": list(curves.learners)}
        }
        self.metrics = ["error"]
        self.modes = ["min"]
        self.resource_attr = "anchor"
        self.max_resource = len(curves.anchors)
        self._rows = {learner: row for row, learner in enumerate(curves.learners)}

    @classmethod
    def from_openml(cls, openmlid: int) -> LCDBBenchmark:
        return cls(load_learning_curves(openmlid))

    def _cell(self, config: Mapping[str, Any], resource: int) -> tuple[int, int]:
        if not 1 <= resource <= self.max_resource:
            raise ValueError(f"resource must be in 1..{self.max_resource}, got {resource}")
        return self._rows[str(config["learner"])], resource - 1

    def evaluate(self, config: Mapping[str, Any], resource: int) -> dict[str, float]:
        row, column = self._cell(config, resource)
        return {
            "error": float(self.curves.error[row, column]),
            "test_error": float(self.curves.test_error[row, column]),
            "train_size": float(self.curves.anchors[column]),
        }

    def elapsed(self, config: Mapping[str, Any], resource: int) -> float:
        row, column = self._cell(config, resource)
        return max(float(self.curves.train_time[row, column]), MIN_STEP_SECONDS)

    @property
    def optimum(self) -> float:
        """Lowest mean validation error of any learner at any anchor."""
        return float(self.curves.error.min())

    def fastest_time_to(self, regret: float) -> float:
        """The least simulated time any method needs to see a report within `regret` of the
        optimum: one trial of the right learner, stepped from the first anchor to the first
        one good enough (inf if none is)."""
        steps = np.maximum(self.curves.train_time, MIN_STEP_SECONDS).cumsum(axis=1)
        good = self.curves.error - self.optimum <= regret
        return float(np.where(good, steps, np.inf).min())

    def full_evaluation_seconds(self) -> float:
        """Mean over learners of the time to train the whole curve."""
        return float(np.maximum(self.curves.train_time, MIN_STEP_SECONDS).sum(axis=1).mean())


# -- mf2 -----------------------------------------------------------------------------------------


def import_mf2() -> Any:
    """The `mf2` module, importing it with a stand-in `pkg_resources` if that is missing."""
    try:
        return importlib.import_module("mf2")
    except ModuleNotFoundError as error:
        if error.name != "pkg_resources":
            raise
    shim = types.ModuleType("pkg_resources")

    def get_distribution(name: str) -> types.SimpleNamespace:
        return types.SimpleNamespace(version=importlib.metadata.version(name))

    shim.get_distribution = get_distribution  # type: ignore[attr-defined]
    sys.modules["pkg_resources"] = shim
    try:
        return importlib.import_module("mf2")
    finally:
        if sys.modules.get("pkg_resources") is shim:
            del sys.modules["pkg_resources"]


@dataclass(frozen=True)
class Objective:
    """One bi-fidelity function on a box, seen by the tuner through the unit cube."""

    metric: str
    high: Function
    low: Function
    lower: FloatArray
    upper: FloatArray

    def at(self, unit: FloatArray, low_weight: float) -> float:
        x = self.lower + unit * (self.upper - self.lower)
        high = float(self.high(x[None, :])[0])
        if low_weight == 0.0:
            return high
        low = float(self.low(x[None, :])[0])
        return high + low_weight * (low - high)

    def high_on(self, units: FloatArray) -> FloatArray:
        values: FloatArray = np.asarray(
            self.high(self.lower + units * (self.upper - self.lower)), dtype=np.float64
        )
        return values


class FunctionBenchmark:
    """Bi-fidelity functions (mf2) as a multi-fidelity benchmark with simulated cost.

    Config: x0..x{d-1}, each uniform on [0, 1] and mapped onto the function's box. At resource
    r of R the value is f_high + w (f_low - f_high) with w = 1 - log(r) / log(R): pure low
    fidelity at r = 1, pure high at r = R, the mix moving evenly across the geometric rung
    levels successive halving uses. Evaluating fidelity r costs c(r) = c_low + (c_high -
    c_low) (r - 1) / (R - 1) with c_low = c_high / cost_ratio, and a trial trained to r - 1 is
    warm-started: step 1 takes c_low, later steps (c_high - c_low) / (R - 1) each.

    Low-fidelity values are a different, biased function (they can undercut the true
    optimum), so judge these benchmarks on reports at max_resource only.
    """

    def __init__(
        self,
        name: str,
        objectives: Sequence[Objective],
        *,
        max_resource: int = 27,
        high_cost: float = 100.0,
        cost_ratio: float = 10.0,
    ) -> None:
        if not objectives:
            raise ValueError("at least one objective is needed")
        dims = {objective.lower.shape[0] for objective in objectives}
        if len(dims) != 1:
            raise ValueError("all objectives must take the same number of inputs")
        if max_resource < 1 or high_cost <= 0 or cost_ratio < 1:
            raise ValueError("need max_resource >= 1, high_cost > 0 and cost_ratio >= 1")
        self.name = name
        self.objectives = list(objectives)
        self.dim = dims.pop()
        self.config_space: dict[str, Any] = {
            f"x{i}": {"type": "uniform", "lower": 0.0, "upper": 1.0} for i in range(self.dim)
        }
        self.metrics = [objective.metric for objective in self.objectives]
        self.modes = ["min"] * len(self.objectives)
        self.resource_attr = "fidelity"
        self.max_resource = max_resource
        self.high_cost = float(high_cost)
        self.low_cost = float(high_cost) / float(cost_ratio)

    def low_weight(self, resource: int) -> float:
        if not 1 <= resource <= self.max_resource:
            raise ValueError(f"resource must be in 1..{self.max_resource}, got {resource}")
        if self.max_resource == 1:
            return 0.0
        return 1.0 - math.log(resource) / math.log(self.max_resource)

    def _unit(self, config: Mapping[str, Any]) -> FloatArray:
        return np.array([float(config[f"x{i}"]) for i in range(self.dim)], dtype=np.float64)

    def evaluate(self, config: Mapping[str, Any], resource: int) -> dict[str, float]:
        weight = self.low_weight(resource)
        unit = self._unit(config)
        return {objective.metric: objective.at(unit, weight) for objective in self.objectives}

    def elapsed(self, config: Mapping[str, Any], resource: int) -> float:
        self.low_weight(resource)  # validates the resource
        if resource == 1 or self.max_resource == 1:
            return self.low_cost
        return (self.high_cost - self.low_cost) / (self.max_resource - 1)

    def full_evaluation_seconds(self) -> float:
        return self.high_cost

    @functools.cached_property
    def optimum(self) -> float:
        """Minimum of the (first) high-fidelity objective: best of 20,000 random points,
        polished from the best 20 with L-BFGS-B."""
        objective = self.objectives[0]
        optimize = importlib.import_module("scipy.optimize")
        rng = np.random.default_rng(0)
        starts = rng.random((20_000, self.dim))
        values = objective.high_on(starts)
        best = float(values.min())
        for start in starts[np.argsort(values)[:20]]:
            found = optimize.minimize(
                lambda u: float(objective.high_on(np.asarray(u)[None, :])[0]),
                start,
                method="L-BFGS-B",
                bounds=[(0.0, 1.0)] * self.dim,
            )
            best = min(best, float(found.fun))
        return best

    @functools.cached_property
    def _grid_front(self) -> FloatArray:
        if self.dim > 3:
            raise ValueError("the grid Pareto front is only computed for up to 3 inputs")
        axis = np.linspace(0.0, 1.0, 201 if self.dim <= 2 else 41)
        mesh = np.stack(np.meshgrid(*([axis] * self.dim), indexing="ij"), -1)
        units = mesh.reshape(-1, self.dim)
        points = np.column_stack([objective.high_on(units) for objective in self.objectives])
        front: FloatArray = points[pareto_front(points)]
        return front

    @functools.cached_property
    def reference_point(self) -> list[float]:
        """Nadir of the high-fidelity Pareto front (from a dense grid), pushed out by the
        front's range on each objective, so that random configurations often count."""
        front = self._grid_front
        nadir, ideal = front.max(axis=0), front.min(axis=0)
        return [float(v) for v in nadir + (nadir - ideal)]

    @functools.cached_property
    def max_hypervolume(self) -> float:
        """Hypervolume of the dense-grid Pareto front (a close lower bound of the true one)."""
        return hypervolume(self._grid_front, self.reference_point)


def _objective(metric: str, function: Any) -> Objective:
    return Objective(
        metric=metric,
        high=function.high,
        low=function.low,
        lower=np.asarray(function.l_bound, dtype=np.float64),
        upper=np.asarray(function.u_bound, dtype=np.float64),
    )


def mf2_branin(**kwargs: Any) -> FunctionBenchmark:
    """mf2's bi-fidelity Branin (Dong et al. 2015; low/high rank correlation about 0.4)."""
    return FunctionBenchmark("mf2-branin", [_objective("y", import_mf2().branin)], **kwargs)


def mf2_hartmann3(a: float = 0.5, **kwargs: Any) -> FunctionBenchmark:
    """mf2's adjustable Hartmann3 (Toal 2015) with correlation parameter a (1/3: identical)."""
    function = import_mf2().adjustable.hartmann3(a)
    return FunctionBenchmark("mf2-hartmann3", [_objective("y", function)], **kwargs)


def mf2_hartmann6(**kwargs: Any) -> FunctionBenchmark:
    """mf2's bi-fidelity Hartmann6 on [0.1, 1]^6."""
    return FunctionBenchmark("mf2-hartmann6", [_objective("y", import_mf2().hartmann6)], **kwargs)


def branin_currin(a: float = 0.2, **kwargs: Any) -> FunctionBenchmark:
    """Branin-Currin, both minimised on one unit square (as in BoTorch's BraninCurrin): the
    standard Branin from mf2's adjustable Branin (low fidelity with parameter a) and mf2's
    bi-fidelity Currin."""
    mf2 = import_mf2()
    return FunctionBenchmark(
        "mf2-branin-currin",
        [_objective("branin", mf2.adjustable.branin(a)), _objective("currin", mf2.currin)],
        **kwargs,
    )
