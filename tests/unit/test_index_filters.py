"""Kendra attribute filters and ACLs over the indexer's column store, checked against a brute-force reference."""

from __future__ import annotations

import operator
import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest

from runtime.errors import ValidationFailed
from services.indexer.domain.filters import (
    MAX_FILTER_CONDITIONS,
    MAX_FILTER_DEPTH,
    RESERVED_ATTRIBUTES,
    And,
    AttributeType,
    AttributeValue,
    Compare,
    DocumentTable,
    Filter,
    Not,
    Or,
    Principal,
    UserContext,
    attribute_to_json,
    parse_acl,
    parse_attribute_value,
    parse_filter,
    parse_user_context,
)

S = AttributeType.STRING
SL = AttributeType.STRING_LIST
L = AttributeType.LONG
D = AttributeType.DATE

KNOWN: dict[str, AttributeType] = {
    **RESERVED_ATTRIBUTES,
    "color": S,
    "tags": SL,
    "size": L,
    "when": D,
    "never_set": S,
}

Attributes = dict[str, tuple[AttributeType, AttributeValue]]


def at(day: int) -> datetime:
    return datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=day)


def invalid(call: Callable[[], object]) -> str:
    with pytest.raises(ValidationFailed) as caught:
        call()
    return caught.value.message


def cond(op: str, key: str, value: Mapping[str, Any]) -> dict[str, Any]:
    return {op: {"Key": key, "Value": dict(value)}}


def ids(table: DocumentTable, mask: np.ndarray) -> set[str]:
    return {table.doc_id(int(o)) for o in np.flatnonzero(mask)}


# --- attribute values ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"StringValue": "pdf"}, (S, "pdf")),
        ({"StringValue": ""}, (S, "")),
        ({"StringListValue": ["a", "b", "a"]}, (SL, ["a", "b", "a"])),
        ({"StringListValue": []}, (SL, [])),
        ({"LongValue": -42}, (L, -42)),
        ({"LongValue": 2**63 - 1}, (L, 2**63 - 1)),
        ({"DateValue": 1704067200}, (D, at(0))),
        ({"DateValue": 1704067200.5}, (D, at(0) + timedelta(milliseconds=500))),
        ({"DateValue": -86400}, (D, datetime(1969, 12, 31, tzinfo=UTC))),
        ({"DateValue": "2024-01-01T00:00:00Z"}, (D, at(0))),
        ({"DateValue": "2024-01-01T02:00:00+02:00"}, (D, at(0))),
        ({"DateValue": "2024-01-01"}, (D, at(0))),
        ({"DateValue": "2024-01-01T00:00:00"}, (D, at(0))),
        ({"StringValue": "x", "LongValue": None}, (S, "x")),
    ],
)
def test_parse_attribute_value(raw: dict[str, Any], expected: tuple[AttributeType, Any]) -> None:
    kind, value = parse_attribute_value(raw, "Attributes[0].Value")
    assert (kind, value) == expected
    if isinstance(value, datetime):
        assert value.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (
            {},
            "Value: expected exactly one of StringValue, StringListValue, LongValue, DateValue, got none",
        ),
        ({"StringValue": "a", "LongValue": 1}, "Value: expected exactly one of"),
        ({"StringValue": "a", "LongValue": 1}, "got StringValue, LongValue"),
        ({"BoolValue": True}, "Value: unknown member 'BoolValue'"),
        ("text", "Value: must be an object"),
        ({"StringValue": 5}, "Value.StringValue: must be a string"),
        ({"StringValue": "x" * 2049}, "Value.StringValue: longer than 2048 characters"),
        ({"StringListValue": "a"}, "Value.StringListValue: must be a list"),
        ({"StringListValue": ["a", 1]}, "Value.StringListValue[1]: must be a string"),
        ({"StringListValue": ["a"] * 1001}, "Value.StringListValue: more than 1000 items"),
        ({"LongValue": 1.5}, "Value.LongValue: must be an integer"),
        ({"LongValue": True}, "Value.LongValue: must be an integer"),
        ({"LongValue": "1"}, "Value.LongValue: must be an integer"),
        ({"LongValue": 2**63}, "Value.LongValue: out of the 64-bit integer range"),
        ({"DateValue": "yesterday"}, "Value.DateValue: not an ISO-8601 date: 'yesterday'"),
        ({"DateValue": float("nan")}, "Value.DateValue: not a finite number"),
        ({"DateValue": 1e20}, "Value.DateValue: 1e+20 epoch seconds is out of range"),
        ({"DateValue": True}, "Value.DateValue: must be epoch seconds or an ISO-8601 string"),
        ({"DateValue": [2024]}, "Value.DateValue: must be epoch seconds or an ISO-8601 string"),
    ],
)
def test_parse_attribute_value_rejects(raw: Any, fragment: str) -> None:
    message = invalid(lambda: parse_attribute_value(raw, "Attributes[3].Value"))
    assert message.startswith("Attributes[3].Value")
    assert fragment in message


@pytest.mark.parametrize(
    ("kind", "value", "json"),
    [
        (S, "a", {"StringValue": "a"}),
        (SL, ["a", "b"], {"StringListValue": ["a", "b"]}),
        (L, 7, {"LongValue": 7}),
        (D, at(0) + timedelta(microseconds=250_000), {"DateValue": 1704067200.25}),
    ],
)
def test_attribute_to_json_round_trips(
    kind: AttributeType, value: AttributeValue, json: dict[str, Any]
) -> None:
    assert attribute_to_json(kind, value) == json
    assert parse_attribute_value(json, "v") == (kind, value)


def test_attribute_to_json_rejects_mismatched_values() -> None:
    assert "DATE value must be a datetime" in invalid(lambda: attribute_to_json(D, 5))
    assert "STRING_LIST value must be a list" in invalid(lambda: attribute_to_json(SL, "a"))


# --- filter parsing --------------------------------------------------------------------------


def test_parse_every_operator_and_type() -> None:
    cases: list[tuple[dict[str, Any], Compare]] = [
        (cond("EqualsTo", "color", {"StringValue": "red"}), Compare("EqualsTo", "color", S, "red")),
        (
            cond("EqualsTo", "tags", {"StringListValue": ["a", "b"]}),
            Compare("EqualsTo", "tags", SL, ("a", "b")),
        ),
        (cond("EqualsTo", "size", {"LongValue": 3}), Compare("EqualsTo", "size", L, 3)),
        (
            cond("EqualsTo", "when", {"DateValue": 1704067200}),
            Compare("EqualsTo", "when", D, at(0)),
        ),
        (
            cond("ContainsAll", "tags", {"StringListValue": ["a"]}),
            Compare("ContainsAll", "tags", SL, ("a",)),
        ),
        (
            cond("ContainsAny", "_authors", {"StringListValue": ["ann", "bob"]}),
            Compare("ContainsAny", "_authors", SL, ("ann", "bob")),
        ),
        (
            cond("ContainsAny", "color", {"StringListValue": ["red", "blue"]}),
            Compare("ContainsAny", "color", S, ("red", "blue")),
        ),
        (cond("GreaterThan", "size", {"LongValue": 1}), Compare("GreaterThan", "size", L, 1)),
        (
            cond("GreaterThanOrEquals", "_view_count", {"LongValue": 0}),
            Compare("GreaterThanOrEquals", "_view_count", L, 0),
        ),
        (
            cond("LessThan", "_created_at", {"DateValue": "2024-01-02T00:00:00Z"}),
            Compare("LessThan", "_created_at", D, at(1)),
        ),
        (
            cond("LessThanOrEquals", "when", {"DateValue": 1704153600.0}),
            Compare("LessThanOrEquals", "when", D, at(1)),
        ),
    ]
    for raw, expected in cases:
        assert parse_filter(raw, KNOWN) == expected


def test_parse_combinators() -> None:
    raw = {
        "AndAllFilters": [
            cond("EqualsTo", "color", {"StringValue": "red"}),
            {
                "OrAllFilters": [
                    cond("GreaterThan", "size", {"LongValue": 2}),
                    {"NotFilter": cond("ContainsAny", "tags", {"StringListValue": ["x"]})},
                ]
            },
        ]
    }
    assert parse_filter(raw, KNOWN) == And(
        (
            Compare("EqualsTo", "color", S, "red"),
            Or(
                (
                    Compare("GreaterThan", "size", L, 2),
                    Not(Compare("ContainsAny", "tags", SL, ("x",))),
                )
            ),
        )
    )


def nested_not(levels: int) -> dict[str, Any]:
    raw: dict[str, Any] = cond("EqualsTo", "color", {"StringValue": "red"})
    for _ in range(levels):
        raw = {"NotFilter": raw}
    return raw


def test_nesting_limit() -> None:
    parse_filter(nested_not(MAX_FILTER_DEPTH - 1), KNOWN)
    message = invalid(lambda: parse_filter(nested_not(MAX_FILTER_DEPTH), KNOWN))
    assert message.startswith("AttributeFilter" + ".NotFilter" * MAX_FILTER_DEPTH + ": ")
    assert "nested deeper than 10 levels" in message


def test_condition_limit_counts_leaves_across_the_tree() -> None:
    leaf = cond("EqualsTo", "color", {"StringValue": "red"})
    parse_filter({"OrAllFilters": [{"AndAllFilters": [leaf] * 100}] * 2}, KNOWN)
    too_many = {"OrAllFilters": [{"AndAllFilters": [leaf] * 100}] * 2 + [leaf]}
    message = invalid(lambda: parse_filter(too_many, KNOWN))
    assert message == (
        f"AttributeFilter.OrAllFilters[2].EqualsTo: filter has more than {MAX_FILTER_CONDITIONS} conditions"
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, "AttributeFilter: must be an object with exactly one of AndAllFilters"),
        ([], "AttributeFilter: must be an object"),
        ({}, "AttributeFilter: expected exactly one of AndAllFilters, OrAllFilters, NotFilter"),
        (
            {**cond("EqualsTo", "color", {"StringValue": "r"}), "NotFilter": {}},
            "AttributeFilter: expected exactly one of",
        ),
        ({"Equals": {}}, "AttributeFilter: unknown member 'Equals'"),
        ({"AndAllFilters": []}, "AttributeFilter.AndAllFilters: must not be empty"),
        ({"OrAllFilters": []}, "AttributeFilter.OrAllFilters: must not be empty"),
        ({"OrAllFilters": {}}, "AttributeFilter.OrAllFilters: must be a list"),
        ({"NotFilter": {}}, "AttributeFilter.NotFilter: expected exactly one of"),
        ({"EqualsTo": {"Key": "color"}}, "AttributeFilter.EqualsTo: Value is required"),
        (
            {"EqualsTo": {"Value": {"StringValue": "r"}}},
            "AttributeFilter.EqualsTo: Key is required",
        ),
        (
            {"EqualsTo": {"Key": "color", "Value": {"StringValue": "r"}, "Op": 1}},
            "AttributeFilter.EqualsTo: unknown member 'Op'",
        ),
        (
            {"EqualsTo": {"Key": 5, "Value": {"StringValue": "r"}}},
            "AttributeFilter.EqualsTo.Key: must be a string",
        ),
        (
            {
                "AndAllFilters": [
                    cond("EqualsTo", "color", {"StringValue": "r"}),
                    cond("EqualsTo", "colour", {"StringValue": "r"}),
                ]
            },
            "AttributeFilter.AndAllFilters[1]: unknown attribute 'colour'",
        ),
        (
            {"OrAllFilters": [cond("EqualsTo", "_view_count", {"StringValue": "5"})]},
            "AttributeFilter.OrAllFilters[0].EqualsTo: attribute '_view_count' is LONG, got StringValue",
        ),
        (
            cond("EqualsTo", "tags", {"StringValue": "a"}),
            "AttributeFilter.EqualsTo: attribute 'tags' is STRING_LIST, got StringValue",
        ),
        (
            cond("EqualsTo", "when", {"LongValue": 5}),
            "AttributeFilter.EqualsTo: attribute 'when' is DATE, got LongValue",
        ),
        (
            cond("EqualsTo", "size", {"LongValue": "5"}),
            "AttributeFilter.EqualsTo.Value.LongValue: must be an integer",
        ),
        (
            cond("ContainsAll", "color", {"StringListValue": ["a"]}),
            "AttributeFilter.ContainsAll: ContainsAll needs a STRING_LIST attribute, 'color' is STRING",
        ),
        (
            cond("ContainsAll", "tags", {"StringValue": "a"}),
            "AttributeFilter.ContainsAll: ContainsAll needs a StringListValue, got StringValue",
        ),
        (
            cond("ContainsAny", "size", {"StringListValue": ["1"]}),
            "AttributeFilter.ContainsAny: ContainsAny needs a STRING_LIST or STRING attribute, 'size' is LONG",
        ),
        (
            cond("ContainsAny", "color", {"StringValue": "red"}),
            "AttributeFilter.ContainsAny: ContainsAny needs a StringListValue, got StringValue",
        ),
        (
            cond("GreaterThan", "color", {"StringValue": "a"}),
            "AttributeFilter.GreaterThan: GreaterThan needs a LONG or DATE attribute, 'color' is STRING",
        ),
        (
            cond("LessThanOrEquals", "tags", {"StringListValue": ["a"]}),
            "AttributeFilter.LessThanOrEquals: LessThanOrEquals needs a LONG or DATE attribute, 'tags' is STRING_LIST",
        ),
        (
            cond("GreaterThanOrEquals", "size", {"DateValue": 5}),
            "AttributeFilter.GreaterThanOrEquals: attribute 'size' is LONG, got DateValue",
        ),
        (
            cond("LessThan", "when", {"LongValue": 5}),
            "AttributeFilter.LessThan: attribute 'when' is DATE, got LongValue",
        ),
        (
            {"NotFilter": {"OrAllFilters": [cond("EqualsTo", "when", {"DateValue": "soon"})]}},
            "AttributeFilter.NotFilter.OrAllFilters[0].EqualsTo.Value.DateValue: not an ISO-8601 date",
        ),
    ],
)
def test_parse_filter_rejects(raw: Any, expected: str) -> None:
    assert expected in invalid(lambda: parse_filter(raw, KNOWN))


def test_parse_filter_uses_the_given_path() -> None:
    message = invalid(
        lambda: parse_filter(
            cond("EqualsTo", "nope", {"StringValue": "a"}), KNOWN, where="Query.AttributeFilter"
        )
    )
    assert message == "Query.AttributeFilter: unknown attribute 'nope'"


def test_compare_validates_direct_construction() -> None:
    assert Compare("ContainsAll", "tags", SL, ["a", "b"]).value == ("a", "b")  # type: ignore[arg-type]
    assert "attribute 'size' is LONG, got StringValue" in invalid(
        lambda: Compare("EqualsTo", "size", L, "3")
    )
    assert "unsupported operand" in invalid(lambda: Compare("EqualsTo", "size", L, True))
    assert "unknown operator 'Like'" in invalid(
        lambda: Compare("Like", "color", S, "r")  # type: ignore[arg-type]
    )


# --- access control parsing ------------------------------------------------------------------


def test_parse_acl() -> None:
    raw = [
        {"Name": "alice", "Type": "USER", "Access": "ALLOW"},
        {"Name": "eng", "Type": "GROUP", "Access": "DENY", "DataSourceId": "ds1"},
    ]
    assert parse_acl(raw, "Documents[0].AccessControlList") == [
        Principal("alice", "USER", "ALLOW"),
        Principal("eng", "GROUP", "DENY"),
    ]
    assert parse_acl(None, "acl") == []
    assert parse_acl([], "acl") == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"Name": "a"}, "acl: must be a list"),
        ([{"Name": "a"}] * 1001, "acl: more than 1000 items"),
        (["a"], "acl[0]: must be an object with Name, Type, Access"),
        ([{"Type": "USER", "Access": "ALLOW"}], "acl[0]: Name is required"),
        ([{"Name": "a", "Access": "ALLOW"}], "acl[0]: Type is required"),
        ([{"Name": "a", "Type": "USER"}], "acl[0]: Access is required"),
        ([{"Name": "", "Type": "USER", "Access": "ALLOW"}], "acl[0].Name: must not be empty"),
        (
            [{"Name": "a", "Type": "ROLE", "Access": "ALLOW"}],
            "acl[0].Type: must be USER or GROUP, got 'ROLE'",
        ),
        (
            [{"Name": "a", "Type": "USER", "Access": "MAYBE"}],
            "acl[0].Access: must be ALLOW or DENY, got 'MAYBE'",
        ),
        (
            [{"Name": "a", "Type": "USER", "Access": "ALLOW", "Role": "x"}],
            "acl[0]: unknown member 'Role'",
        ),
        (
            [{"Name": "a", "Type": "USER", "Access": "ALLOW", "DataSourceId": 3}],
            "acl[0].DataSourceId: must be a string",
        ),
    ],
)
def test_parse_acl_rejects(raw: Any, expected: str) -> None:
    assert invalid(lambda: parse_acl(raw, "acl")) == expected


def test_parse_user_context() -> None:
    assert parse_user_context(None) is None
    assert parse_user_context({}) is None
    assert parse_user_context({"UserId": "alice"}) == UserContext("alice", frozenset())
    assert parse_user_context(
        {
            "UserId": "alice",
            "Groups": ["eng", "ops"],
            "DataSourceGroups": [{"GroupId": "sales", "DataSourceId": "ds1"}],
        }
    ) == UserContext("alice", frozenset({"eng", "ops", "sales"}))
    assert parse_user_context({"Groups": ["eng"]}) == UserContext(None, frozenset({"eng"}))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"Token": "eyJ..."}, "UserContext.Token: token-based user context is not supported"),
        ({"UserId": "a", "Token": "eyJ..."}, "not supported"),
        ("alice", "UserContext: must be an object"),
        ({"User": "a"}, "UserContext: unknown member 'User'"),
        ({"UserId": 5}, "UserContext.UserId: must be a string"),
        ({"UserId": ""}, "UserContext.UserId: must not be empty"),
        ({"Groups": "eng"}, "UserContext.Groups: must be a list"),
        ({"Groups": ["eng", 1]}, "UserContext.Groups[1]: must be a string"),
        (
            {"DataSourceGroups": [{"GroupId": "g"}]},
            "UserContext.DataSourceGroups[0]: DataSourceId is required",
        ),
        (
            {"DataSourceGroups": [{"DataSourceId": "d"}]},
            "UserContext.DataSourceGroups[0]: GroupId is required",
        ),
    ],
)
def test_parse_user_context_rejects(raw: Any, expected: str) -> None:
    assert expected in invalid(lambda: parse_user_context(raw))


# --- the table -------------------------------------------------------------------------------


def small_table() -> DocumentTable:
    table = DocumentTable()
    table.put(
        "a", {"color": (S, "red"), "tags": (SL, ["x", "y"]), "size": (L, 1), "when": (D, at(0))}, []
    )
    table.put("b", {"color": (S, "blue"), "tags": (SL, ["y"]), "size": (L, 5)}, [])
    table.put("c", {"tags": (SL, ["y", "x", "x"]), "when": (D, at(10))}, [])
    table.put("d", {}, [])
    return table


def test_ordinals_and_lookups() -> None:
    table = small_table()
    assert [table.ordinal(d) for d in "abcd"] == [0, 1, 2, 3]
    assert table.ordinal("zz") is None
    assert table.doc_id(2) == "c"
    assert len(table) == 4
    assert table.capacity == 4
    assert table.value(0, "size") == 1
    assert table.value(0, "missing") is None
    assert table.value(99, "size") is None
    assert table.attributes(1) == {"color": (S, "blue"), "tags": (SL, ["y"]), "size": (L, 5)}
    assert table.acl(0) == []
    with pytest.raises(KeyError):
        table.doc_id(4)
    with pytest.raises(KeyError):
        table.attributes(-1)


def test_stored_values_are_private_copies() -> None:
    table = DocumentTable()
    tags = ["x"]
    table.put("a", {"tags": (SL, tags)}, [])
    tags.append("y")
    assert table.value(0, "tags") == ["x"]
    returned = table.value(0, "tags")
    assert isinstance(returned, list)
    returned.append("z")
    assert table.attributes(0)["tags"] == (SL, ["x"])
    assert ids(table, table.mask(Compare("ContainsAny", "tags", SL, ("y",)))) == set()


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (None, {"a", "b", "c", "d"}),
        (Compare("EqualsTo", "color", S, "red"), {"a"}),
        (Compare("EqualsTo", "color", S, "green"), set()),
        (Compare("ContainsAny", "color", S, ("red", "blue", "pink")), {"a", "b"}),
        (Compare("EqualsTo", "tags", SL, ("y", "x")), {"a", "c"}),
        (Compare("EqualsTo", "tags", SL, ("y",)), {"b"}),
        (Compare("ContainsAll", "tags", SL, ("x", "y")), {"a", "c"}),
        (Compare("ContainsAll", "tags", SL, ("x", "q")), set()),
        (Compare("ContainsAll", "tags", SL, ()), {"a", "b", "c"}),
        (Compare("ContainsAny", "tags", SL, ("x", "q")), {"a", "c"}),
        (Compare("ContainsAny", "tags", SL, ()), set()),
        (Compare("GreaterThan", "size", L, 1), {"b"}),
        (Compare("GreaterThanOrEquals", "size", L, 1), {"a", "b"}),
        (Compare("LessThan", "size", L, 5), {"a"}),
        (Compare("LessThanOrEquals", "size", L, 5), {"a", "b"}),
        (Compare("EqualsTo", "size", L, 5), {"b"}),
        (Compare("LessThan", "when", D, at(10)), {"a"}),
        (Compare("GreaterThanOrEquals", "when", D, at(0)), {"a", "c"}),
        (Compare("EqualsTo", "when", D, at(10)), {"c"}),
        (Compare("EqualsTo", "never_set", S, "x"), set()),
        (Not(Compare("GreaterThan", "size", L, 1)), {"a", "c", "d"}),
        (
            And(
                (
                    Compare("ContainsAny", "tags", SL, ("y",)),
                    Not(Compare("EqualsTo", "color", S, "red")),
                )
            ),
            {"b", "c"},
        ),
        (
            Or((Compare("EqualsTo", "color", S, "red"), Compare("EqualsTo", "when", D, at(10)))),
            {"a", "c"},
        ),
        (And(()), {"a", "b", "c", "d"}),
        (Or(()), set()),
    ],
)
def test_mask(flt: Filter | None, expected: set[str]) -> None:
    table = small_table()
    mask = table.mask(flt)
    assert mask.dtype == np.bool_
    assert mask.shape == (table.capacity,)
    assert ids(table, mask) == expected


def test_reput_replaces_attributes_and_keeps_the_ordinal() -> None:
    table = small_table()
    red = Compare("EqualsTo", "color", S, "red")
    assert table.put("a", {"color": (S, "blue"), "tags": (SL, ["z"])}, []) == 0
    assert ids(table, table.mask(red)) == set()
    assert ids(table, table.mask(Compare("EqualsTo", "color", S, "blue"))) == {"a", "b"}
    # Attributes the new version lacks are gone, not kept from the old one.
    assert ids(table, table.mask(Compare("EqualsTo", "size", L, 1))) == set()
    assert ids(table, table.mask(Compare("ContainsAny", "tags", SL, ("x",)))) == {"c"}
    assert table.value(0, "when") is None
    assert len(table) == 4
    assert table.capacity == 4


def test_deleted_documents_never_match() -> None:
    table = small_table()
    assert table.delete("a") == 0
    assert table.delete("a") is None
    assert table.delete("nope") is None
    assert len(table) == 3
    assert table.capacity == 4
    assert table.ordinal("a") is None
    assert table.value(0, "color") is None
    with pytest.raises(KeyError):
        table.doc_id(0)
    assert table.alive().tolist() == [False, True, True, True]
    never = Compare("EqualsTo", "color", S, "nobody")
    for flt in (
        None,
        Not(never),
        Not(Not(Not(never))),
        Or((Not(never), Compare("EqualsTo", "color", S, "red"))),
        Compare("ContainsAll", "tags", SL, ()),
    ):
        assert not table.mask(flt)[0]
    assert not table.visible(None, True)[0]
    assert not table.visible(UserContext("u", frozenset()), True)[0]
    # A re-put after delete is a new document with a fresh ordinal.
    assert table.put("a", {"color": (S, "red")}, []) == 4
    assert table.capacity == 5
    assert ids(table, table.mask(Compare("EqualsTo", "color", S, "red"))) == {"a"}
    assert table.mask(None).tolist() == [False, True, True, True, True]


def test_put_rejects_mismatched_values_without_changing_the_table() -> None:
    table = small_table()
    assert "attribute 'size' is LONG" in invalid(lambda: table.put("a", {"size": (L, "5")}, []))
    assert "attribute 'tags' is STRING_LIST" in invalid(
        lambda: table.put("a", {"tags": (SL, "x")}, [])
    )
    assert "unknown type" in invalid(lambda: table.put("a", {"x": ("BOOL", True)}, []))  # type: ignore[dict-item]
    assert "non-empty string" in invalid(lambda: table.put("", {}, []))
    assert table.value(0, "size") == 1
    assert len(table) == 4


def test_table_grows_past_its_initial_capacity() -> None:
    table = DocumentTable()
    for i in range(1000):
        table.put(f"d{i}", {"size": (L, i), "color": (S, str(i % 3))}, [])
    assert table.capacity == 1000
    assert int(table.mask(Compare("GreaterThanOrEquals", "size", L, 990)).sum()) == 10
    assert int(table.mask(Compare("EqualsTo", "color", S, "0")).sum()) == 334


# --- random filters against a brute-force reference ------------------------------------------

SCHEMA: dict[str, AttributeType] = {"color": S, "tags": SL, "size": L, "when": D, "never_set": S}
COLORS = ["red", "green", "blue", "black"]
TAGS = ["a", "b", "c", "d", "e"]
RANGE_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "GreaterThan": operator.gt,
    "GreaterThanOrEquals": operator.ge,
    "LessThan": operator.lt,
    "LessThanOrEquals": operator.le,
}


def reference(flt: Filter, attributes: Attributes) -> bool:
    if isinstance(flt, And):
        return all(reference(c, attributes) for c in flt.children)
    if isinstance(flt, Or):
        return any(reference(c, attributes) for c in flt.children)
    if isinstance(flt, Not):
        return not reference(flt.child, attributes)
    entry = attributes.get(flt.key)
    if entry is None or entry[0] is not flt.type:
        return False
    have = entry[1]
    if flt.op == "EqualsTo":
        return set(have) == set(flt.value) if isinstance(have, list) else have == flt.value  # type: ignore[arg-type]
    if flt.op == "ContainsAll":
        return set(flt.value) <= set(have)  # type: ignore[arg-type]
    if flt.op == "ContainsAny":
        wanted = set(flt.value)  # type: ignore[arg-type]
        return bool(wanted & set(have)) if isinstance(have, list) else have in wanted
    return RANGE_OPS[flt.op](have, flt.value)


def random_attributes(rnd: random.Random) -> Attributes:
    attributes: Attributes = {}
    if rnd.random() < 0.8:
        attributes["color"] = (S, rnd.choice(COLORS))
    if rnd.random() < 0.8:
        attributes["tags"] = (SL, [rnd.choice(TAGS) for _ in range(rnd.randint(0, 4))])
    if rnd.random() < 0.8:
        attributes["size"] = (L, rnd.randint(-3, 3))
    if rnd.random() < 0.8:
        attributes["when"] = (D, at(rnd.randint(0, 5)) + timedelta(microseconds=rnd.choice([0, 1])))
    return attributes


def random_condition(rnd: random.Random) -> dict[str, Any]:
    key = rnd.choice(list(SCHEMA))
    kind = SCHEMA[key]
    if kind is S:
        if rnd.random() < 0.3:
            return cond(
                "ContainsAny", key, {"StringListValue": rnd.sample(COLORS, rnd.randint(0, 3))}
            )
        return cond("EqualsTo", key, {"StringValue": rnd.choice(COLORS)})
    if kind is SL:
        op = rnd.choice(["EqualsTo", "ContainsAll", "ContainsAny"])
        return cond(
            op, key, {"StringListValue": [rnd.choice(TAGS) for _ in range(rnd.randint(0, 3))]}
        )
    op = rnd.choice(["EqualsTo", *RANGE_OPS])
    if kind is L:
        return cond(op, key, {"LongValue": rnd.randint(-4, 4)})
    moment = at(rnd.randint(0, 5)) + timedelta(microseconds=rnd.choice([0, 1]))
    as_json: float | str = (
        moment.isoformat() if rnd.random() < 0.5 else attribute_to_json(D, moment)["DateValue"]
    )
    return cond(op, key, {"DateValue": as_json})


def random_filter(rnd: random.Random, depth: int = 0) -> dict[str, Any]:
    roll = rnd.random()
    if depth >= 4 or roll < 0.4:
        return random_condition(rnd)
    if roll < 0.6:
        return {"NotFilter": random_filter(rnd, depth + 1)}
    children = [random_filter(rnd, depth + 1) for _ in range(rnd.randint(1, 4))]
    return {rnd.choice(["AndAllFilters", "OrAllFilters"]): children}


def expected_mask(table: DocumentTable, model: Mapping[str, Attributes], flt: Filter) -> list[bool]:
    expected = [False] * table.capacity
    for doc_id, attributes in model.items():
        ordinal = table.ordinal(doc_id)
        assert ordinal is not None
        expected[ordinal] = reference(flt, attributes)
    return expected


def test_random_filters_match_the_reference() -> None:
    rnd = random.Random(20240611)
    table = DocumentTable()
    model: dict[str, Attributes] = {}
    for round_ in range(6):
        for _ in range(60):
            doc_id = f"doc{rnd.randint(0, 120)}"
            if doc_id in model and rnd.random() < 0.3:
                table.delete(doc_id)
                del model[doc_id]
            else:
                attributes = random_attributes(rnd)
                table.put(doc_id, attributes, [])
                model[doc_id] = attributes
        assert len(table) == len(model)
        for _ in range(150):
            flt = parse_filter(random_filter(rnd), KNOWN)
            assert table.mask(flt).tolist() == expected_mask(table, model, flt), (round_, flt)


# --- access control --------------------------------------------------------------------------


def acl_table() -> DocumentTable:
    table = DocumentTable()
    table.put("open", {}, [])
    table.put("alice_only", {}, [Principal("alice", "USER", "ALLOW")])
    table.put("eng", {}, [Principal("eng", "GROUP", "ALLOW")])
    table.put(
        "eng_not_bob",
        {},
        [Principal("eng", "GROUP", "ALLOW"), Principal("bob", "USER", "DENY")],
    )
    table.put(
        "alice_not_contractors",
        {},
        [Principal("alice", "USER", "ALLOW"), Principal("contractors", "GROUP", "DENY")],
    )
    table.put("deny_only", {}, [Principal("bob", "USER", "DENY")])
    return table


@pytest.mark.parametrize(
    ("user", "without_acl", "expected"),
    [
        (None, True, {"open"}),
        (None, False, set()),
        (UserContext("alice", frozenset()), True, {"open", "alice_only", "alice_not_contractors"}),
        (UserContext("alice", frozenset()), False, {"alice_only", "alice_not_contractors"}),
        (UserContext("alice", frozenset({"contractors"})), False, {"alice_only"}),
        (UserContext("bob", frozenset({"eng"})), False, {"eng"}),
        (UserContext("carol", frozenset({"eng"})), False, {"eng", "eng_not_bob"}),
        (UserContext(None, frozenset({"eng"})), True, {"open", "eng", "eng_not_bob"}),
        (UserContext("Alice", frozenset({"ENG"})), False, set()),
        (UserContext("eng", frozenset()), False, set()),
        (UserContext(None, frozenset()), True, {"open"}),
    ],
)
def test_visible(user: UserContext | None, without_acl: bool, expected: set[str]) -> None:
    table = acl_table()
    assert ids(table, table.visible(user, without_acl)) == expected


def test_acl_updates_and_deletes() -> None:
    table = acl_table()
    alice = UserContext("alice", frozenset())
    table.put("alice_only", {}, [Principal("bob", "USER", "ALLOW")])
    assert ids(table, table.visible(alice, False)) == {"alice_not_contractors"}
    table.put("eng", {}, [])
    assert ids(table, table.visible(alice, True)) == {"open", "eng", "alice_not_contractors"}
    table.delete("alice_not_contractors")
    table.delete("open")
    assert ids(table, table.visible(alice, True)) == {"eng"}
    assert table.acl(table.ordinal("alice_only") or 0) == [Principal("bob", "USER", "ALLOW")]


def test_random_acls_match_the_reference() -> None:
    rnd = random.Random(7)
    names = ["u1", "u2", "u3", "g1", "g2", "g3"]
    table = DocumentTable()
    acls: dict[str, list[Principal]] = {}
    for i in range(300):
        doc_id = f"d{rnd.randint(0, 80)}"
        if doc_id in acls and rnd.random() < 0.2:
            table.delete(doc_id)
            del acls[doc_id]
            continue
        acl = [
            Principal(
                rnd.choice(names), rnd.choice(["USER", "GROUP"]), rnd.choice(["ALLOW", "DENY"])
            )
            for _ in range(rnd.choice([0, 0, 1, 2, 3]))
        ]
        table.put(doc_id, {"size": (L, i)}, acl)
        acls[doc_id] = acl
    for _ in range(200):
        user = UserContext(
            rnd.choice([None, "u1", "u2", "u3"]), frozenset(rnd.sample(names, rnd.randint(0, 3)))
        )
        without_acl = rnd.random() < 0.5

        def matches(p: Principal, user: UserContext = user) -> bool:
            return p.name == user.user_id if p.type == "USER" else p.name in user.groups

        expected = {
            doc_id
            for doc_id, acl in acls.items()
            if (
                without_acl
                if not acl
                else any(p.access == "ALLOW" and matches(p) for p in acl)
                and not any(p.access == "DENY" and matches(p) for p in acl)
            )
        }
        assert ids(table, table.visible(user, without_acl)) == expected
        no_user = {doc_id for doc_id, acl in acls.items() if not acl and without_acl}
        assert ids(table, table.visible(None, without_acl)) == no_user


# --- facets ----------------------------------------------------------------------------------


def facet_table() -> DocumentTable:
    table = DocumentTable()
    rows: list[Attributes] = [
        {"color": (S, "red"), "tags": (SL, ["x", "y", "x"]), "size": (L, 2), "when": (D, at(1))},
        {"color": (S, "blue"), "tags": (SL, ["y"]), "size": (L, 2), "when": (D, at(1))},
        {"color": (S, "red"), "tags": (SL, ["z"]), "size": (L, 1), "when": (D, at(0))},
        {"color": (S, "green"), "tags": (SL, []), "size": (L, 3)},
        {"tags": (SL, ["y", "z"])},
    ]
    for i, row in enumerate(rows):
        table.put(f"d{i}", row, [])
    return table


def test_facets_count_and_order() -> None:
    table = facet_table()
    facets = table.facets(range(5), ["color", "tags", "size", "when", "never_set", "unknown"])
    assert facets == {
        "color": [("red", 2), ("blue", 1), ("green", 1)],
        "tags": [("y", 3), ("z", 2), ("x", 1)],
        "size": [(2, 2), (1, 1), (3, 1)],
        "when": [(at(1), 2), (at(0), 1)],
        "never_set": [],
        "unknown": [],
    }


def test_facets_limit_and_selection() -> None:
    table = facet_table()
    assert table.facets([0, 2, 2, 99, -1], ["color", "tags"]) == {
        "color": [("red", 2)],
        "tags": [("x", 1), ("y", 1), ("z", 1)],
    }
    assert table.facets(range(5), ["tags", "size", "when"], max_values=1) == {
        "tags": [("y", 3)],
        "size": [(2, 2)],
        "when": [(at(1), 2)],
    }
    assert table.facets(range(5), ["color"], max_values=0) == {"color": []}
    mask = table.mask(Compare("ContainsAny", "tags", SL, ("y",)))
    assert table.facets(mask, ["color"]) == {"color": [("blue", 1), ("red", 1)]}
    assert table.facets(np.flatnonzero(mask), ["color"]) == table.facets(mask, ["color"])
    assert "max_values" in invalid(lambda: table.facets([0], ["color"], max_values=-1))


def test_facets_skip_deleted_and_reflect_updates() -> None:
    table = facet_table()
    table.delete("d0")
    table.put("d1", {"color": (S, "red"), "tags": (SL, ["q"])}, [])
    assert table.facets(range(table.capacity), ["color", "tags", "size"]) == {
        "color": [("red", 2), ("green", 1)],
        "tags": [("z", 2), ("q", 1), ("y", 1)],
        "size": [(1, 1), (3, 1)],
    }


def test_facets_match_a_reference_on_random_documents() -> None:
    rnd = random.Random(99)
    table = DocumentTable()
    model: dict[str, Attributes] = {}
    for i in range(400):
        doc_id = f"d{rnd.randint(0, 200)}"
        attributes = random_attributes(rnd)
        table.put(doc_id, attributes, [])
        model[doc_id] = attributes
        if i % 7 == 0:
            gone = rnd.choice(list(model))
            table.delete(gone)
            del model[gone]
    for size in (3, 30, 300):
        chosen = rnd.sample(list(model), min(size, len(model)))
        ordinals = [table.ordinal(d) or 0 for d in chosen]
        facets = table.facets(ordinals, list(SCHEMA), max_values=4)
        for key in SCHEMA:
            counts: dict[Any, int] = {}
            for doc_id in chosen:
                entry = model[doc_id].get(key)
                if entry is None:
                    continue
                values = set(entry[1]) if isinstance(entry[1], list) else {entry[1]}
                for value in values:
                    counts[value] = counts.get(value, 0) + 1
            expected = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:4]
            assert facets[key] == expected, (size, key)


def test_dates_keep_microsecond_precision() -> None:
    table = DocumentTable()
    base = datetime(2024, 5, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    table.put("a", {"when": (D, base)}, [])
    table.put("b", {"when": (D, base + timedelta(microseconds=1))}, [])
    assert ids(table, table.mask(Compare("EqualsTo", "when", D, base))) == {"a"}
    assert ids(table, table.mask(Compare("GreaterThan", "when", D, base))) == {"b"}
    stored = table.value(0, "when")
    assert stored == base and isinstance(stored, datetime) and stored.tzinfo == UTC
