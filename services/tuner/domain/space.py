"""Hyperparameter search spaces: domains, conditional parameters and their JSON form."""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final, TypeGuard

import numpy as np

__all__ = [
    "Choice",
    "Condition",
    "Domain",
    "FiniteRange",
    "LogRandInt",
    "LogUniform",
    "Ordinal",
    "RandInt",
    "SearchSpace",
    "SpaceError",
    "Uniform",
    "domain_from_json",
    "same_value",
]

Category = str | int | float | bool


class SpaceError(ValueError):
    """A search space or a configuration that does not fit it."""


def same_value(left: object, right: object) -> bool:
    """Equality that keeps booleans apart from the numbers 0 and 1 (True == 1 in Python)."""
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    return left == right


# numpy scalars count too: values often come straight out of a Generator.
def _is_number(value: object) -> TypeGuard[float]:
    return (
        isinstance(value, int | float | np.integer | np.floating)
        and not isinstance(value, bool | np.bool_)
        and math.isfinite(float(value))
    )


def _is_integer(value: object) -> TypeGuard[int]:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _number(value: object, what: str) -> float:
    if not _is_number(value):
        raise SpaceError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _integer(value: object, what: str) -> int:
    if not _is_integer(value):
        raise SpaceError(f"{what} must be an integer, got {value!r}")
    return int(value)


def _clip_unit(u: float) -> float:
    return min(max(float(u), 0.0), 1.0)


def _index_from_unit(u: float, count: int) -> int:
    return min(int(_clip_unit(u) * count), count - 1)


def _index_to_unit(index: int, count: int) -> float:
    return (index + 0.5) / count


def _evenly_spaced_indices(count: int, n: int) -> list[int]:
    if n >= count:
        return list(range(count))
    if n == 1:
        return [(count - 1) // 2]
    return sorted({round(i * (count - 1) / (n - 1)) for i in range(n)})


def _check_grid_points(n: int) -> None:
    if not _is_integer(n) or n < 1:
        raise SpaceError(f"grid points per dimension must be an integer >= 1, got {n!r}")


class Domain(ABC):
    """The set of values one hyperparameter may take, and how to sample and encode them."""

    type_name: str
    # Categorical domains have no order: model-based searchers treat their index as a label.
    categorical: ClassVar[bool] = False

    @abstractmethod
    def sample(self, rng: np.random.Generator) -> Any: ...

    @abstractmethod
    def to_unit(self, value: Any) -> float:
        """Encodes a value of the domain as a number in [0, 1]."""

    @abstractmethod
    def from_unit(self, u: float) -> Any:
        """Decodes a number in [0, 1] (clipped if outside) to a value of the domain."""

    @abstractmethod
    def grid(self, n: int) -> list[Any]:
        """Values for grid search: n per numeric dimension, all values of a finite set."""

    @abstractmethod
    def contains(self, value: object) -> bool: ...

    @abstractmethod
    def to_json(self) -> dict[str, Any]: ...

    @property
    def cardinality(self) -> int | None:
        """Number of distinct values, or None for a continuous domain."""
        return None

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and isinstance(other, Domain)
            and other.to_json() == self.to_json()
        )

    def __hash__(self) -> int:
        return hash(repr(self.to_json()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_json()!r})"


class _Interval(Domain):
    def __init__(self, lower: float, upper: float) -> None:
        self.lower = _number(lower, "lower")
        self.upper = _number(upper, "upper")
        if self.lower >= self.upper:
            raise SpaceError(f"lower ({lower!r}) must be < upper ({upper!r})")

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type_name, "lower": self.lower, "upper": self.upper}


class Uniform(_Interval):
    """A float drawn uniformly from [lower, upper]."""

    type_name = "uniform"

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.lower, self.upper))

    def to_unit(self, value: Any) -> float:
        return _clip_unit((float(value) - self.lower) / (self.upper - self.lower))

    def from_unit(self, u: float) -> float:
        return min(self.lower + _clip_unit(u) * (self.upper - self.lower), self.upper)

    def grid(self, n: int) -> list[Any]:
        _check_grid_points(n)
        if n == 1:
            return [(self.lower + self.upper) / 2]
        return [float(v) for v in np.linspace(self.lower, self.upper, n)]

    def contains(self, value: object) -> bool:
        return _is_number(value) and self.lower <= float(value) <= self.upper


class LogUniform(_Interval):
    """A float whose logarithm is uniform on [log lower, log upper]; lower > 0."""

    type_name = "loguniform"

    def __init__(self, lower: float, upper: float) -> None:
        super().__init__(lower, upper)
        if self.lower <= 0:
            raise SpaceError(f"lower ({lower!r}) must be > 0 on a log scale")
        self._log_lower = math.log(self.lower)
        self._log_upper = math.log(self.upper)

    def sample(self, rng: np.random.Generator) -> float:
        return self.from_unit(float(rng.uniform()))

    def to_unit(self, value: Any) -> float:
        if float(value) <= 0:
            return 0.0
        return _clip_unit(
            (math.log(float(value)) - self._log_lower) / (self._log_upper - self._log_lower)
        )

    def from_unit(self, u: float) -> float:
        value = math.exp(self._log_lower + _clip_unit(u) * (self._log_upper - self._log_lower))
        return min(max(value, self.lower), self.upper)

    def grid(self, n: int) -> list[Any]:
        _check_grid_points(n)
        if n == 1:
            return [math.sqrt(self.lower * self.upper)]
        return [float(v) for v in np.geomspace(self.lower, self.upper, n)]

    def contains(self, value: object) -> bool:
        return _is_number(value) and self.lower <= float(value) <= self.upper


class _IntegerInterval(Domain):
    def __init__(self, lower: int, upper: int) -> None:
        self.lower = _integer(lower, "lower")
        self.upper = _integer(upper, "upper")
        if self.lower >= self.upper:
            raise SpaceError(f"lower ({lower!r}) must be < upper ({upper!r})")

    @property
    def cardinality(self) -> int | None:
        return self.upper - self.lower + 1

    def sample(self, rng: np.random.Generator) -> int:
        return int(self.from_unit(float(rng.uniform())))

    def contains(self, value: object) -> bool:
        return _is_integer(value) and self.lower <= int(value) <= self.upper

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type_name, "lower": self.lower, "upper": self.upper}


class RandInt(_IntegerInterval):
    """An integer drawn uniformly from lower..upper, both included."""

    type_name = "randint"

    def to_unit(self, value: Any) -> float:
        count = self.upper - self.lower + 1
        return _clip_unit((int(value) - self.lower + 0.5) / count)

    def from_unit(self, u: float) -> int:
        return self.lower + _index_from_unit(u, self.upper - self.lower + 1)

    def grid(self, n: int) -> list[Any]:
        _check_grid_points(n)
        count = self.upper - self.lower + 1
        return [self.lower + i for i in _evenly_spaced_indices(count, n)]


class LogRandInt(_IntegerInterval):
    """An integer from lower..upper (lower >= 1) whose logarithm is roughly uniform.

    The unit interval maps onto [log lower, log(upper + 1)) and each integer v owns the bin
    [log v, log(v + 1)), so every value is reachable and larger values get proportionally wider bins.
    """

    type_name = "lograndint"

    def __init__(self, lower: int, upper: int) -> None:
        super().__init__(lower, upper)
        if self.lower < 1:
            raise SpaceError(f"lower ({lower!r}) must be >= 1 on a log scale")
        self._log_lower = math.log(self.lower)
        self._log_end = math.log(self.upper + 1)

    def to_unit(self, value: Any) -> float:
        centre = math.log(max(int(value), self.lower) + 0.5)
        return _clip_unit((centre - self._log_lower) / (self._log_end - self._log_lower))

    def from_unit(self, u: float) -> int:
        value = math.exp(self._log_lower + _clip_unit(u) * (self._log_end - self._log_lower))
        return min(max(math.floor(value), self.lower), self.upper)

    def grid(self, n: int) -> list[Any]:
        _check_grid_points(n)
        if n == 1:
            return [round(math.sqrt(self.lower * self.upper))]
        values = {round(float(v)) for v in np.geomspace(self.lower, self.upper, n)}
        return sorted(values)


def _check_categories(categories: object) -> list[Category]:
    if not isinstance(categories, list | tuple) or not categories:
        raise SpaceError(f"categories must be a non-empty list, got {categories!r}")
    checked: list[Category] = []
    seen: set[tuple[type, Category]] = set()
    for category in categories:
        if isinstance(category, float) and not math.isfinite(category):
            raise SpaceError(f"category {category!r} is not a finite number")
        if not isinstance(category, str | int | float | bool):
            raise SpaceError(f"categories must be strings, numbers or booleans, got {category!r}")
        key = (
            bool if isinstance(category, bool) else str if isinstance(category, str) else float,
            category,
        )
        if key in seen:
            raise SpaceError(f"duplicate category {category!r}")
        seen.add(key)
        checked.append(category)
    return checked


class _Finite(Domain):
    """A finite list of values; the unit interval is cut into one equal bin per value."""

    values: list[Any]

    @property
    def cardinality(self) -> int | None:
        return len(self.values)

    def index(self, value: object) -> int:
        for position, candidate in enumerate(self.values):
            if same_value(candidate, value):
                return position
        raise SpaceError(f"{value!r} is not one of {self.values!r}")

    def sample(self, rng: np.random.Generator) -> Any:
        return self.values[int(rng.integers(len(self.values)))]

    def to_unit(self, value: Any) -> float:
        return _index_to_unit(self.index(value), len(self.values))

    def from_unit(self, u: float) -> Any:
        return self.values[_index_from_unit(u, len(self.values))]

    def contains(self, value: object) -> bool:
        return any(same_value(candidate, value) for candidate in self.values)


class Choice(_Finite):
    """One of an unordered list of categories; encoded as its index."""

    type_name = "choice"
    categorical = True

    def __init__(self, categories: Sequence[Category]) -> None:
        self.values = _check_categories(categories)

    @property
    def categories(self) -> list[Category]:
        return list(self.values)

    def grid(self, n: int) -> list[Any]:
        _check_grid_points(n)
        return list(self.values)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type_name, "categories": list(self.values)}


ORDINAL_KINDS: Final = ("equal", "nn")


class Ordinal(_Finite):
    """One of an ordered list of categories.

    kind="equal" spaces the categories evenly on the unit interval (like an integer index).
    kind="nn" needs increasing numbers: the encoding follows their values and decoding picks the
    nearest category. Either way sampling is uniform over the categories.
    """

    type_name = "ordinal"

    def __init__(self, categories: Sequence[Category], kind: str = "equal") -> None:
        self.values = _check_categories(categories)
        if kind not in ORDINAL_KINDS:
            raise SpaceError(f"kind must be one of {list(ORDINAL_KINDS)}, got {kind!r}")
        self.kind = kind
        if kind == "nn":
            if len(self.values) < 2 or not all(_is_number(v) for v in self.values):
                raise SpaceError('kind "nn" needs at least two numeric categories')
            numbers = [float(v) for v in self.values]
            if any(b <= a for a, b in itertools.pairwise(numbers)):
                raise SpaceError('kind "nn" needs strictly increasing categories')
            self._numbers = np.asarray(numbers)

    @property
    def categories(self) -> list[Category]:
        return list(self.values)

    def to_unit(self, value: Any) -> float:
        if self.kind == "equal":
            return super().to_unit(value)
        low, high = float(self._numbers[0]), float(self._numbers[-1])
        return (float(self._numbers[self.index(value)]) - low) / (high - low)

    def from_unit(self, u: float) -> Any:
        if self.kind == "equal":
            return super().from_unit(u)
        low, high = float(self._numbers[0]), float(self._numbers[-1])
        target = low + _clip_unit(u) * (high - low)
        return self.values[int(np.argmin(np.abs(self._numbers - target)))]

    def grid(self, n: int) -> list[Any]:
        _check_grid_points(n)
        return list(self.values)

    def to_json(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"type": self.type_name, "categories": list(self.values)}
        if self.kind != "equal":
            spec["kind"] = self.kind
        return spec


class FiniteRange(_Finite):
    """`size` evenly spaced values from lower to upper (geometrically when log), optionally ints."""

    def __init__(
        self, lower: float, upper: float, size: int, log: bool = False, cast_int: bool = False
    ) -> None:
        self.lower = _number(lower, "lower")
        self.upper = _number(upper, "upper")
        if self.lower >= self.upper:
            raise SpaceError(f"lower ({lower!r}) must be < upper ({upper!r})")
        self.size = _integer(size, "size")
        if self.size < 2:
            raise SpaceError(f"size must be >= 2, got {size!r}")
        if not isinstance(log, bool) or not isinstance(cast_int, bool):
            raise SpaceError("log and cast_int must be booleans")
        if log and self.lower <= 0:
            raise SpaceError(f"lower ({lower!r}) must be > 0 on a log scale")
        self.log = log
        self.cast_int = cast_int
        self.type_name = "logfinrange" if log else "finrange"
        points = (
            np.geomspace(self.lower, self.upper, self.size)
            if log
            else np.linspace(self.lower, self.upper, self.size)
        )
        values: list[Any] = []
        for point in points:
            value: Any = round(float(point)) if cast_int else float(point)
            if not any(same_value(value, existing) for existing in values):
                values.append(value)
        self.values = values

    def contains(self, value: object) -> bool:
        if not _is_number(value):
            return False
        if self.cast_int:
            return _is_integer(value) and super().contains(int(value))
        return bool(np.isclose(float(value), self.values, rtol=1e-9, atol=0.0).any())

    def index(self, value: object) -> int:
        if not self.cast_int and _is_number(value):
            distances = np.abs(np.asarray(self.values) - float(value))
            nearest = int(np.argmin(distances))
            if math.isclose(self.values[nearest], float(value), rel_tol=1e-9):
                return nearest
        return super().index(value)

    def grid(self, n: int) -> list[Any]:
        _check_grid_points(n)
        return [self.values[i] for i in _evenly_spaced_indices(len(self.values), n)]

    def to_json(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "type": self.type_name,
            "lower": self.lower,
            "upper": self.upper,
            "size": self.size,
        }
        if self.cast_int:
            spec["cast_int"] = True
        return spec


@dataclass(frozen=True)
class Condition:
    """A parameter is active only while `param` is active and its value is one of `values`."""

    param: str
    values: tuple[Any, ...]

    def holds(self, config: Mapping[str, Any]) -> bool:
        if self.param not in config:
            return False
        return any(same_value(config[self.param], allowed) for allowed in self.values)

    def to_json(self) -> dict[str, Any]:
        return {"param": self.param, "in": list(self.values)}

    @classmethod
    def from_json(cls, spec: object) -> Condition:
        if not isinstance(spec, Mapping):
            raise SpaceError(
                f'condition must be an object {{"param": ..., "in": [...]}}, got {spec!r}'
            )
        unknown = sorted(set(spec) - {"param", "in"})
        if unknown:
            raise SpaceError(f"condition has unknown keys {unknown}")
        param = spec.get("param")
        if not isinstance(param, str) or not param:
            raise SpaceError(f"condition 'param' must be a parameter name, got {param!r}")
        allowed = spec.get("in")
        if not isinstance(allowed, list | tuple) or not allowed:
            raise SpaceError(f"condition 'in' must be a non-empty list, got {allowed!r}")
        return cls(param, tuple(allowed))


_REQUIRED_KEYS: Final[dict[str, tuple[str, ...]]] = {
    "uniform": ("lower", "upper"),
    "loguniform": ("lower", "upper"),
    "randint": ("lower", "upper"),
    "lograndint": ("lower", "upper"),
    "choice": ("categories",),
    "ordinal": ("categories",),
    "finrange": ("lower", "upper", "size"),
    "logfinrange": ("lower", "upper", "size"),
}
_OPTIONAL_KEYS: Final[dict[str, tuple[str, ...]]] = {
    "ordinal": ("kind",),
    "finrange": ("cast_int",),
    "logfinrange": ("cast_int",),
}


def domain_from_json(spec: Mapping[str, Any]) -> Domain:
    """Builds a domain from its JSON form (without any "condition" key)."""
    type_name = spec.get("type")
    if type_name not in _REQUIRED_KEYS:
        raise SpaceError(f"unknown type {type_name!r}; expected one of {sorted(_REQUIRED_KEYS)}")
    required = _REQUIRED_KEYS[type_name]
    allowed = {"type", *required, *_OPTIONAL_KEYS.get(type_name, ())}
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise SpaceError(f"unknown keys {unknown} for type {type_name!r}")
    missing = [key for key in required if key not in spec]
    if missing:
        raise SpaceError(f"missing keys {missing} for type {type_name!r}")
    match type_name:
        case "uniform":
            return Uniform(spec["lower"], spec["upper"])
        case "loguniform":
            return LogUniform(spec["lower"], spec["upper"])
        case "randint":
            return RandInt(spec["lower"], spec["upper"])
        case "lograndint":
            return LogRandInt(spec["lower"], spec["upper"])
        case "choice":
            return Choice(spec["categories"])
        case "ordinal":
            return Ordinal(spec["categories"], kind=spec.get("kind", "equal"))
        case _:
            return FiniteRange(
                spec["lower"],
                spec["upper"],
                spec["size"],
                log=type_name == "logfinrange",
                cast_int=spec.get("cast_int", False),
            )


class SearchSpace:
    """Named hyperparameters (domains), constants and the conditions between them.

    A configuration holds every constant and every active hyperparameter; an inactive one (its
    condition fails, or its parent is itself inactive) is absent.
    """

    def __init__(
        self,
        parameters: Mapping[str, Domain | Any],
        conditions: Mapping[str, Condition] | None = None,
    ) -> None:
        self._names: list[str] = []
        self._domains: dict[str, Domain] = {}
        self._constants: dict[str, Any] = {}
        for name, value in parameters.items():
            if not isinstance(name, str) or not name:
                raise SpaceError(f"parameter names must be non-empty strings, got {name!r}")
            self._names.append(name)
            if isinstance(value, Domain):
                self._domains[name] = value
            else:
                self._constants[name] = value
        self._conditions: dict[str, Condition] = dict(conditions or {})
        for name, condition in self._conditions.items():
            if name not in self._domains:
                if name in self._constants:
                    raise SpaceError(f"parameter {name!r}: a constant cannot carry a condition")
                raise SpaceError(f"condition given for unknown parameter {name!r}")
            if condition.param not in self._domains and condition.param not in self._constants:
                raise SpaceError(
                    f"parameter {name!r}: condition refers to unknown parameter {condition.param!r}"
                )
        self._order = self._dependency_order()

    def _dependency_order(self) -> list[str]:
        placed: list[str] = []
        placed_set: set[str] = set()
        remaining = list(self._names)
        while remaining:
            ready = [
                name
                for name in remaining
                if name not in self._conditions or self._conditions[name].param in placed_set
            ]
            if not ready:
                cycle = ", ".join(repr(name) for name in remaining)
                raise SpaceError(f"conditions form a cycle among parameters {cycle}")
            for name in ready:
                placed.append(name)
                placed_set.add(name)
            remaining = [name for name in remaining if name not in placed_set]
        return placed

    @classmethod
    def from_json(cls, spec: Mapping[str, Any]) -> SearchSpace:
        if not isinstance(spec, Mapping):
            raise SpaceError(f"a search space must be a JSON object, got {type(spec).__name__}")
        parameters: dict[str, Domain | Any] = {}
        conditions: dict[str, Condition] = {}
        for name, value in spec.items():
            if not isinstance(name, str) or not name:
                raise SpaceError(f"parameter names must be non-empty strings, got {name!r}")
            if not isinstance(value, Mapping):
                parameters[name] = value
                continue
            try:
                domain_spec = {key: item for key, item in value.items() if key != "condition"}
                parameters[name] = domain_from_json(domain_spec)
                if "condition" in value:
                    conditions[name] = Condition.from_json(value["condition"])
            except SpaceError as error:
                raise SpaceError(f"parameter {name!r}: {error}") from None
        return cls(parameters, conditions)

    def to_json(self) -> dict[str, Any]:
        spec: dict[str, Any] = {}
        for name in self._names:
            if name in self._constants:
                spec[name] = self._constants[name]
                continue
            entry = self._domains[name].to_json()
            if name in self._conditions:
                entry["condition"] = self._conditions[name].to_json()
            spec[name] = entry
        return spec

    @property
    def names(self) -> list[str]:
        """All parameter names, constants included, in declaration order."""
        return list(self._names)

    @property
    def hyperparameters(self) -> list[str]:
        """Names of the non-constant parameters, each after the parameter its condition reads."""
        return [name for name in self._order if name in self._domains]

    @property
    def constants(self) -> dict[str, Any]:
        return dict(self._constants)

    def domain(self, name: str) -> Domain:
        try:
            return self._domains[name]
        except KeyError:
            raise SpaceError(f"{name!r} is not a hyperparameter of this space") from None

    def condition(self, name: str) -> Condition | None:
        return self._conditions.get(name)

    def is_active(self, name: str, config: Mapping[str, Any]) -> bool:
        condition = self._conditions.get(name)
        if condition is None:
            return True
        return self.is_active(condition.param, config) and condition.holds(config)

    def active(self, config: Mapping[str, Any]) -> list[str]:
        """Parameters (constants included) that are active under `config`, in dependency order."""
        return [name for name in self._order if self.is_active(name, config)]

    def _in_declaration_order(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return {name: config[name] for name in self._names if name in config}

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        config: dict[str, Any] = {}
        for name in self._order:
            condition = self._conditions.get(name)
            if condition is not None and not condition.holds(config):
                continue
            if name in self._constants:
                config[name] = self._constants[name]
            else:
                config[name] = self._domains[name].sample(rng)
        return self._in_declaration_order(config)

    def complete(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Builds a config from hyperparameter values: adds constants, drops inactive values.

        Raises SpaceError when an active hyperparameter has no value.
        """
        config: dict[str, Any] = {}
        for name in self._order:
            condition = self._conditions.get(name)
            if condition is not None and not condition.holds(config):
                continue
            if name in self._constants:
                config[name] = self._constants[name]
            elif name in values:
                config[name] = values[name]
            else:
                raise SpaceError(f"parameter {name!r} is active but has no value")
        return self._in_declaration_order(config)

    def validate(self, config: Mapping[str, Any]) -> None:
        unknown = sorted(set(config) - set(self._names))
        if unknown:
            raise SpaceError(f"unknown parameters {unknown}")
        for name in self._order:
            active = self.is_active(name, config)
            if not active:
                if name in config:
                    raise SpaceError(f"parameter {name!r} is inactive under this config but is set")
                continue
            if name not in config:
                raise SpaceError(f"parameter {name!r} is missing")
            value = config[name]
            if name in self._constants:
                if not same_value(value, self._constants[name]):
                    raise SpaceError(
                        f"parameter {name!r} is the constant {self._constants[name]!r}, got {value!r}"
                    )
            elif not self._domains[name].contains(value):
                raise SpaceError(
                    f"parameter {name!r}: {value!r} is outside {self._domains[name].to_json()}"
                )

    def grid(self, points_per_dimension: int) -> Iterator[dict[str, Any]]:
        """Every grid config, lazily, in a fixed order (earlier parameters vary slowest)."""
        _check_grid_points(points_per_dimension)
        axes = {name: domain.grid(points_per_dimension) for name, domain in self._domains.items()}

        def expand(position: int, config: dict[str, Any]) -> Iterator[dict[str, Any]]:
            if position == len(self._order):
                yield self._in_declaration_order(config)
                return
            name = self._order[position]
            condition = self._conditions.get(name)
            if condition is not None and not condition.holds(config):
                yield from expand(position + 1, config)
                return
            if name in self._constants:
                yield from expand(position + 1, {**config, name: self._constants[name]})
                return
            for value in axes[name]:
                yield from expand(position + 1, {**config, name: value})

        return expand(0, {})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and other.to_json() == self.to_json()

    def __hash__(self) -> int:
        return hash(repr(self.to_json()))

    def __repr__(self) -> str:
        return f"SearchSpace({self.to_json()!r})"
