"""Shape checks for the judged search-quality queries over the Python 3.11 docs corpus."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

QUERIES = Path(__file__).parents[2] / "bench/data/python_docs_queries.jsonl"
CORPUS = Path("/usr/share/doc/python3.11/html")
KINDS = {"question", "task", "keyword"}


def _load() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(QUERIES.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        assert isinstance(row, dict), f"line {number} is not a JSON object"
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    return _load()


def test_has_enough_queries(rows: list[dict[str, Any]]) -> None:
    assert len(rows) >= 200


def test_ids_and_queries_are_unique(rows: list[dict[str, Any]]) -> None:
    ids = [row["id"] for row in rows]
    queries = [row["query"] for row in rows]
    assert len(set(ids)) == len(ids)
    assert len(set(queries)) == len(queries)


def test_fields_have_expected_types(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        assert isinstance(row["id"], str) and row["id"], row
        assert isinstance(row["query"], str) and row["query"].strip(), row
        assert isinstance(row["relevant"], list), row


def test_kinds_are_known(rows: list[dict[str, Any]]) -> None:
    assert {row["kind"] for row in rows} <= KINDS


def test_queries_are_not_too_long(rows: list[dict[str, Any]]) -> None:
    too_long = [row["id"] for row in rows if len(row["query"]) > 200]
    assert too_long == []


def test_relevant_paths_are_relative_html(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        relevant = row["relevant"]
        assert 1 <= len(relevant) <= 2, row["id"]
        for path in relevant:
            assert isinstance(path, str), row["id"]
            assert path.endswith(".html"), (row["id"], path)
            assert not path.startswith("/"), (row["id"], path)
            assert ".." not in Path(path).parts, (row["id"], path)


def test_relevant_paths_exist_in_corpus(rows: list[dict[str, Any]]) -> None:
    if not CORPUS.is_dir():
        pytest.skip(f"{CORPUS} is not installed (Debian package python3.11-doc)")
    missing = [
        (row["id"], path)
        for row in rows
        for path in row["relevant"]
        if not (CORPUS / path).is_file()
    ]
    assert missing == []
