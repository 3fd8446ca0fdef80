"""The search benchmark's pure parts: ranking metrics, latency summaries and corpus loading."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench.search import (
    best_passage_ranking,
    latency_summary,
    load_corpus,
    load_queries,
    mrr_at_10,
    ndcg_at_10,
    quality_of,
    recall_at_100,
    relative_gain,
    skipped_page,
)

PAGE = """<!DOCTYPE html>
<html lang="en">
<head><title>functools — Higher-order functions</title></head>
<body>
<div class="related">Navigation: index | modules | next | previous</div>
<main>
<h1>functools — Higher-order functions and operations on callable objects</h1>
<p>The functools module is for higher-order functions: functions that act on or return
other functions.</p>
<h2>lru_cache</h2>
<p>Decorator to wrap a function with a memoizing callable that saves up to the maxsize
most recent calls.</p>
</main>
</body>
</html>
"""


def test_ndcg_binary_relevance() -> None:
    assert ndcg_at_10(["a", "b"], {"a"}) == pytest.approx(1.0)
    assert ndcg_at_10(["x", "a"], {"a"}) == pytest.approx(1 / math.log2(3))
    # Two relevant pages: the ideal puts both first.
    ideal = 1 + 1 / math.log2(3)
    assert ndcg_at_10(["a", "x", "b"], {"a", "b"}) == pytest.approx((1 + 0.5) / ideal)
    assert ndcg_at_10([*"xxxxxxxxxx", "a"], {"a"}) == 0.0
    assert ndcg_at_10(["a"], set()) == 0.0


def test_mrr_and_recall() -> None:
    assert mrr_at_10(["x", "y", "a"], {"a"}) == pytest.approx(1 / 3)
    assert mrr_at_10([f"d{i}" for i in range(10)] + ["a"], {"a"}) == 0.0
    ranked = [f"d{i}" for i in range(150)]
    assert recall_at_100(ranked, {"d5", "d120"}) == pytest.approx(0.5)
    assert recall_at_100(ranked, {"d5", "d99"}) == 1.0


def test_best_passage_ranking_keeps_first_occurrence() -> None:
    assert best_passage_ranking(["b", "a", "b", "c", "a"]) == ["b", "a", "c"]
    assert best_passage_ranking(["b", "a", "c"], depth=2) == ["b", "a"]


def test_quality_of_averages_overall_and_by_kind(tmp_path: Path) -> None:
    lines = [
        {"id": "q1", "query": "cache", "relevant": ["a.html"], "kind": "question"},
        {"id": "q2", "query": "copy", "relevant": ["b.html"], "kind": "task"},
    ]
    path = tmp_path / "queries.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    queries = load_queries(path)
    assert [q.id for q in queries] == ["q1", "q2"]
    assert load_queries(path, 1)[0].relevant == frozenset({"a.html"})
    result = quality_of({"q1": ["a.html"], "q2": ["x.html", "b.html"]}, queries)
    assert result["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3)) / 2)
    assert result["mrr@10"] == pytest.approx(0.75)
    assert result["recall@100"] == 1.0
    assert result["by_kind"]["question"]["ndcg@10"] == pytest.approx(1.0)
    assert result["by_kind"]["task"]["mrr@10"] == pytest.approx(0.5)


def test_relative_gain_and_latency_summary() -> None:
    assert relative_gain(0.55, 0.5) == pytest.approx(0.1)
    assert relative_gain(0.5, 0.0) is None
    summary = latency_summary([0.001] * 99 + [0.101])
    assert summary["p50_ms"] == pytest.approx(1.0)
    assert summary["mean_ms"] == pytest.approx(2.0)
    assert summary["qps"] == pytest.approx(500.0)
    assert summary["p99_ms"] > 1.0


def test_skipped_pages() -> None:
    assert skipped_page("_static/basic.html")
    assert skipped_page("_sources/library/os.rst.html")
    assert skipped_page("genindex-A.html")
    assert skipped_page("search.html") and skipped_page("py-modindex.html")
    assert not skipped_page("library/functools.html")
    assert not skipped_page("library/search.html")  # only the root search page is Sphinx's


def test_load_corpus_extracts_pages_and_skips_the_rest(tmp_path: Path) -> None:
    (tmp_path / "library").mkdir()
    (tmp_path / "_static").mkdir()
    (tmp_path / "library" / "functools.html").write_text(PAGE, encoding="utf-8")
    (tmp_path / "_static" / "page.html").write_text(PAGE, encoding="utf-8")
    (tmp_path / "genindex-F.html").write_text(PAGE, encoding="utf-8")
    (tmp_path / "short.html").write_text("<html><body><p>Too short.</p></body></html>")
    docs, counts = load_corpus(tmp_path)
    assert [d.path for d in docs] == ["library/functools.html"]
    assert counts == {
        "html_files": 4,
        "skipped_by_path": 2,
        "skipped_short": 1,
        "documents": 1,
    }
    doc = docs[0]
    assert doc.title.startswith("functools")
    assert "memoizing callable" in doc.text
    assert "Navigation" not in doc.text
    assert "lru_cache" in doc.headings
