"""Kendra document attributes, attribute filters and access control, evaluated as numpy masks over a column store."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final, Literal, TypeAlias, cast, get_args

import numpy as np
import numpy.typing as npt

from runtime.errors import ValidationFailed

__all__ = [
    "MAX_ACL_ENTRIES",
    "MAX_FILTER_CONDITIONS",
    "MAX_FILTER_DEPTH",
    "MAX_STRING_LENGTH",
    "MAX_STRING_LIST_ITEMS",
    "OPERATORS",
    "RESERVED_ATTRIBUTES",
    "And",
    "AttributeType",
    "AttributeValue",
    "Compare",
    "DocumentTable",
    "Filter",
    "FilterValue",
    "Mask",
    "Not",
    "Operator",
    "Or",
    "Principal",
    "UserContext",
    "attribute_to_json",
    "parse_acl",
    "parse_attribute_value",
    "parse_filter",
    "parse_user_context",
]

MAX_STRING_LENGTH: Final = 2048
MAX_STRING_LIST_ITEMS: Final = 1000
MAX_FILTER_DEPTH: Final = 10
MAX_FILTER_CONDITIONS: Final = 200
MAX_ACL_ENTRIES: Final = 1000
_MAX_PRINCIPAL_NAME: Final = 200
_MAX_USER_ID: Final = 1024
_MAX_GROUPS: Final = 2048
_MAX_DATA_SOURCE_ID: Final = 100
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)

Mask: TypeAlias = npt.NDArray[np.bool_]


class AttributeType(StrEnum):
    STRING = "STRING"
    STRING_LIST = "STRING_LIST"
    LONG = "LONG"
    DATE = "DATE"


AttributeValue: TypeAlias = str | list[str] | int | datetime
# Filter operands are immutable: a StringListValue becomes a tuple.
FilterValue: TypeAlias = str | tuple[str, ...] | int | datetime

RESERVED_ATTRIBUTES: Final[dict[str, AttributeType]] = {
    "_source_uri": AttributeType.STRING,
    "_data_source_id": AttributeType.STRING,
    "_created_at": AttributeType.DATE,
    "_last_updated_at": AttributeType.DATE,
    "_file_type": AttributeType.STRING,
    "_language_code": AttributeType.STRING,
    "_category": AttributeType.STRING,
    "_authors": AttributeType.STRING_LIST,
    "_document_title": AttributeType.STRING,
    "_view_count": AttributeType.LONG,
    "_excerpt_page_number": AttributeType.LONG,
}

_MEMBER: Final[dict[AttributeType, str]] = {
    AttributeType.STRING: "StringValue",
    AttributeType.STRING_LIST: "StringListValue",
    AttributeType.LONG: "LongValue",
    AttributeType.DATE: "DateValue",
}
_MEMBER_TYPE: Final[dict[str, AttributeType]] = {member: t for t, member in _MEMBER.items()}


# --- attribute values ------------------------------------------------------------------------


def _members(raw: Any, where: str, allowed: Sequence[str], what: str) -> dict[str, Any]:
    """The members of a JSON object that are set, rejecting unknown ones (null counts as unset)."""
    if not isinstance(raw, Mapping):
        raise ValidationFailed(f"{where}: must be an object with {what}")
    present: dict[str, Any] = {}
    for name, item in raw.items():
        if name not in allowed:
            raise ValidationFailed(f"{where}: unknown member {name!r}")
        if item is not None:
            present[name] = item
    return present


def _exactly_one(raw: Any, where: str, allowed: Sequence[str]) -> tuple[str, Any]:
    what = "exactly one of " + ", ".join(allowed)
    present = _members(raw, where, allowed, what)
    if len(present) != 1:
        got = ", ".join(present) if present else "none"
        raise ValidationFailed(f"{where}: expected {what}, got {got}")
    ((name, item),) = present.items()
    return name, item


def _string(raw: Any, where: str, *, max_length: int, min_length: int = 0) -> str:
    if not isinstance(raw, str):
        raise ValidationFailed(f"{where}: must be a string")
    if len(raw) > max_length:
        raise ValidationFailed(f"{where}: longer than {max_length} characters")
    if len(raw) < min_length:
        raise ValidationFailed(f"{where}: must not be empty")
    return raw


def _list(raw: Any, where: str, *, max_items: int) -> list[Any]:
    if not isinstance(raw, list):
        raise ValidationFailed(f"{where}: must be a list")
    if len(raw) > max_items:
        raise ValidationFailed(f"{where}: more than {max_items} items")
    return raw


def _to_micros(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _MICROSECOND


def _from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def _parse_date(raw: Any, where: str) -> datetime:
    # bool is an int subclass; True is not a date.
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        if not math.isfinite(raw):
            raise ValidationFailed(f"{where}: not a finite number of epoch seconds")
        try:
            return _EPOCH + timedelta(seconds=raw)
        except OverflowError:
            raise ValidationFailed(f"{where}: {raw!r} epoch seconds is out of range") from None
    if isinstance(raw, str):
        try:
            parsed = datetime.fromisoformat(raw.strip())
            if parsed.tzinfo is None:
                return parsed.replace(tzinfo=UTC)
            return parsed.astimezone(UTC)
        except (ValueError, OverflowError):
            raise ValidationFailed(f"{where}: not an ISO-8601 date: {raw[:64]!r}") from None
    raise ValidationFailed(f"{where}: must be epoch seconds or an ISO-8601 string")


def parse_attribute_value(
    raw: Mapping[str, Any], where: str
) -> tuple[AttributeType, AttributeValue]:
    """Parse a Kendra DocumentAttributeValue; `where` names it in error messages."""
    member, item = _exactly_one(raw, where, list(_MEMBER.values()))
    path = f"{where}.{member}"
    kind = _MEMBER_TYPE[member]
    if kind is AttributeType.STRING:
        return kind, _string(item, path, max_length=MAX_STRING_LENGTH)
    if kind is AttributeType.STRING_LIST:
        items = _list(item, path, max_items=MAX_STRING_LIST_ITEMS)
        return kind, [
            _string(s, f"{path}[{i}]", max_length=MAX_STRING_LENGTH) for i, s in enumerate(items)
        ]
    if kind is AttributeType.LONG:
        if not isinstance(item, int) or isinstance(item, bool):
            raise ValidationFailed(f"{path}: must be an integer")
        if not _INT64_MIN <= item <= _INT64_MAX:
            raise ValidationFailed(f"{path}: out of the 64-bit integer range")
        return kind, item
    return kind, _parse_date(item, path)


def attribute_to_json(type: AttributeType, value: AttributeValue) -> dict[str, Any]:
    """The Kendra DocumentAttributeValue JSON of a parsed value (dates as epoch seconds)."""
    if type is AttributeType.DATE:
        if not isinstance(value, datetime):
            raise ValidationFailed(f"a DATE value must be a datetime, got {value!r}")
        return {"DateValue": _to_micros(value) / 1_000_000}
    if type is AttributeType.STRING_LIST:
        if not isinstance(value, list | tuple):
            raise ValidationFailed(f"a STRING_LIST value must be a list, got {value!r}")
        return {"StringListValue": list(value)}
    return {_MEMBER[AttributeType(type)]: value}


def _type_of(value: object) -> AttributeType | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        return AttributeType.STRING
    if isinstance(value, list | tuple) and all(isinstance(s, str) for s in value):
        return AttributeType.STRING_LIST
    if isinstance(value, int):
        return AttributeType.LONG if _INT64_MIN <= value <= _INT64_MAX else None
    if isinstance(value, datetime):
        return AttributeType.DATE
    return None


# --- filters ---------------------------------------------------------------------------------

Operator: TypeAlias = Literal[
    "EqualsTo",
    "ContainsAll",
    "ContainsAny",
    "GreaterThan",
    "GreaterThanOrEquals",
    "LessThan",
    "LessThanOrEquals",
]
OPERATORS: Final[tuple[Operator, ...]] = get_args(Operator)
_RANGE_OPERATORS: Final = frozenset(OPERATORS[3:])
_COMBINATORS: Final = ("AndAllFilters", "OrAllFilters", "NotFilter")


def _operand_problem(
    op: str, key: str, attribute: AttributeType, value: AttributeType
) -> str | None:
    """Why `op` cannot compare attribute `key` with a value of type `value`, or None if it can."""
    if op == "EqualsTo":
        ok = value is attribute
    elif op in ("ContainsAll", "ContainsAny"):
        allowed: tuple[AttributeType, ...] = (AttributeType.STRING_LIST,)
        if op == "ContainsAny":
            allowed += (AttributeType.STRING,)
        if attribute not in allowed:
            kinds = " or ".join(allowed)
            return f"{op} needs a {kinds} attribute, {key!r} is {attribute}"
        if value is not AttributeType.STRING_LIST:
            return f"{op} needs a StringListValue, got {_MEMBER[value]}"
        return None
    elif op in _RANGE_OPERATORS:
        if attribute not in (AttributeType.LONG, AttributeType.DATE):
            return f"{op} needs a LONG or DATE attribute, {key!r} is {attribute}"
        ok = value is attribute
    else:
        return f"unknown operator {op!r}"
    return None if ok else f"attribute {key!r} is {attribute}, got {_MEMBER[value]}"


@dataclass(frozen=True)
class And:
    children: tuple[Filter, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "children", tuple(self.children))


@dataclass(frozen=True)
class Or:
    children: tuple[Filter, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "children", tuple(self.children))


@dataclass(frozen=True)
class Not:
    child: Filter


@dataclass(frozen=True)
class Compare:
    """One condition; `type` is the attribute's declared type, `value` the operand."""

    op: Operator
    key: str
    type: AttributeType
    value: FilterValue

    def __post_init__(self) -> None:
        if self.type not in _MEMBER:
            raise ValidationFailed(f"Compare: unknown attribute type {self.type!r}")
        object.__setattr__(self, "type", AttributeType(self.type))
        if isinstance(self.value, list):
            object.__setattr__(self, "value", tuple(self.value))
        value_type = _type_of(self.value)
        if value_type is None:
            raise ValidationFailed(f"Compare: unsupported operand {self.value!r}")
        problem = _operand_problem(self.op, self.key, self.type, value_type)
        if problem is not None:
            raise ValidationFailed(f"Compare: {problem}")


Filter: TypeAlias = And | Or | Not | Compare


class _Budget:
    def __init__(self) -> None:
        self.conditions = 0


def parse_filter(
    raw: Any, known: Mapping[str, AttributeType], *, where: str = "AttributeFilter"
) -> Filter:
    """Parse a Kendra AttributeFilter against the declared attribute types in `known`."""
    return _parse_filter(raw, known, where, 1, _Budget())


def _parse_filter(
    raw: Any, known: Mapping[str, AttributeType], where: str, depth: int, budget: _Budget
) -> Filter:
    if depth > MAX_FILTER_DEPTH:
        raise ValidationFailed(f"{where}: filter nested deeper than {MAX_FILTER_DEPTH} levels")
    member, item = _exactly_one(raw, where, (*_COMBINATORS, *OPERATORS))
    path = f"{where}.{member}"
    if member == "NotFilter":
        return Not(_parse_filter(item, known, path, depth + 1, budget))
    if member in ("AndAllFilters", "OrAllFilters"):
        items = _list(item, path, max_items=MAX_FILTER_CONDITIONS)
        if not items:
            raise ValidationFailed(f"{path}: must not be empty")
        children = tuple(
            _parse_filter(child, known, f"{path}[{i}]", depth + 1, budget)
            for i, child in enumerate(items)
        )
        return And(children) if member == "AndAllFilters" else Or(children)
    budget.conditions += 1
    if budget.conditions > MAX_FILTER_CONDITIONS:
        raise ValidationFailed(f"{path}: filter has more than {MAX_FILTER_CONDITIONS} conditions")
    fields = _members(item, path, ("Key", "Value"), "Key and Value")
    if "Key" not in fields:
        raise ValidationFailed(f"{path}: Key is required")
    if "Value" not in fields:
        raise ValidationFailed(f"{path}: Value is required")
    key = _string(fields["Key"], f"{path}.Key", max_length=200, min_length=1)
    attribute = known.get(key)
    if attribute is None:
        raise ValidationFailed(f"{where}: unknown attribute {key!r}")
    value_type, value = parse_attribute_value(fields["Value"], f"{path}.Value")
    problem = _operand_problem(member, key, attribute, value_type)
    if problem is not None:
        raise ValidationFailed(f"{path}: {problem}")
    operand: FilterValue = tuple(value) if isinstance(value, list) else value
    return Compare(cast(Operator, member), key, attribute, operand)


# --- access control --------------------------------------------------------------------------

PrincipalType: TypeAlias = Literal["USER", "GROUP"]
Access: TypeAlias = Literal["ALLOW", "DENY"]


@dataclass(frozen=True)
class Principal:
    name: str
    type: PrincipalType
    access: Access


@dataclass(frozen=True)
class UserContext:
    user_id: str | None
    groups: frozenset[str]


def parse_acl(raw: Any, where: str) -> list[Principal]:
    """Parse a Kendra AccessControlList (None means no ACL)."""
    if raw is None:
        return []
    entries = _list(raw, where, max_items=MAX_ACL_ENTRIES)
    principals: list[Principal] = []
    for i, entry in enumerate(entries):
        path = f"{where}[{i}]"
        fields = _members(
            entry, path, ("Name", "Type", "Access", "DataSourceId"), "Name, Type, Access"
        )
        for required in ("Name", "Type", "Access"):
            if required not in fields:
                raise ValidationFailed(f"{path}: {required} is required")
        name = _string(fields["Name"], f"{path}.Name", max_length=_MAX_PRINCIPAL_NAME, min_length=1)
        kind = fields["Type"]
        if kind not in ("USER", "GROUP"):
            raise ValidationFailed(f"{path}.Type: must be USER or GROUP, got {kind!r}")
        access = fields["Access"]
        if access not in ("ALLOW", "DENY"):
            raise ValidationFailed(f"{path}.Access: must be ALLOW or DENY, got {access!r}")
        if "DataSourceId" in fields:
            _string(
                fields["DataSourceId"],
                f"{path}.DataSourceId",
                max_length=_MAX_DATA_SOURCE_ID,
                min_length=1,
            )
        principals.append(Principal(name, cast(PrincipalType, kind), cast(Access, access)))
    return principals


def parse_user_context(raw: Any) -> UserContext | None:
    """Parse a Kendra UserContext; None or an empty object means no user context."""
    where = "UserContext"
    if raw is None:
        return None
    fields = _members(
        raw, where, ("UserId", "Groups", "DataSourceGroups", "Token"), "UserId and/or Groups"
    )
    if "Token" in fields:
        raise ValidationFailed(
            f"{where}.Token: token-based user context is not supported; pass UserId and Groups"
        )
    if not fields:
        return None
    user_id: str | None = None
    if "UserId" in fields:
        user_id = _string(
            fields["UserId"], f"{where}.UserId", max_length=_MAX_USER_ID, min_length=1
        )
    groups: set[str] = set()
    for i, group in enumerate(
        _list(fields.get("Groups", []), f"{where}.Groups", max_items=_MAX_GROUPS)
    ):
        groups.add(
            _string(group, f"{where}.Groups[{i}]", max_length=_MAX_PRINCIPAL_NAME, min_length=1)
        )
    scoped = _list(
        fields.get("DataSourceGroups", []), f"{where}.DataSourceGroups", max_items=_MAX_GROUPS
    )
    for i, entry in enumerate(scoped):
        path = f"{where}.DataSourceGroups[{i}]"
        group_fields = _members(
            entry, path, ("GroupId", "DataSourceId"), "GroupId and DataSourceId"
        )
        for required in ("GroupId", "DataSourceId"):
            if required not in group_fields:
                raise ValidationFailed(f"{path}: {required} is required")
        _string(
            group_fields["DataSourceId"],
            f"{path}.DataSourceId",
            max_length=_MAX_DATA_SOURCE_ID,
            min_length=1,
        )
        # Principals carry no data source here, so a scoped group matches like a plain one.
        groups.add(
            _string(
                group_fields["GroupId"],
                f"{path}.GroupId",
                max_length=_MAX_PRINCIPAL_NAME,
                min_length=1,
            )
        )
    return UserContext(user_id=user_id, groups=frozenset(groups))


# --- column store ----------------------------------------------------------------------------

Ordinals: TypeAlias = npt.NDArray[np.int64]


class _Postings:
    """A set of ordinals that is also a dense numpy array, with O(1) add and discard."""

    __slots__ = ("_array", "_position", "_size")

    def __init__(self) -> None:
        self._array: Ordinals = np.empty(4, dtype=np.int64)
        self._position: dict[int, int] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, ordinal: int) -> None:
        if ordinal in self._position:
            return
        if self._size == len(self._array):
            self._array = np.concatenate([self._array, np.empty_like(self._array)])
        self._array[self._size] = ordinal
        self._position[ordinal] = self._size
        self._size += 1

    def discard(self, ordinal: int) -> None:
        at = self._position.pop(ordinal, None)
        if at is None:
            return
        last = self._size - 1
        if at != last:
            moved = int(self._array[last])
            self._array[at] = moved
            self._position[moved] = at
        self._size = last

    def array(self) -> Ordinals:
        return self._array[: self._size]


def _grown(array: npt.NDArray[Any], capacity: int, fill: Any) -> npt.NDArray[Any]:
    grown = np.full(capacity, fill, dtype=array.dtype)
    grown[: len(array)] = array
    return grown


class _Column(ABC):
    """One (attribute, type) pair over all ordinals; only live documents are ever indexed."""

    @abstractmethod
    def grow(self, capacity: int) -> None: ...

    @abstractmethod
    def add(self, ordinal: int, value: AttributeValue) -> None: ...

    @abstractmethod
    def remove(self, ordinal: int) -> None: ...

    @abstractmethod
    def evaluate(self, op: Operator, value: FilterValue, n: int) -> Mask:
        """A fresh bool[n] of the documents matching; never a view of column state."""

    @abstractmethod
    def counts(
        self, ordinals: Ordinals, n: int, top: int | None
    ) -> list[tuple[AttributeValue, int]]:
        """(value, number of `ordinals` having it) for the values present among them.

        With `top`, a column may return only the `top` first by count desc, value asc.
        """


class _StringColumn(_Column):
    def __init__(self, capacity: int) -> None:
        self._codes: npt.NDArray[np.int32] = np.full(capacity, -1, dtype=np.int32)
        self._code: dict[str, int] = {}
        self._values: list[str] = []

    def grow(self, capacity: int) -> None:
        self._codes = _grown(self._codes, capacity, -1)

    def add(self, ordinal: int, value: AttributeValue) -> None:
        text = cast(str, value)
        code = self._code.get(text)
        if code is None:
            code = self._code[text] = len(self._values)
            self._values.append(text)
        self._codes[ordinal] = code

    def remove(self, ordinal: int) -> None:
        self._codes[ordinal] = -1

    def evaluate(self, op: Operator, value: FilterValue, n: int) -> Mask:
        wanted = (value,) if isinstance(value, str) else cast(tuple[str, ...], value)
        codes = [self._code[v] for v in set(wanted) if v in self._code]
        if not codes:
            return np.zeros(n, dtype=bool)
        if len(codes) == 1:
            return np.equal(self._codes[:n], codes[0])
        return np.isin(self._codes[:n], codes)

    def counts(
        self, ordinals: Ordinals, n: int, top: int | None
    ) -> list[tuple[AttributeValue, int]]:
        codes = self._codes[ordinals]
        codes = codes[codes >= 0]
        if not codes.size:
            return []
        tally = np.bincount(codes)
        return [(self._values[int(c)], int(tally[c])) for c in np.flatnonzero(tally)]


class _StringListColumn(_Column):
    def __init__(self, capacity: int) -> None:
        self._postings: dict[str, _Postings] = {}
        self._members: dict[int, frozenset[str]] = {}
        # Number of distinct values per document, -1 where the attribute is missing.
        self._distinct: npt.NDArray[np.int32] = np.full(capacity, -1, dtype=np.int32)

    def grow(self, capacity: int) -> None:
        self._distinct = _grown(self._distinct, capacity, -1)

    def add(self, ordinal: int, value: AttributeValue) -> None:
        members = frozenset(cast(list[str], value))
        self._members[ordinal] = members
        self._distinct[ordinal] = len(members)
        for member in members:
            postings = self._postings.get(member)
            if postings is None:
                postings = self._postings[member] = _Postings()
            postings.add(ordinal)

    def remove(self, ordinal: int) -> None:
        for member in self._members.pop(ordinal, frozenset()):
            postings = self._postings[member]
            postings.discard(ordinal)
            if not postings:
                del self._postings[member]
        self._distinct[ordinal] = -1

    def evaluate(self, op: Operator, value: FilterValue, n: int) -> Mask:
        wanted = set(cast(tuple[str, ...], value))
        if op == "ContainsAny":
            mask = np.zeros(n, dtype=bool)
            for member in wanted:
                postings = self._postings.get(member)
                if postings is not None:
                    mask[postings.array()] = True
            return mask
        distinct = self._distinct[:n]
        if wanted:
            hits = np.zeros(n, dtype=np.int32)
            for member in wanted:
                postings = self._postings.get(member)
                if postings is None:
                    return np.zeros(n, dtype=bool)
                # A posting holds each ordinal once, so fancy-index += counts correctly.
                hits[postings.array()] += 1
            mask = np.equal(hits, len(wanted))
        else:
            mask = distinct >= 0
        if op == "EqualsTo":
            mask &= np.equal(distinct, len(wanted))
        return mask

    def counts(
        self, ordinals: Ordinals, n: int, top: int | None
    ) -> list[tuple[AttributeValue, int]]:
        # Walk whichever side is smaller: the distinct values or the selected documents.
        if len(self._postings) <= len(ordinals):
            selected = np.zeros(n, dtype=bool)
            selected[ordinals] = True
            found: list[tuple[AttributeValue, int]] = []
            for member, postings in self._postings.items():
                count = int(np.count_nonzero(selected[postings.array()]))
                if count:
                    found.append((member, count))
            return found
        tally: Counter[str] = Counter()
        for ordinal in ordinals.tolist():
            tally.update(self._members.get(ordinal, ()))
        return list(tally.items())


class _NumberColumn(_Column):
    """LONG values, or DATE values as microseconds since the epoch (exact, unlike float seconds)."""

    _COMPARE: Final[dict[str, Callable[[Any, Any], Mask]]] = {
        "EqualsTo": np.equal,
        "GreaterThan": np.greater,
        "GreaterThanOrEquals": np.greater_equal,
        "LessThan": np.less,
        "LessThanOrEquals": np.less_equal,
    }

    def __init__(self, capacity: int, dates: bool) -> None:
        self._dates = dates
        self._values: Ordinals = np.zeros(capacity, dtype=np.int64)
        self._present: Mask = np.zeros(capacity, dtype=bool)

    def grow(self, capacity: int) -> None:
        self._values = _grown(self._values, capacity, 0)
        self._present = _grown(self._present, capacity, False)

    def _number(self, value: AttributeValue | FilterValue) -> int:
        return _to_micros(cast(datetime, value)) if self._dates else cast(int, value)

    def add(self, ordinal: int, value: AttributeValue) -> None:
        self._values[ordinal] = self._number(value)
        self._present[ordinal] = True

    def remove(self, ordinal: int) -> None:
        self._present[ordinal] = False

    def evaluate(self, op: Operator, value: FilterValue, n: int) -> Mask:
        compare = self._COMPARE[op]
        return self._present[:n] & compare(self._values[:n], np.int64(self._number(value)))

    def counts(
        self, ordinals: Ordinals, n: int, top: int | None
    ) -> list[tuple[AttributeValue, int]]:
        values = self._values[ordinals][self._present[ordinals]]
        unique, tally = np.unique(values, return_counts=True)
        if top is not None and len(unique) > top:
            # Cut before converting: dates can have as many distinct values as documents.
            order = np.lexsort((unique, -tally))[:top]
            unique, tally = unique[order], tally[order]
        convert: Callable[[int], AttributeValue] = _from_micros if self._dates else int
        return [(convert(int(v)), int(c)) for v, c in zip(unique, tally, strict=True)]


def _new_column(kind: AttributeType, capacity: int) -> _Column:
    if kind is AttributeType.STRING:
        return _StringColumn(capacity)
    if kind is AttributeType.STRING_LIST:
        return _StringListColumn(capacity)
    return _NumberColumn(capacity, dates=kind is AttributeType.DATE)


def _checked_attributes(
    doc_id: str, attributes: Mapping[str, tuple[AttributeType, AttributeValue]]
) -> dict[str, tuple[AttributeType, AttributeValue]]:
    """A private copy of `attributes`, so later changes by the caller cannot desync the index."""
    checked: dict[str, tuple[AttributeType, AttributeValue]] = {}
    for key, (kind, value) in attributes.items():
        if kind not in _MEMBER:
            raise ValidationFailed(
                f"document {doc_id!r}: attribute {key!r} has unknown type {kind!r}"
            )
        kind = AttributeType(kind)
        if _type_of(value) is not kind:
            raise ValidationFailed(
                f"document {doc_id!r}: attribute {key!r} is {kind}, got value {value!r}"
            )
        if isinstance(value, tuple | list):
            value = list(value)
        elif isinstance(value, datetime):
            value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        checked[key] = (kind, value)
    return checked


def _copy(value: AttributeValue) -> AttributeValue:
    return list(value) if isinstance(value, list) else value


def _facet_order(item: tuple[AttributeValue, int]) -> tuple[int, int, Any]:
    value, count = item
    rank = 0 if isinstance(value, str) else 1 if isinstance(value, int) else 2
    return (-count, rank, value)


class DocumentTable:
    """Documents by dense ordinal, with their attributes in columns and their ACLs inverted."""

    def __init__(self) -> None:
        self._capacity = 0
        self._size = 0
        self._live = 0
        self._alive: Mask = np.zeros(0, dtype=bool)
        self._has_acl: Mask = np.zeros(0, dtype=bool)
        self._ids: list[str | None] = []
        self._ordinals: dict[str, int] = {}
        self._docs: list[dict[str, tuple[AttributeType, AttributeValue]] | None] = []
        self._acls: list[tuple[Principal, ...]] = []
        self._columns: dict[tuple[str, AttributeType], _Column] = {}
        self._principals: dict[tuple[Access, PrincipalType], dict[str, _Postings]] = {
            (access, kind): {} for access in ("ALLOW", "DENY") for kind in ("USER", "GROUP")
        }

    # documents

    def put(
        self,
        doc_id: str,
        attributes: Mapping[str, tuple[AttributeType, AttributeValue]],
        acl: Sequence[Principal],
    ) -> int:
        """Add or replace a document; a known doc_id keeps its ordinal."""
        if not isinstance(doc_id, str) or not doc_id:
            raise ValidationFailed("document id must be a non-empty string")
        checked = _checked_attributes(doc_id, attributes)
        principals = tuple(acl)
        for principal in principals:
            if not isinstance(principal, Principal):
                raise ValidationFailed(
                    f"document {doc_id!r}: ACL entry {principal!r} is not a Principal"
                )
        ordinal = self._ordinals.get(doc_id)
        if ordinal is None:
            ordinal = self._allocate(doc_id)
        else:
            self._unindex(ordinal)
        self._docs[ordinal] = checked
        self._acls[ordinal] = principals
        for key, (kind, value) in checked.items():
            column = self._columns.get((key, kind))
            if column is None:
                column = self._columns[(key, kind)] = _new_column(kind, self._capacity)
            column.add(ordinal, value)
        for principal in principals:
            by_name = self._principals[(principal.access, principal.type)]
            postings = by_name.get(principal.name)
            if postings is None:
                postings = by_name[principal.name] = _Postings()
            postings.add(ordinal)
        self._has_acl[ordinal] = bool(principals)
        return ordinal

    def delete(self, doc_id: str) -> int | None:
        """Remove a document; returns its ordinal, which is never handed out again."""
        ordinal = self._ordinals.pop(doc_id, None)
        if ordinal is None:
            return None
        self._unindex(ordinal)
        self._alive[ordinal] = False
        self._ids[ordinal] = None
        self._docs[ordinal] = None
        self._acls[ordinal] = ()
        self._live -= 1
        return ordinal

    def _allocate(self, doc_id: str) -> int:
        if self._size == self._capacity:
            self._capacity = max(16, self._capacity * 2)
            self._alive = _grown(self._alive, self._capacity, False)
            self._has_acl = _grown(self._has_acl, self._capacity, False)
            for column in self._columns.values():
                column.grow(self._capacity)
        ordinal = self._size
        self._size += 1
        self._live += 1
        self._alive[ordinal] = True
        self._ids.append(doc_id)
        self._ordinals[doc_id] = ordinal
        self._docs.append(None)
        self._acls.append(())
        return ordinal

    def _unindex(self, ordinal: int) -> None:
        for key, (kind, _) in (self._docs[ordinal] or {}).items():
            self._columns[(key, kind)].remove(ordinal)
        for principal in self._acls[ordinal]:
            by_name = self._principals[(principal.access, principal.type)]
            postings = by_name[principal.name]
            postings.discard(ordinal)
            if not postings:
                del by_name[principal.name]
        self._has_acl[ordinal] = False

    def _live_ordinal(self, ordinal: int) -> int:
        if not 0 <= ordinal < self._size or not self._alive[ordinal]:
            raise KeyError(ordinal)
        return ordinal

    def ordinal(self, doc_id: str) -> int | None:
        return self._ordinals.get(doc_id)

    def doc_id(self, ordinal: int) -> str:
        """The id of a live document; KeyError for a deleted or unallocated ordinal."""
        return cast(str, self._ids[self._live_ordinal(ordinal)])

    def __len__(self) -> int:
        return self._live

    @property
    def capacity(self) -> int:
        """Ordinals allocated so far: the length of every mask."""
        return self._size

    def alive(self) -> Mask:
        return self._alive[: self._size].copy()

    def value(self, ordinal: int, key: str) -> AttributeValue | None:
        """One attribute of a document; None when it is missing or the document is not live."""
        if not 0 <= ordinal < self._size:
            return None
        doc = self._docs[ordinal]
        entry = doc.get(key) if doc is not None else None
        return None if entry is None else _copy(entry[1])

    def attributes(self, ordinal: int) -> dict[str, tuple[AttributeType, AttributeValue]]:
        """A copy of a live document's attributes; KeyError for a deleted or unallocated ordinal."""
        doc = cast(
            dict[str, tuple[AttributeType, AttributeValue]], self._docs[self._live_ordinal(ordinal)]
        )
        return {key: (kind, _copy(value)) for key, (kind, value) in doc.items()}

    def acl(self, ordinal: int) -> list[Principal]:
        """A live document's access control list; KeyError for a deleted or unallocated ordinal."""
        return list(self._acls[self._live_ordinal(ordinal)])

    # evaluation

    def mask(self, flt: Filter | None) -> Mask:
        """bool[capacity]: the live documents matching `flt` (all live ones for None)."""
        alive = self._alive[: self._size]
        if flt is None:
            return alive.copy()
        return self._evaluate(flt, alive) & alive

    def _evaluate(self, flt: Filter, alive: Mask) -> Mask:
        n = self._size
        if isinstance(flt, Compare):
            column = self._columns.get((flt.key, flt.type))
            if column is None:
                return np.zeros(n, dtype=bool)
            return column.evaluate(flt.op, flt.value, n)
        if isinstance(flt, Not):
            return alive & ~self._evaluate(flt.child, alive)
        if isinstance(flt, And):
            result = alive.copy()
            for child in flt.children:
                result &= self._evaluate(child, alive)
            return result
        if isinstance(flt, Or):
            result = np.zeros(n, dtype=bool)
            for child in flt.children:
                result |= self._evaluate(child, alive)
            return result
        raise ValidationFailed(f"not a filter: {flt!r}")

    def visible(self, user: UserContext | None, documents_without_acl_visible: bool) -> Mask:
        """bool[capacity]: the live documents `user` may see."""
        n = self._size
        alive = self._alive[:n]
        if documents_without_acl_visible:
            result = alive & ~self._has_acl[:n]
        else:
            result = np.zeros(n, dtype=bool)
        if user is None:
            return result
        allowed = self._matching(user, "ALLOW")
        if not allowed.any():
            return result
        denied = self._matching(user, "DENY")
        return result | (allowed & ~denied & alive)

    def _matching(self, user: UserContext, access: Access) -> Mask:
        mask = np.zeros(self._size, dtype=bool)
        if user.user_id is not None:
            postings = self._principals[(access, "USER")].get(user.user_id)
            if postings is not None:
                mask[postings.array()] = True
        groups = self._principals[(access, "GROUP")]
        for group in user.groups:
            postings = groups.get(group)
            if postings is not None:
                mask[postings.array()] = True
        return mask

    def facets(
        self, ordinals: Iterable[int], keys: Sequence[str], *, max_values: int = 10
    ) -> dict[str, list[tuple[AttributeValue, int]]]:
        """Per key, the most frequent values among the live `ordinals` with their document counts.

        Each element of a STRING_LIST counts once per document; ties break on the value
        ascending. `ordinals` may also be a bool mask of length capacity.
        """
        if max_values < 0:
            raise ValidationFailed(f"max_values must not be negative, got {max_values}")
        selected = self._selected(ordinals)
        result: dict[str, list[tuple[AttributeValue, int]]] = {}
        for key in keys:
            tally: dict[AttributeValue, int] = {}
            columns = [c for t in AttributeType if (c := self._columns.get((key, t))) is not None]
            # Counts of one value may come from two columns only if its type varies across documents.
            top = max_values if len(columns) == 1 else None
            for column in columns:
                for value, count in column.counts(selected, self._size, top):
                    tally[value] = tally.get(value, 0) + count
            result[key] = sorted(tally.items(), key=_facet_order)[:max_values]
        return result

    def _selected(self, ordinals: Iterable[int]) -> Ordinals:
        """Sorted, distinct, live ordinals; anything else is ignored."""
        n = self._size
        if isinstance(ordinals, np.ndarray) and ordinals.dtype == np.bool_:
            chosen = np.zeros(n, dtype=bool)
            chosen[: min(n, len(ordinals))] = ordinals[:n]
        else:
            if isinstance(ordinals, np.ndarray):
                array = ordinals.astype(np.int64).ravel()
            else:
                array = np.fromiter((int(o) for o in ordinals), dtype=np.int64)
            chosen = np.zeros(n, dtype=bool)
            # A bool scatter dedupes and sorts in O(capacity), far cheaper than np.unique.
            chosen[array[(array >= 0) & (array < n)]] = True
        return np.flatnonzero(chosen & self._alive[:n]).astype(np.int64)
