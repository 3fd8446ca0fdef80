"""The benchmarks simulator jobs run on: analytic multi-fidelity problems with simulated cost.

Each implements `simulator.Benchmark` with numpy alone, so that the tuner serves them without
the benchmark packages `bench/tune.py` installs (its LCDB and mf2 benchmarks stay there).
Resources are the integers 1..max_resource, reported as `epoch`; a step's simulated seconds
come from `elapsed`.

- `learning-curves`: a neural network's validation accuracy over 81 epochs, from four
  hyperparameters (learning rate, batch size, dropout, depth). Curves cross: a high learning
  rate learns fast and plateaus low, so early-stopping schedulers have something to decide.
- `branin`, `hartmann3`, `hartmann6`: the classic test functions with the fidelity
  parameterisation of Kandasamy et al. (2017, BOCA): low epochs shift the function's
  constants, the top epoch is the function itself.
- `branin-currin`: two objectives on the unit square (Branin and Currin, both minimised, as in
  BoTorch's BraninCurrin) for multi-objective schedulers; Currin's low fidelity is Xiong et al.'s
  (2013) average of four shifted copies.

Function benchmarks cost `high_cost` simulated seconds for the whole budget: the first epoch
(the cheapest fidelity) a tenth of it, each further epoch an equal share of the rest.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from services.tuner.domain.simulator import Benchmark

__all__ = ["BENCHMARKS", "FunctionBenchmark", "LearningCurves", "benchmark", "benchmark_names"]

FloatArray = npt.NDArray[np.float64]
RESOURCE_ATTR: Final = "epoch"


def _fidelity(resource: int, max_resource: int) -> float:
    """0 at the first epoch, 1 at the last, even steps across the geometric rung levels."""
    if not 1 <= resource <= max_resource:
        raise ValueError(f"resource must be in 1..{max_resource}, got {resource}")
    if max_resource == 1:
        return 1.0
    return math.log(resource) / math.log(max_resource)


# -- analytic functions ------------------------------------------------------------------------


def branin(x0: float, x1: float, z: float = 1.0) -> float:
    """Branin on [-5, 10] x [0, 15] (minimum 0.397887); z < 1 shifts b, c and t (BOCA)."""
    b = 5.1 / (4 * math.pi**2) - 0.01 * (1 - z)
    c = 5 / math.pi - 0.1 * (1 - z)
    t = 1 / (8 * math.pi) + 0.05 * (1 - z)
    return (x1 - b * x0**2 + c * x0 - 6) ** 2 + 10 * (1 - t) * math.cos(x0) + 10


_ALPHA: Final = np.array([1.0, 1.2, 3.0, 3.2])
_A3: Final = np.array([[3.0, 10, 30], [0.1, 10, 35], [3.0, 10, 30], [0.1, 10, 35]])
_P3: Final = 1e-4 * np.array(
    [[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547], [381, 5743, 8828]]
)
_A6: Final = np.array(
    [
        [10, 3, 17, 3.5, 1.7, 8],
        [0.05, 10, 17, 0.1, 8, 14],
        [3, 3.5, 1.7, 10, 17, 8],
        [17, 8, 0.05, 10, 0.1, 14],
    ]
)
_P6: Final = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)


def hartmann(x: FloatArray, z: float = 1.0) -> float:
    """Hartmann 3 or 6 on the unit cube (minima -3.86278 and -3.32237); z < 1 lowers alpha."""
    a, p = (_A3, _P3) if x.shape[0] == 3 else (_A6, _P6)
    alpha = _ALPHA - 0.1 * (1 - z)
    return -float(np.sum(alpha * np.exp(-np.sum(a * (x - p) ** 2, axis=1))))


def currin(x0: float, x1: float) -> float:
    """Currin's exponential function on the unit square."""
    factor = 1.0 if x1 <= 0 else 1 - math.exp(-1 / (2 * x1))
    return (
        factor
        * (2300 * x0**3 + 1900 * x0**2 + 2092 * x0 + 60)
        / (100 * x0**3 + 500 * x0**2 + 4 * x0 + 20)
    )


def currin_low(x0: float, x1: float) -> float:
    """Currin's low-fidelity approximation (Xiong et al. 2013)."""
    down = max(0.0, x1 - 0.05)
    return 0.25 * (
        currin(x0 + 0.05, x1 + 0.05)
        + currin(x0 + 0.05, down)
        + currin(x0 - 0.05, x1 + 0.05)
        + currin(x0 - 0.05, down)
    )


# -- benchmarks --------------------------------------------------------------------------------


class FunctionBenchmark:
    """Analytic objectives of x0..x{d-1} at fidelity z(epoch), with BOCA-style step costs."""

    resource_attr = RESOURCE_ATTR

    def __init__(
        self,
        name: str,
        bounds: list[tuple[float, float]],
        objectives: Mapping[str, Callable[[FloatArray, float], float]],
        *,
        max_resource: int = 27,
        high_cost: float = 100.0,
        cost_ratio: float = 10.0,
    ) -> None:
        self.name = name
        self.config_space: dict[str, Any] = {
            f"x{i}": {"type": "uniform", "lower": lower, "upper": upper}
            for i, (lower, upper) in enumerate(bounds)
        }
        self.metrics = list(objectives)
        self.modes = ["min"] * len(objectives)
        self.max_resource = max_resource
        self._objectives = dict(objectives)
        self._dim = len(bounds)
        self.high_cost = high_cost
        self.low_cost = high_cost / cost_ratio

    def evaluate(self, config: Mapping[str, Any], resource: int) -> dict[str, float]:
        z = _fidelity(resource, self.max_resource)
        x = np.array([float(config[f"x{i}"]) for i in range(self._dim)])
        return {metric: float(f(x, z)) for metric, f in self._objectives.items()}

    def elapsed(self, config: Mapping[str, Any], resource: int) -> float:
        _fidelity(resource, self.max_resource)
        if resource == 1 or self.max_resource == 1:
            return self.low_cost
        return (self.high_cost - self.low_cost) / (self.max_resource - 1)


def _branin_currin_branin(x: FloatArray, z: float) -> float:
    return branin(15 * float(x[0]) - 5, 15 * float(x[1]), z)


def _branin_currin_currin(x: FloatArray, z: float) -> float:
    high = currin(float(x[0]), float(x[1]))
    return high + (1 - z) * (currin_low(float(x[0]), float(x[1])) - high)


class LearningCurves:
    """Validation accuracy (max) and loss (min) of a network trained for up to 81 epochs.

    Quality peaks at a learning rate that grows with the square root of the batch size, at 25%
    dropout and 5 layers; the learning rate also sets how fast the curve rises, and little
    dropout on a deep network overfits late. An epoch takes 3 s plus 12 s x layers / 4 x
    sqrt(64 / batch size). A deterministic jitter (+-0.7%) per configuration and epoch makes
    the curves noisy like real ones, and the same on every run.
    """

    name = "learning-curves"
    resource_attr = RESOURCE_ATTR
    max_resource = 81
    metrics = ["accuracy", "loss"]
    modes = ["max", "min"]
    config_space: dict[str, Any] = {
        "lr": {"type": "loguniform", "lower": 1e-5, "upper": 1.0},
        "batch_size": {"type": "ordinal", "categories": [16, 32, 64, 128, 256, 512]},
        "dropout": {"type": "uniform", "lower": 0.0, "upper": 0.8},
        "layers": {"type": "randint", "lower": 1, "upper": 8},
    }

    @staticmethod
    def _params(config: Mapping[str, Any]) -> tuple[float, float, float, float]:
        return (
            float(config["lr"]),
            float(config["batch_size"]),
            float(config["dropout"]),
            float(config["layers"]),
        )

    def evaluate(self, config: Mapping[str, Any], resource: int) -> dict[str, float]:
        _fidelity(resource, self.max_resource)
        lr, batch, dropout, layers = self._params(config)
        best_lr = 1e-3 * math.sqrt(batch / 64)
        quality = (
            math.exp(-((math.log10(lr) - math.log10(best_lr)) ** 2) / (2 * 0.7**2))
            * (1 - 0.6 * (dropout - 0.25) ** 2)
            * (1 - 0.02 * (layers - 5) ** 2)
        )
        plateau = 0.1 + 0.85 * quality
        speed = 0.03 + 0.2 * min(1.0, max(0.0, (math.log10(lr) + 5) / 5))
        overfit = 0.08 * max(0.0, 0.2 - dropout) / 0.2 * layers / 8
        progress = resource / self.max_resource
        accuracy = 0.1 + (plateau - 0.1) * (1 - math.exp(-speed * resource))
        accuracy -= overfit * progress**2
        key = f"{lr!r}|{batch!r}|{dropout!r}|{layers!r}|{resource}".encode()
        accuracy += 0.007 * (2 * zlib.crc32(key) / 0xFFFFFFFF - 1)
        accuracy = min(max(accuracy, 0.01), 0.999)
        return {"accuracy": accuracy, "loss": -math.log(accuracy)}

    def elapsed(self, config: Mapping[str, Any], resource: int) -> float:
        _fidelity(resource, self.max_resource)
        _, batch, _, layers = self._params(config)
        return 3.0 + 12.0 * layers / 4 * math.sqrt(64 / batch)


BENCHMARKS: Final[dict[str, Callable[[], Benchmark]]] = {
    "learning-curves": LearningCurves,
    "branin": lambda: FunctionBenchmark(
        "branin",
        [(-5.0, 10.0), (0.0, 15.0)],
        {"y": lambda x, z: branin(float(x[0]), float(x[1]), z)},
    ),
    "hartmann3": lambda: FunctionBenchmark("hartmann3", [(0.0, 1.0)] * 3, {"y": hartmann}),
    "hartmann6": lambda: FunctionBenchmark("hartmann6", [(0.0, 1.0)] * 6, {"y": hartmann}),
    "branin-currin": lambda: FunctionBenchmark(
        "branin-currin",
        [(0.0, 1.0)] * 2,
        {"branin": _branin_currin_branin, "currin": _branin_currin_currin},
    ),
}


def benchmark_names() -> list[str]:
    return sorted(BENCHMARKS)


def benchmark(name: str) -> Benchmark:
    """The named benchmark; KeyError names the known ones."""
    try:
        make = BENCHMARKS[name]
    except KeyError:
        raise KeyError(
            f"unknown benchmark {name!r}; known: {', '.join(benchmark_names())}"
        ) from None
    return make()
