"""Gaussian-process Bayesian optimisation searcher: Matern 5/2 ARD kernel, expected improvement."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Self

import numpy as np
import numpy.typing as npt

# scipy serves L-BFGS-B and special functions only; linear algebra stays in numpy, because scipy
# links its own OpenBLAS and alternating between two BLAS thread pools makes small solves many
# times slower on a busy machine.
from scipy.optimize import minimize  # type: ignore[import-untyped]
from scipy.special import erfcx, ndtr  # type: ignore[import-untyped]

from services.tuner.domain.schedulers import (
    WORST,
    FloatArray,
    Mode,
    SchedulerError,
    Searcher,
    _check_mode,
    _check_seed,
    _loss,
    _new_rng,
    _rng_from_state,
    _rng_state,
)
from services.tuner.domain.space import (
    Choice,
    Condition,
    Domain,
    FiniteRange,
    LogRandInt,
    Ordinal,
    RandInt,
    SearchSpace,
)

__all__ = ["GPSearcher"]

IndexArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

_SQRT5: Final = math.sqrt(5.0)
_LOG_2PI: Final = math.log(2.0 * math.pi)
_SQRT_HALF_PI: Final = math.sqrt(math.pi / 2.0)
# Finite numeric domains up to this many values are snapped to their values' codes.
_SNAP_LIMIT: Final = 10_000
# Up to this many observations at the model level, hyperparameters are refitted on each new one.
_CHEAP_FIT: Final = 32
_JITTER: Final = 1e-8
_LOCAL_BASES: Final = 8  # best observations that local candidates perturb
_BLOCK: Final = 256  # candidate rows per kernel block
_FIT_ITERATIONS: Final = 100
# Bounds (log scale but the mean) in the unit-cube features and standardised targets.
_LOG_LENGTHSCALE: Final = (math.log(0.01), math.log(20.0))
_LOG_SIGNAL: Final = (math.log(0.05), math.log(20.0))
_LOG_NOISE: Final = (math.log(1e-6), 0.0)
_MEAN: Final = (-3.0, 3.0)
# A weak log-normal prior keeps lengthscales of barely informed dimensions moderate.
_LENGTHSCALE_PRIOR_MEAN: Final = math.log(0.5)
_LENGTHSCALE_PRIOR_SD: Final = 1.5


@dataclass
class _Parameter:
    name: str
    domain: Domain
    categorical: bool
    size: int  # categories of a categorical domain
    codes: FloatArray | None  # ascending unit codes of a finite numeric domain's values
    values: list[Any]  # a finite domain's values, aligned with categories or codes
    column: int  # first feature column
    parent: int | None  # index of the parameter the condition reads
    condition: Condition | None
    fixed_active: bool | None  # set when the condition reads a constant
    allowed: BoolArray | None  # condition per value of a finite parent


@dataclass
class _Fit:
    level: float
    count: int  # observations at the level when fitted
    theta: FloatArray  # log lengthscales, log signal variance, log noise variance, mean


@dataclass
class _Model:
    right: FloatArray  # `_right_rows` of the scaled inputs: observations, then pending configs
    count: int  # observations among the inputs
    weights: FloatArray  # signal * K_obs^-1 (y - mean): the posterior mean's weights
    whitener: FloatArray  # signal * L^-T for the Cholesky factor L of the kernel over all inputs
    signal: float
    mean: float
    best: float  # lowest standardised observed target


class _LevelResults:
    """Losses at one resource level in arrival order, with each trial's code-matrix row; a
    repeated report replaces the trial's loss in place."""

    __slots__ = ("count", "losses", "positions", "rows")

    def __init__(self) -> None:
        self.positions: dict[int, int] = {}
        self.rows = np.empty(16, dtype=np.intp)
        self.losses = np.empty(16)
        self.count = 0

    def set(self, trial_id: int, row: int, loss: float) -> None:
        index = self.positions.get(trial_id)
        if index is None:
            if self.count == self.losses.size:
                self.rows = np.concatenate([self.rows, np.empty_like(self.rows)])
                self.losses = np.concatenate([self.losses, np.empty_like(self.losses)])
            index = self.count
            self.positions[trial_id] = index
            self.rows[index] = row
            self.count += 1
        self.losses[index] = loss

    def __len__(self) -> int:
        return self.count

    def __contains__(self, trial_id: object) -> bool:
        return trial_id in self.positions

    def pairs(self) -> list[list[float]]:
        return [[trial, float(self.losses[index])] for trial, index in self.positions.items()]


def _finite_values(domain: Domain) -> list[Any] | None:
    size = domain.cardinality
    if size is None or size > _SNAP_LIMIT:
        return None
    if isinstance(domain, RandInt | LogRandInt):
        return list(range(domain.lower, domain.upper + 1))
    if isinstance(domain, Choice | Ordinal | FiniteRange):
        return list(domain.values)
    return None


def _nearest(codes: FloatArray, values: FloatArray) -> IndexArray:
    """Index of the nearest of the ascending `codes` for each value."""
    if codes.size == 1:
        return np.zeros(values.shape, dtype=np.intp)
    right = np.clip(np.searchsorted(codes, values), 1, codes.size - 1)
    left = right - 1
    result: IndexArray = np.where(values - codes[left] <= codes[right] - values, left, right)
    return result


def _left_rows(a: FloatArray) -> FloatArray:
    """Rows [a, |a|^2, 1]: their products with `_right_rows(b)` are squared distances."""
    return np.hstack([a, np.einsum("ij,ij->i", a, a)[:, None], np.ones((a.shape[0], 1))])


def _right_rows(b: FloatArray) -> FloatArray:
    return np.hstack([-2.0 * b, np.ones((b.shape[0], 1)), np.einsum("ij,ij->i", b, b)[:, None]])


def _squared_distances(left: FloatArray, right: FloatArray) -> FloatArray:
    out: FloatArray = left @ right.T
    np.maximum(out, 0.0, out=out)
    return out


def _matern(squared: FloatArray) -> FloatArray:
    """Matern 5/2 correlation of squared distances already scaled by 5 / lengthscale^2
    (overwrites its argument)."""
    r = np.sqrt(squared, out=squared)
    decay = np.negative(r)
    np.exp(decay, out=decay)
    result = np.multiply(r, r)
    result *= 1.0 / 3.0
    result += r
    result += 1.0
    result *= decay
    return result


def _log_h(z: FloatArray) -> FloatArray:
    """log(z Phi(z) + phi(z)), stable for very negative z (EI = sigma h(z))."""
    out = np.empty_like(z)
    log_phi = -0.5 * z * z - 0.5 * _LOG_2PI
    upper = z >= -1.0
    middle = (z < -1.0) & (z >= -20.0)
    lower = z < -20.0
    zu = z[upper]
    out[upper] = np.log(zu * ndtr(zu) + np.exp(log_phi[upper]))
    zm = z[middle]
    out[middle] = log_phi[middle] + np.log1p(zm * _SQRT_HALF_PI * erfcx(-zm / math.sqrt(2.0)))
    inverse = 1.0 / (z[lower] * z[lower])
    series = -3.0 * inverse + 15.0 * inverse**2 - 105.0 * inverse**3
    out[lower] = log_phi[lower] + np.log(inverse) + np.log1p(series)
    return out


def _log_expected_improvement(gap: FloatArray, sigma: FloatArray) -> FloatArray:
    """log EI for minimisation, with gap = best - mean."""
    result: FloatArray = np.log(sigma) + _log_h(gap / sigma)
    return result


def _cholesky(matrix: FloatArray) -> FloatArray:
    """Lower Cholesky factor, adding growing jitter to the diagonal if needed."""
    if not np.isfinite(matrix).all():
        raise np.linalg.LinAlgError("kernel matrix is not finite")
    scale = float(np.mean(np.diag(matrix)))
    identity = np.eye(matrix.shape[0])
    for jitter in (0.0, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4):
        try:
            return np.asarray(np.linalg.cholesky(matrix + jitter * scale * identity), np.float64)
        except np.linalg.LinAlgError:
            continue
    raise np.linalg.LinAlgError("kernel matrix is not positive definite")


def _negative_log_likelihood(
    theta: FloatArray, squares: FloatArray, targets: FloatArray
) -> tuple[float, FloatArray]:
    """Negative log marginal likelihood (plus lengthscale prior) and its gradient.

    `squares` holds one (n, n) matrix of squared feature differences per parameter.
    """
    count = squares.shape[0]
    n = targets.size
    inverse_squared = np.exp(-2.0 * theta[:count])
    signal = math.exp(theta[count])
    noise = math.exp(theta[count + 1])
    mean = float(theta[count + 2])
    scaled = np.tensordot(inverse_squared, squares, axes=1)
    r = _SQRT5 * np.sqrt(scaled)
    decay = np.exp(-r)
    correlation = (1.0 + r + r * r / 3.0) * decay
    kernel = signal * correlation
    kernel[np.diag_indices(n)] += noise + _JITTER * signal
    try:
        factor = np.linalg.cholesky(kernel)
    except np.linalg.LinAlgError:
        return 1e20, np.zeros_like(theta)
    residual = targets - mean
    whitener = np.tril(np.linalg.inv(factor))
    inverse = whitener.T @ whitener
    alpha = inverse @ residual
    weights = np.outer(alpha, alpha) - inverse
    deviation = theta[:count] - _LENGTHSCALE_PRIOR_MEAN
    value = (
        0.5 * float(residual @ alpha)
        + float(np.log(np.diag(factor)).sum())
        + 0.5 * n * _LOG_2PI
        + 0.5 * float((deviation**2).sum()) / _LENGTHSCALE_PRIOR_SD**2
    )
    gradient = np.empty_like(theta)
    weighted = (weights * (1.0 + r) * decay).ravel()
    gradient[:count] = (
        -0.5 * signal * (5.0 / 3.0) * inverse_squared * (squares.reshape(count, -1) @ weighted)
        + deviation / _LENGTHSCALE_PRIOR_SD**2
    )
    gradient[count] = -0.5 * signal * float((weights * correlation).sum())
    gradient[count + 1] = -0.5 * noise * float(np.trace(weights))
    gradient[count + 2] = -float(alpha.sum())
    return value, gradient


class GPSearcher(Searcher):
    """Gaussian-process Bayesian optimisation over the unit-cube encoding of the space.

    Encoding: each numeric domain by its own `to_unit` (log domains in log space; integers,
    ordinals and finite ranges relaxed to [0, 1] and snapped to their values' codes), each
    categorical one one-hot; an inactive conditional parameter is all zeros. Like TPESearcher,
    observations (mode-adjusted losses, NaN/inf as the worst finite one) are kept per resource
    level and the model uses the highest level holding at least `n_initial`; until one does,
    configs are random. Beyond `max_observations` the model keeps the best half and the most
    recent rest. Targets are standardised; the GP has a constant mean, a Matern 5/2 kernel with
    one lengthscale per parameter and Gaussian noise, fitted by maximising the log marginal
    likelihood (weak log-normal lengthscale prior) with L-BFGS-B from the previous fit plus
    `n_restarts` random starts: on every new observation up to 32, then once the count has grown
    by max(`refit_every`, 10%). The suggestion maximises expected improvement over
    `n_candidates` configs, three quarters random and a quarter perturbations of the 8 best
    observations, skipping configs already suggested. Configs suggested among the last
    `max_pending` trials and without a result at the model level enter as kriging believers:
    their fantasised value is the posterior mean, which leaves the mean unchanged and shrinks the
    variance, so parallel workers get distinct configs.

    Cost: a suggest is O(n_candidates * m^2) for m = max_observations + pending inputs (about
    3 ms with the defaults), plus a hyperparameter fit every so often (O(m^3) per likelihood
    evaluation, some 0.1 to 0.5 s at m = 128).
    """

    kind = "gp"

    def __init__(
        self,
        space: SearchSpace,
        *,
        mode: Mode = "min",
        seed: int = 0,
        n_initial: int | None = None,
        n_candidates: int = 2048,
        max_observations: int = 128,
        max_pending: int = 16,
        refit_every: int = 10,
        n_restarts: int = 2,
    ) -> None:
        super().__init__(space)
        self.mode = _check_mode(mode)
        self.seed = _check_seed(seed)
        self._parameters, self._width = self._describe_parameters(space)
        if n_initial is None:
            n_initial = max(5, 2 * len(self._parameters))
        self.n_initial = self._check_integer("n_initial", n_initial, 2)
        self.n_candidates = self._check_integer("n_candidates", n_candidates, 1)
        self.max_observations = self._check_integer("max_observations", max_observations, 2)
        self.max_pending = self._check_integer("max_pending", max_pending, 0)
        self.refit_every = self._check_integer("refit_every", refit_every, 1)
        self.n_restarts = self._check_integer("n_restarts", n_restarts, 0)
        self._rng = _new_rng(seed, 4)
        count = len(self._parameters)
        self._column_parameter = np.zeros(self._width, dtype=np.intp)
        for index, parameter in enumerate(self._parameters):
            width = parameter.size if parameter.categorical else 1
            self._column_parameter[parameter.column : parameter.column + width] = index
        self._bounds = [_LOG_LENGTHSCALE] * count + [_LOG_SIGNAL, _LOG_NOISE, _MEAN]
        self._configs: dict[int, dict[str, Any]] = {}
        self._code_rows: dict[int, int] = {}
        self._code_matrix = np.empty((16, count))
        self._seen: set[bytes] = set()
        self._losses_by_level: dict[float, _LevelResults] = {}
        self._recent: list[int] = []
        self._fit: _Fit | None = None

    @staticmethod
    def _check_integer(name: str, value: object, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise SchedulerError(f"{name} must be an integer >= {minimum}, got {value!r}")
        return value

    @staticmethod
    def _describe_parameters(space: SearchSpace) -> tuple[list[_Parameter], int]:
        names = space.hyperparameters
        position = {name: index for index, name in enumerate(names)}
        constants = space.constants
        parameters: list[_Parameter] = []
        column = 0
        for name in names:
            domain = space.domain(name)
            values = _finite_values(domain)
            categorical = domain.categorical
            codes: FloatArray | None = None
            if categorical:
                size = domain.cardinality or 0
                values = [domain.from_unit((index + 0.5) / size) for index in range(size)]
            elif values is not None:
                unsorted = np.array([domain.to_unit(value) for value in values])
                order = np.argsort(unsorted, kind="stable")
                codes = unsorted[order]
                values = [values[int(index)] for index in order]
            condition = space.condition(name)
            parent: int | None = None
            fixed: bool | None = None
            allowed: BoolArray | None = None
            if condition is not None:
                if condition.param in position:
                    parent = position[condition.param]
                    source = parameters[parent]
                    if source.categorical or source.codes is not None:
                        allowed = np.array(
                            [condition.holds({source.name: value}) for value in source.values],
                            dtype=bool,
                        )
                else:
                    fixed = condition.holds(constants)
            parameters.append(
                _Parameter(
                    name=name,
                    domain=domain,
                    categorical=categorical,
                    size=(domain.cardinality or 0) if categorical else 0,
                    codes=codes,
                    values=values or [],
                    column=column,
                    parent=parent,
                    condition=condition,
                    fixed_active=fixed,
                    allowed=allowed,
                )
            )
            column += (domain.cardinality or 0) if categorical else 1
        return parameters, column

    # -- encoding ------------------------------------------------------------------------------

    def _encode(self, config: Mapping[str, Any]) -> FloatArray:
        """A config as one unit-code row: category index or unit code, NaN where inactive."""
        row = np.full(len(self._parameters), np.nan)
        for index, parameter in enumerate(self._parameters):
            if parameter.name not in config:
                continue
            code = parameter.domain.to_unit(config[parameter.name])
            if parameter.categorical:
                row[index] = min(int(code * parameter.size), parameter.size - 1)
            else:
                row[index] = code
        return row

    def _decode(self, row: FloatArray) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for index, parameter in enumerate(self._parameters):
            code = float(row[index])
            if math.isnan(code):
                continue
            if parameter.categorical:
                values[parameter.name] = parameter.values[int(code)]
            else:
                values[parameter.name] = parameter.domain.from_unit(code)
        return self.space.complete(values)

    @staticmethod
    def _key(row: FloatArray) -> bytes:
        return np.where(np.isnan(row), -1.0, row).tobytes()

    def _features(self, rows: FloatArray) -> FloatArray:
        features = np.zeros((rows.shape[0], self._width))
        for index, parameter in enumerate(self._parameters):
            column = rows[:, index]
            if parameter.categorical:
                present = np.flatnonzero(~np.isnan(column))
                slots = parameter.column + column[present].astype(np.intp)
                features[present, slots] = 1.0
            else:
                features[:, parameter.column] = np.where(np.isnan(column), 0.0, column)
        return features

    def _value_indices(self, parameter: _Parameter, codes: FloatArray) -> IndexArray:
        if parameter.categorical:
            return codes.astype(np.intp)
        assert parameter.codes is not None
        return _nearest(parameter.codes, codes)

    def _finish(self, rows: FloatArray) -> None:
        """Snaps finite numeric codes to values and blanks inactive parameters, in place."""
        for index, parameter in enumerate(self._parameters):
            column = rows[:, index]
            if parameter.codes is not None:
                present = ~np.isnan(column)
                column[present] = parameter.codes[_nearest(parameter.codes, column[present])]
            if parameter.fixed_active is not None:
                if not parameter.fixed_active:
                    column[:] = np.nan
                continue
            if parameter.parent is None:
                continue
            source = self._parameters[parameter.parent]
            parent_codes = rows[:, parameter.parent]
            present = ~np.isnan(parent_codes)
            active = np.zeros(rows.shape[0], dtype=bool)
            if parameter.allowed is not None:
                indices = self._value_indices(source, parent_codes[present])
                active[present] = parameter.allowed[indices]
            else:
                assert parameter.condition is not None
                for row in np.flatnonzero(present):
                    value = source.domain.from_unit(float(parent_codes[row]))
                    active[row] = parameter.condition.holds({source.name: value})
            column[~active] = np.nan

    def _random_rows(self, count: int) -> FloatArray:
        rows = np.empty((count, len(self._parameters)))
        for index, parameter in enumerate(self._parameters):
            if parameter.categorical:
                rows[:, index] = self._rng.integers(parameter.size, size=count)
            else:
                rows[:, index] = self._rng.uniform(size=count)
        return rows

    def _candidates(self, bases: FloatArray) -> FloatArray:
        """Random rows, a quarter of them replaced by perturbations of `bases`."""
        rng = self._rng
        rows = self._random_rows(self.n_candidates)
        local = self.n_candidates // 4
        count = len(self._parameters)
        if local and bases.shape[0]:
            perturbed = bases[rng.integers(bases.shape[0], size=local)]
            fresh = rows[:local]
            chosen = rng.uniform(size=(local, count)) < min(1.0, max(0.2, 2.0 / count))
            chosen[np.arange(local), rng.integers(count, size=local)] = True
            scales = np.exp(rng.uniform(math.log(0.002), math.log(0.2), size=(local, 1)))
            steps = scales * rng.standard_normal((local, count))
            for index, parameter in enumerate(self._parameters):
                mask = chosen[:, index]
                if parameter.categorical:
                    perturbed[mask, index] = fresh[mask, index]
                else:
                    moved = perturbed[mask, index] + steps[mask, index]
                    perturbed[mask, index] = np.clip(moved, 0.0, 1.0)
            missing = np.isnan(perturbed)
            perturbed[missing] = fresh[missing]
            rows[:local] = perturbed
        self._finish(rows)
        return rows

    # -- searcher interface -------------------------------------------------------------------

    def on_result(
        self, trial_id: int, config: Mapping[str, Any], resource: float, value: float
    ) -> None:
        if trial_id not in self._code_rows:
            self._remember(trial_id, config)
        results = self._losses_by_level.setdefault(float(resource), _LevelResults())
        results.set(trial_id, self._code_rows[trial_id], _loss(value, self.mode))

    def on_error(self, trial_id: int) -> None:
        if trial_id in self._recent:
            self._recent.remove(trial_id)

    def _remember(self, trial_id: int, config: Mapping[str, Any]) -> None:
        row = len(self._code_rows)
        if row == self._code_matrix.shape[0]:
            self._code_matrix = np.concatenate(
                [self._code_matrix, np.empty_like(self._code_matrix)]
            )
        code = self._encode(config)
        self._code_matrix[row] = code
        self._code_rows[trial_id] = row
        self._configs[trial_id] = dict(config)
        self._seen.add(self._key(code))

    def suggest(self, trial_id: int) -> dict[str, Any] | None:
        config: dict[str, Any] | None = None
        level = self._model_level()
        if level is not None and self._parameters:
            try:
                config = self._suggest_from_model(level)
            except np.linalg.LinAlgError:
                config = None
        if config is None:
            config = self._random_config()
        if trial_id not in self._code_rows:
            self._remember(trial_id, config)
        if self.max_pending:
            self._recent.append(trial_id)
            del self._recent[: -self.max_pending]
        return config

    def _random_config(self) -> dict[str, Any]:
        config = self.space.sample(self._rng)
        for _ in range(20):
            if self._key(self._encode(config)) not in self._seen:
                break
            config = self.space.sample(self._rng)
        return config

    def _model_level(self) -> float | None:
        for level in sorted(self._losses_by_level, reverse=True):
            if len(self._losses_by_level[level]) >= self.n_initial:
                return level
        return None

    def _observations(self, level: float) -> tuple[FloatArray, FloatArray]:
        """Unit-code rows and losses the model uses at `level`, capped at max_observations."""
        results = self._losses_by_level[level]
        count = results.count
        rows, losses = results.rows[:count], results.losses[:count]
        if count > self.max_observations:
            keep = np.zeros(count, dtype=bool)
            best = self.max_observations // 2
            keep[np.argpartition(losses, best - 1)[:best]] = True
            rest = self.max_observations - best
            keep[np.flatnonzero(~keep)[count - best - rest :]] = True
            selected = np.flatnonzero(keep)
            rows, losses = rows[selected], losses[selected]
        return self._code_matrix[rows], losses

    @staticmethod
    def _standardise(losses: FloatArray) -> FloatArray:
        finite = losses < WORST
        if not finite.any():
            return np.zeros_like(losses)
        values = np.where(finite, losses, losses[finite].max())
        spread = float(values.std())
        result: FloatArray = (values - values.mean()) / (spread if spread > 0 else 1.0)
        return result

    def _suggest_from_model(self, level: float) -> dict[str, Any] | None:
        codes, losses = self._observations(level)
        targets = self._standardise(losses)
        features = self._features(codes)
        theta = self._hyperparameters(level, features, targets)
        losses_at_level = self._losses_by_level[level]
        pending = [
            self._code_rows[trial]
            for trial in self._recent
            if trial not in losses_at_level and trial in self._code_rows
        ]
        model = self._model(theta, features, self._features(self._code_matrix[pending]), targets)
        bases = codes[np.argsort(targets, kind="stable")[:_LOCAL_BASES]]
        candidates = self._candidates(bases)
        row = self._maximise(model, theta, candidates)
        return None if row is None else self._decode(row)

    def _hyperparameters(
        self, level: float, features: FloatArray, targets: FloatArray
    ) -> FloatArray:
        count = len(self._losses_by_level[level])
        fit = self._fit
        if fit is not None and fit.level == level:
            grown = count - fit.count
            due = max(self.refit_every, fit.count // 10)
            if grown == 0 or (count > _CHEAP_FIT and grown < due):
                return fit.theta
        warm = None if fit is None else fit.theta
        theta = self._optimise(features, targets, warm)
        self._fit = _Fit(level=level, count=count, theta=theta)
        return theta

    def _optimise(
        self, features: FloatArray, targets: FloatArray, warm: FloatArray | None
    ) -> FloatArray:
        count = len(self._parameters)
        n = features.shape[0]
        squares = np.empty((count, n, n))
        for index, parameter in enumerate(self._parameters):
            width = parameter.size if parameter.categorical else 1
            block = features[:, parameter.column : parameter.column + width]
            difference = block[:, None, :] - block[None, :, :]
            squares[index] = np.einsum("ijk,ijk->ij", difference, difference)
        if warm is None:
            warm = np.array([math.log(0.5)] * count + [0.0, math.log(1e-3), 0.0])
        starts = [warm]
        for _ in range(self.n_restarts):
            starts.append(
                np.concatenate(
                    [
                        self._rng.uniform(math.log(0.05), math.log(2.0), size=count),
                        [self._rng.uniform(-1.0, 1.0)],
                        [self._rng.uniform(math.log(1e-5), math.log(1e-1))],
                        [0.0],
                    ]
                )
            )
        lower = np.array([bound[0] for bound in self._bounds])
        upper = np.array([bound[1] for bound in self._bounds])
        best, best_value = np.clip(warm, lower, upper), math.inf
        for start in starts:
            result = minimize(
                _negative_log_likelihood,
                np.clip(start, lower, upper),
                args=(squares, targets),
                jac=True,
                method="L-BFGS-B",
                bounds=self._bounds,
                options={"maxiter": _FIT_ITERATIONS},
            )
            value = float(result.fun)
            if math.isfinite(value) and value < best_value:
                best = np.clip(np.asarray(result.x, dtype=np.float64), lower, upper)
                best_value = value
        return best

    def _scaled(self, features: FloatArray, theta: FloatArray) -> FloatArray:
        """Features times sqrt(5) / lengthscale, so that Matern's r is their distance."""
        inverse = _SQRT5 * np.exp(-theta[: len(self._parameters)])[self._column_parameter]
        result: FloatArray = features * inverse
        return result

    def _model(
        self, theta: FloatArray, observed: FloatArray, pending: FloatArray, targets: FloatArray
    ) -> _Model:
        count = len(self._parameters)
        signal = math.exp(theta[count])
        noise = math.exp(theta[count + 1])
        mean = float(theta[count + 2])
        inputs = self._scaled(np.concatenate([observed, pending]), theta)
        right = _right_rows(inputs)
        squared = _squared_distances(_left_rows(inputs), right)
        np.fill_diagonal(squared, 0.0)
        kernel = signal * _matern(squared)
        kernel[np.diag_indices(inputs.shape[0])] += noise + _JITTER * signal
        whitener = np.tril(np.linalg.inv(_cholesky(kernel)))
        n = observed.shape[0]
        # The leading block of the inverse factor is the inverse factor of the leading block.
        alpha = whitener[:n, :n].T @ (whitener[:n, :n] @ (targets - mean))
        return _Model(
            right=right,
            count=n,
            weights=signal * alpha,
            whitener=signal * whitener.T,
            signal=signal,
            mean=mean,
            best=float(targets.min()),
        )

    def _maximise(
        self, model: _Model, theta: FloatArray, candidates: FloatArray
    ) -> FloatArray | None:
        """The not yet suggested candidate of highest expected improvement, if any."""
        left = _left_rows(self._scaled(self._features(candidates), theta))
        total = left.shape[0]
        gap = np.empty(total)
        variance = np.empty(total)
        for start in range(0, total, _BLOCK):
            correlation = _matern(_squared_distances(left[start : start + _BLOCK], model.right))
            block = slice(start, start + correlation.shape[0])
            gap[block] = model.best - model.mean - correlation[:, : model.count] @ model.weights
            whitened = correlation @ model.whitener
            variance[block] = model.signal - np.einsum("ij,ij->i", whitened, whitened)
        sigma = np.sqrt(np.maximum(variance, 1e-12 * model.signal))
        scores = _log_expected_improvement(gap, sigma)
        for index in np.argsort(-scores, kind="stable"):
            row: FloatArray = candidates[index]
            if self._key(row) not in self._seen:
                return row
        return None

    # -- snapshot ------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        fit = self._fit
        return {
            "kind": self.kind,
            "space": self.space.to_json(),
            "mode": self.mode,
            "seed": self.seed,
            "n_initial": self.n_initial,
            "n_candidates": self.n_candidates,
            "max_observations": self.max_observations,
            "max_pending": self.max_pending,
            "refit_every": self.refit_every,
            "n_restarts": self.n_restarts,
            "rng": _rng_state(self._rng),
            "configs": [[trial, config] for trial, config in self._configs.items()],
            "losses": [
                [level, results.pairs()] for level, results in self._losses_by_level.items()
            ],
            "recent": list(self._recent),
            "fit": None
            if fit is None
            else {"level": fit.level, "count": fit.count, "theta": fit.theta.tolist()},
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Self:
        searcher = cls(
            SearchSpace.from_json(state["space"]),
            mode=state["mode"],
            seed=state["seed"],
            n_initial=state["n_initial"],
            n_candidates=state["n_candidates"],
            max_observations=state["max_observations"],
            max_pending=state["max_pending"],
            refit_every=state["refit_every"],
            n_restarts=state["n_restarts"],
        )
        searcher._rng = _rng_from_state(state["rng"])
        for trial, config in state["configs"]:
            searcher._remember(int(trial), config)
        for level, losses in state["losses"]:
            results = searcher._losses_by_level.setdefault(float(level), _LevelResults())
            for trial, loss in losses:
                results.set(int(trial), searcher._code_rows[int(trial)], float(loss))
        searcher._recent = [int(trial) for trial in state["recent"]]
        fit = state["fit"]
        if fit is not None:
            searcher._fit = _Fit(
                level=float(fit["level"]),
                count=int(fit["count"]),
                theta=np.array(fit["theta"], dtype=np.float64),
            )
        return searcher
