"""Benchmark: search quality on the Python docs, indexing speed, latency at 10k/100k passages."""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import importlib
import json
import logging
import math
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

if __package__ in (None, ""):  # run as `python bench/search.py`: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bm25s
import httpx
import numpy as np
import numpy.typing as npt
from rank_bm25 import BM25Okapi

from bench.common import cpu_model, fmt, loadavg, package_version
from bench.launch import Platform
from contracts.index import SourceDocument
from documents.extract import extract_html
from runtime.bus import Bus
from services.indexer.adapters.embedder import LocalEmbedder
from services.indexer.replica import EMBED_CHUNK
from services.indexer.shard import IndexShard, Tuning

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DOCS = Path("/usr/share/doc/python3.11/html")
DEFAULT_QUERIES = REPO_ROOT / "bench" / "data" / "python_docs_queries.jsonl"
DEFAULT_OUTPUT = REPO_ROOT / "bench" / "results" / "search.json"
LIBRARIES = ("tantivy", "hnswlib", "onnxruntime", "numpy", "bm25s", "rank-bm25", "PyStemmer")

SKIPPED_DIRS: Final = frozenset({"_static", "_sources", "_images", "_downloads"})
SKIPPED_PAGES: Final = frozenset({"search.html", "py-modindex.html"})
MIN_TEXT_CHARS: Final = 50

TRELLIS_MODES: Final = {
    "Trellis BM25": "KEYWORD",
    "Trellis dense": "SEMANTIC",
    "Trellis hybrid RRF": "HYBRID_RRF",
    "Trellis hybrid normalised": "HYBRID_NORMALIZED",
}
BM25S_NAME: Final = "bm25s (same passages)"
KINDS: Final = ("question", "task", "keyword")
RANK_DEPTH: Final = 100  # documents kept per query for recall@100
PEER_PASSAGE_DEPTH: Final = 1000  # bm25s passages fetched per query to rank documents

SMALL_SCALE: Final = 10_000
LARGE_SCALE: Final = 100_000
MIN_TIMED_QUERIES: Final = 500
WARMUP_QUERIES: Final = 30
RANK_BM25_LIMIT_S: Final = 2.0

QUALITY_GAIN_GOAL: Final = 0.10  # hybrid nDCG@10 at least 10% above BM25, and above dense
BM25_P99_GOAL_MS: Final = 10.0
HYBRID_P99_GOAL_MS: Final = 50.0

Vector = npt.NDArray[np.float32]


# -- corpus and queries --------------------------------------------------------------------------


@dataclass(frozen=True)
class CorpusDoc:
    path: str  # relative to the HTML root, as the judged queries name pages
    title: str
    text: str
    headings: list[str]


@dataclass(frozen=True)
class JudgedQuery:
    id: str
    query: str
    relevant: frozenset[str]
    kind: str


def skipped_page(relative: str) -> bool:
    """Sphinx assets, indexes and the search page: not documentation a user would look for."""
    parts = relative.split("/")
    return bool(SKIPPED_DIRS & set(parts[:-1])) or (
        len(parts) == 1 and (parts[0].startswith("genindex") or parts[0] in SKIPPED_PAGES)
    )


def load_corpus(root: Path) -> tuple[list[CorpusDoc], dict[str, int]]:
    """The pages under `root` as the crawler extracts them, and counts of the pages left out."""
    docs: list[CorpusDoc] = []
    counts: Counter[str] = Counter(html_files=0, skipped_by_path=0, skipped_short=0)
    for file in sorted(root.rglob("*.html")):
        relative = file.relative_to(root).as_posix()
        counts["html_files"] += 1
        if skipped_page(relative):
            counts["skipped_by_path"] += 1
            continue
        extracted = extract_html(file.read_bytes(), file.resolve().as_uri())
        if len(extracted.text.strip()) < MIN_TEXT_CHARS:
            counts["skipped_short"] += 1
            continue
        headings = [h.text for h in extracted.headings]
        docs.append(CorpusDoc(relative, extracted.title or relative, extracted.text, headings))
    counts["documents"] = len(docs)
    return docs, dict(counts)


def load_queries(path: Path, limit: int | None = None) -> list[JudgedQuery]:
    queries: list[JudgedQuery] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        queries.append(
            JudgedQuery(str(row["id"]), str(row["query"]), frozenset(row["relevant"]), row["kind"])
        )
    return queries[:limit] if limit is not None else queries


# -- metrics -------------------------------------------------------------------------------------


def ndcg_at_10(ranked: Sequence[str], relevant: Iterable[str]) -> float:
    """Binary-relevance nDCG@10; the ideal DCG puts every relevant page (up to 10) first."""
    wanted = set(relevant)
    if not wanted:
        return 0.0
    dcg = sum(1.0 / math.log2(i + 2) for i, doc in enumerate(ranked[:10]) if doc in wanted)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(wanted), 10)))
    return dcg / ideal


def mrr_at_10(ranked: Sequence[str], relevant: Iterable[str]) -> float:
    wanted = set(relevant)
    return next((1.0 / (i + 1) for i, doc in enumerate(ranked[:10]) if doc in wanted), 0.0)


def recall_at_100(ranked: Sequence[str], relevant: Iterable[str]) -> float:
    wanted = set(relevant)
    if not wanted:
        return 0.0
    return len(wanted & set(ranked[:100])) / len(wanted)


def best_passage_ranking(owners: Iterable[str], depth: int = RANK_DEPTH) -> list[str]:
    """Documents in the order of their best passage (passages given best first)."""
    ranked: list[str] = []
    seen: set[str] = set()
    for owner in owners:
        if owner not in seen:
            seen.add(owner)
            ranked.append(owner)
            if len(ranked) >= depth:
                break
    return ranked


def quality_of(rankings: dict[str, list[str]], queries: Sequence[JudgedQuery]) -> dict[str, Any]:
    """Mean nDCG@10, MRR@10 and recall@100 over the queries, overall and per query kind."""

    def means(subset: Sequence[JudgedQuery]) -> dict[str, float | int]:
        if not subset:
            return {"queries": 0, "ndcg@10": 0.0, "mrr@10": 0.0, "recall@100": 0.0}
        return {
            "queries": len(subset),
            "ndcg@10": statistics.fmean(ndcg_at_10(rankings[q.id], q.relevant) for q in subset),
            "mrr@10": statistics.fmean(mrr_at_10(rankings[q.id], q.relevant) for q in subset),
            "recall@100": statistics.fmean(
                recall_at_100(rankings[q.id], q.relevant) for q in subset
            ),
        }

    kinds = sorted(
        {q.kind for q in queries}, key=lambda k: (KINDS.index(k) if k in KINDS else 9, k)
    )
    return {
        **means(queries),
        "by_kind": {kind: means([q for q in queries if q.kind == kind]) for kind in kinds},
    }


def relative_gain(new: float, base: float) -> float | None:
    return (new - base) / base if base > 0 else None


def latency_summary(samples_s: Sequence[float]) -> dict[str, float]:
    """p50/p99/mean in milliseconds and the single-stream rate (1 / mean) in queries/s."""
    ms = np.asarray(samples_s, np.float64) * 1000.0
    mean = float(ms.mean())
    return {
        "n": float(len(ms)),
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": mean,
        "max_ms": float(ms.max()),
        "qps": 1000.0 / mean if mean > 0 else 0.0,
    }


# -- machinery -----------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def machine_info() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "libraries": {name: package_version(name) for name in LIBRARIES},
        "env": {
            name: os.environ[name]
            for name in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")
            if name in os.environ
        },
    }


def stemmer_or_none() -> tuple[Callable[[str], str] | None, str]:
    """PyStemmer's English stemmer for bm25s if the venv has it, else no stemming."""
    try:
        module = importlib.import_module("Stemmer")
    except ImportError:
        return None, "none (PyStemmer not installed)"
    stemmer: Callable[[str], str] = module.Stemmer("english").stemWord
    return stemmer, "PyStemmer english"


class EmbeddingCache:
    """Passage embeddings by text, so replicated passages are embedded once."""

    def __init__(self, embedder: LocalEmbedder) -> None:
        self.embedder = embedder
        self.vectors: dict[str, Vector] = {}
        self.embedded = 0

    def get(self, texts: Sequence[str]) -> Vector:
        missing = list(dict.fromkeys(t for t in texts if t not in self.vectors))
        if missing:
            for text, row in zip(missing, self.embedder.embed_sync(missing), strict=True):
                self.vectors[text] = row
            self.embedded += len(missing)
        return np.stack([self.vectors[t] for t in texts]).astype(np.float32)


def source_documents(
    index_id: str, docs: Sequence[CorpusDoc], copy: int = 0
) -> list[SourceDocument]:
    """The pages as the indexer receives them; copies > 0 get their own document ids."""
    suffix = f"#copy{copy}" if copy else ""
    return [
        SourceDocument(
            index_id=index_id,
            document_id=f"{d.path}{suffix}",
            title=d.title,
            text=d.text,
            headings=d.headings,
            uri=d.path,
            content_type="HTML",
        )
        for d in docs
    ]


def put_all(shard: IndexShard, sources: Sequence[SourceDocument]) -> tuple[float, float]:
    """Seconds to put every document, and to commit them."""
    at = datetime.now(UTC)
    began = time.perf_counter()
    for source in sources:
        shard.put(source, at)
    put_s = time.perf_counter() - began
    began = time.perf_counter()
    shard.commit()
    return put_s, time.perf_counter() - began


def embed_pending(shard: IndexShard, cache: EmbeddingCache, *, label: str) -> float:
    """Embed every pending passage the way the replica's embed loop does; returns seconds."""
    total = len(shard.pending_vectors)
    done, began, last_print = 0, time.perf_counter(), time.perf_counter()
    while shard.pending_vectors:
        batch = shard.next_to_embed(EMBED_CHUNK)
        vectors = cache.get([text for _, text in batch])
        shard.add_vectors([pid for pid, _ in batch], vectors)
        done += len(batch)
        now = time.perf_counter()
        if now - last_print >= 30.0 or not shard.pending_vectors:
            rate = done / (now - began)
            eta = (total - done) / rate if rate > 0 else float("nan")
            print(
                f"  {label}: {done:,}/{total:,} passages embedded, {rate:.1f}/s, ETA {eta:.0f} s",
                flush=True,
            )
            last_print = now
    return time.perf_counter() - began


def add_cached_vectors(shard: IndexShard, cache: EmbeddingCache) -> tuple[float, int]:
    """Every pending passage's vector from the cache, given to the shard in one call.

    One call means the HNSW graph (above the threshold) is built once, on all cores. Returns the
    seconds `add_vectors` took and how many texts had to be embedded because the cache lacked them.
    """
    before = cache.embedded
    batch = shard.next_to_embed(len(shard.pending_vectors))
    vectors = cache.get([text for _, text in batch])
    began = time.perf_counter()
    shard.add_vectors([pid for pid, _ in batch], vectors)
    return time.perf_counter() - began, cache.embedded - before


def shard_passages(
    shard: IndexShard, headings: dict[str, list[str]]
) -> tuple[list[str], list[str]]:
    """Each live passage as bm25s sees it (title + headings + text), with its document id."""
    texts: list[str] = []
    owners: list[str] = []
    for ordinal in sorted(shard.documents):
        info = shard.document(ordinal)
        heading_text = " ".join(headings.get(info.document_id.split("#", 1)[0], []))
        for pid in info.pids:
            texts.append(f"{info.title} {heading_text} {shard.passage_text(pid)}")
            owners.append(info.document_id)
    return texts, owners


def new_shard(root: Path, name: str, index_id: str) -> IndexShard:
    return IndexShard(index_id, root / name)


def drop_shard(shard: IndexShard) -> None:
    shard.destroy()
    gc.collect()


# -- peers ---------------------------------------------------------------------------------------


def bm25s_tokenize(texts: Sequence[str], stemmer: Callable[[str], str] | None) -> Any:
    """bm25s's default tokenizer with its English stop words (ids and vocabulary)."""
    return bm25s.tokenize(list(texts), stopwords="en", stemmer=stemmer, show_progress=False)


def bm25s_words(texts: Sequence[str], stemmer: Callable[[str], str] | None) -> list[list[str]]:
    """The same tokens as strings, for rank_bm25."""
    words: list[list[str]] = bm25s.tokenize(
        list(texts), stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False
    )
    return words


class Bm25sPeer:
    """bm25s over given passages: default tokenizer, English stop words, optional stemmer."""

    def __init__(self, passages: Sequence[str], stemmer: Callable[[str], str] | None) -> None:
        self.stemmer = stemmer
        began = time.perf_counter()
        tokens = bm25s_tokenize(passages, stemmer)
        self.tokenize_s = time.perf_counter() - began
        began = time.perf_counter()
        self.retriever = bm25s.BM25()
        self.retriever.index(tokens, show_progress=False)
        self.index_s = time.perf_counter() - began
        self.size = len(passages)

    def search(self, query: str, k: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """One query, timed as a user would call it: tokenize, then retrieve on one thread."""
        ids, scores = self.retriever.retrieve(
            bm25s_tokenize([query], self.stemmer),
            k=min(k, self.size),
            show_progress=False,
            n_threads=0,
        )
        return np.asarray(ids[0], np.int64), np.asarray(scores[0], np.float32)


# -- phases --------------------------------------------------------------------------------------


def indexing_speed(
    work: Path, docs: Sequence[CorpusDoc], cache: EmbeddingCache
) -> tuple[IndexShard, dict[str, Any]]:
    """BM25-only indexing, then indexing with embeddings; the second shard is kept for quality."""
    out: dict[str, Any] = {"documents": len(docs)}

    print("indexing: BM25 only (put + commit)", flush=True)
    index_id = str(uuid.uuid4())
    sources = source_documents(index_id, docs)
    shard = new_shard(work, "bm25-only", index_id)
    put_s, commit_s = put_all(shard, sources)
    passages = len(shard.pending_vectors)
    total = put_s + commit_s
    out["passages"] = passages
    out["bm25_only"] = {
        "put_s": put_s,
        "commit_s": commit_s,
        "total_s": total,
        "docs_per_s": len(docs) / total,
        "passages_per_s": passages / total,
    }
    print(f"  {len(docs)} docs, {passages:,} passages in {total:.1f} s", flush=True)
    drop_shard(shard)

    print("indexing: with embeddings (put + commit + embed every passage)", flush=True)
    index_id = str(uuid.uuid4())
    sources = source_documents(index_id, docs)
    shard = new_shard(work, "full", index_id)
    put_s, commit_s = put_all(shard, sources)
    embed_s = embed_pending(shard, cache, label="full corpus")
    total = put_s + commit_s + embed_s
    out["with_embeddings"] = {
        "put_s": put_s,
        "commit_s": commit_s,
        "embed_s": embed_s,
        "total_s": total,
        "docs_per_s": len(docs) / total,
        "passages_per_s": passages / total,
        "embed_passages_per_s": passages / embed_s if embed_s > 0 else None,
        "vectors": len(shard.vectors),
        "unique_embedding_texts": len(cache.vectors),
    }
    if len(shard.vectors) != passages:
        print(f"  WARNING: {len(shard.vectors)} vectors for {passages} passages", flush=True)
    return shard, out


def quality(
    shard: IndexShard,
    queries: Sequence[JudgedQuery],
    embedder: LocalEmbedder,
    peer: Bm25sPeer,
    peer_owners: Sequence[str],
) -> dict[str, Any]:
    """Document rankings of every system for every judged query, and their metrics."""
    rankings: dict[str, dict[str, list[str]]] = {name: {} for name in (*TRELLIS_MODES, BM25S_NAME)}
    tuning = Tuning()
    for n, q in enumerate(queries, 1):
        vector = embedder.embed_sync([q.query])[0]
        for name, mode in TRELLIS_MODES.items():
            outcome = shard.search(
                q.query,
                None if mode == "KEYWORD" else vector,
                shard.table.mask(None),
                mode=mode,
                group_by_document=True,
                tuning=tuning,
            )
            rankings[name][q.id] = [
                shard.document(hit.ordinal).document_id for hit in outcome.hits[:RANK_DEPTH]
            ]
        ids, scores = peer.search(q.query, PEER_PASSAGE_DEPTH)
        rankings[BM25S_NAME][q.id] = best_passage_ranking(
            peer_owners[int(i)] for i, s in zip(ids, scores, strict=True) if s > 0
        )
        if n % 50 == 0:
            print(f"  quality: {n}/{len(queries)} queries", flush=True)
    systems = {name: quality_of(ranked, queries) for name, ranked in rankings.items()}
    systems[BM25S_NAME].pop("by_kind", None)  # per kind only for the Trellis systems
    for name, ranked in rankings.items():
        systems[name]["median_documents_ranked"] = statistics.median(
            len(ranked[q.id]) for q in queries
        )
    bm25, dense = systems["Trellis BM25"]["ndcg@10"], systems["Trellis dense"]["ndcg@10"]
    gains: dict[str, Any] = {}
    for name in ("Trellis hybrid RRF", "Trellis hybrid normalised"):
        hybrid = systems[name]["ndcg@10"]
        over_bm25, over_dense = relative_gain(hybrid, bm25), relative_gain(hybrid, dense)
        gains[name] = {
            "ndcg@10_gain_over_bm25": over_bm25,
            "ndcg@10_gain_over_dense": over_dense,
            # The goal as the issue words it: >= 10% above BM25, and above dense alone.
            "meets_goal": over_bm25 is not None
            and over_dense is not None
            and over_bm25 >= QUALITY_GAIN_GOAL
            and over_dense > 0,
            # The stricter reading, reported too: >= 10% above both.
            "meets_strict_goal": over_bm25 is not None
            and over_dense is not None
            and min(over_bm25, over_dense) >= QUALITY_GAIN_GOAL,
        }
    return {"systems": systems, "hybrid_gains": gains, "goal_gain": QUALITY_GAIN_GOAL}


def build_scale_shard(
    work: Path,
    name: str,
    docs: Sequence[CorpusDoc],
    copies: int,
    cache: EmbeddingCache,
) -> tuple[IndexShard, dict[str, Any]]:
    index_id = str(uuid.uuid4())
    sources = [s for c in range(copies) for s in source_documents(index_id, docs, c)]
    shard = new_shard(work, name, index_id)
    put_s, commit_s = put_all(shard, sources)
    passages = len(shard.pending_vectors)
    vectors_s, missed = add_cached_vectors(shard, cache)
    info = {
        "documents": len(sources),
        "passages": passages,
        "copies": copies,
        "put_s": put_s,
        "commit_s": commit_s,
        "add_vectors_s": vectors_s,
        "vectors": len(shard.vectors),
        "vector_search": "hnsw" if len(shard.vectors) >= shard.vectors.hnsw_threshold else "exact",
        "embeddings_not_cached": missed,
    }
    print(
        f"  {name}: {len(sources):,} docs, {passages:,} passages, put {put_s:.1f} s,"
        f" commit {commit_s:.1f} s, vectors {vectors_s:.1f} s ({info['vector_search']})",
        flush=True,
    )
    return shard, info


def timed_queries(queries: Sequence[JudgedQuery], repeat: int) -> list[str]:
    return [q.query for _ in range(repeat) for q in queries]


def trellis_latency(
    shard: IndexShard, texts: Sequence[str], embedder: LocalEmbedder
) -> dict[str, Any]:
    """BM25, dense and hybrid RRF end to end in-process, interleaved query by query."""
    tuning = Tuning()
    samples: dict[str, list[float]] = {
        "bm25": [],
        "dense": [],
        "hybrid_rrf": [],
        "hybrid_normalized": [],
        "dense_search_only": [],
        "hybrid_rrf_search_only": [],
        "hybrid_normalized_search_only": [],
        "query_embedding": [],
    }

    def one(text: str, record: bool) -> None:
        began = time.perf_counter()
        shard.search(
            text,
            None,
            shard.table.mask(None),
            mode="KEYWORD",
            group_by_document=True,
            tuning=tuning,
        )
        bm25_s = time.perf_counter() - began
        if record:
            samples["bm25"].append(bm25_s)
        for key, mode in (
            ("dense", "SEMANTIC"),
            ("hybrid_rrf", "HYBRID_RRF"),
            ("hybrid_normalized", "HYBRID_NORMALIZED"),
        ):
            began = time.perf_counter()
            vector = embedder.embed_sync([text])[0]
            embedded = time.perf_counter()
            shard.search(
                text,
                vector,
                shard.table.mask(None),
                mode=mode,
                group_by_document=True,
                tuning=tuning,
            )
            done = time.perf_counter()
            if record:
                samples[key].append(done - began)
                samples[f"{key}_search_only"].append(done - embedded)
                samples["query_embedding"].append(embedded - began)

    for text in texts[:WARMUP_QUERIES]:
        one(text, record=False)
    for text in texts:
        one(text, record=True)
    return {key: latency_summary(values) for key, values in samples.items()}


def bm25s_and_trellis(
    shard: IndexShard,
    passages: Sequence[str],
    texts: Sequence[str],
    stemmer: Callable[[str], str] | None,
) -> dict[str, Any]:
    """bm25s and Trellis BM25 (service path and raw tantivy top 10), interleaved query by query."""
    peer = Bm25sPeer(passages, stemmer)
    tuning = Tuning()
    samples: dict[str, list[float]] = {"trellis_bm25": [], "trellis_tantivy_top10": [], "bm25s": []}

    def one(text: str, record: bool) -> None:
        began = time.perf_counter()
        shard.search(
            text,
            None,
            shard.table.mask(None),
            mode="KEYWORD",
            group_by_document=True,
            tuning=tuning,
        )
        t1 = time.perf_counter()
        shard.keyword.search(text, 10)
        t2 = time.perf_counter()
        peer.search(text, 10)
        t3 = time.perf_counter()
        if record:
            samples["trellis_bm25"].append(t1 - began)
            samples["trellis_tantivy_top10"].append(t2 - t1)
            samples["bm25s"].append(t3 - t2)

    for text in texts[:WARMUP_QUERIES]:
        one(text, record=False)
    for text in texts:
        one(text, record=True)
    return {
        "bm25s_build": {"tokenize_s": peer.tokenize_s, "index_s": peer.index_s},
        **{key: latency_summary(values) for key, values in samples.items()},
    }


def rank_bm25_run(
    passages: Sequence[str], judged: Sequence[str], stemmer: Callable[[str], str] | None
) -> dict[str, Any]:
    """rank_bm25's BM25Okapi on the bm25s tokens, one pass over the judged queries.

    It scores every passage in Python, so it is skipped when one query takes RANK_BM25_LIMIT_S.
    """
    began = time.perf_counter()
    okapi = BM25Okapi(bm25s_words(passages, stemmer))
    build_s = time.perf_counter() - began
    ids = list(range(len(passages)))
    began = time.perf_counter()
    okapi.get_top_n(bm25s_words([judged[0]], stemmer)[0], ids, n=10)
    first_s = time.perf_counter() - began
    if first_s >= RANK_BM25_LIMIT_S:
        return {
            "skipped": f"one query took {first_s:.2f} s (limit {RANK_BM25_LIMIT_S} s)",
            "build_s": build_s,
        }
    timings: list[float] = []
    for text in judged:
        began = time.perf_counter()
        okapi.get_top_n(bm25s_words([text], stemmer)[0], ids, n=10)
        timings.append(time.perf_counter() - began)
    return {"build_s": build_s, "first_query_s": first_s, **latency_summary(timings)}


def peer_comparison(
    shard: IndexShard,
    passages: Sequence[str],
    texts: Sequence[str],
    judged: Sequence[str],
    stemmer: Callable[[str], str] | None,
    *,
    rank_bm25_allowed: bool,
) -> dict[str, Any]:
    """bm25s, rank_bm25 and Trellis BM25 over the same passages, one query at a time."""
    out: dict[str, Any] = {"passages": len(passages)}
    out.update(bm25s_and_trellis(shard, passages, texts, stemmer))
    gc.collect()
    if rank_bm25_allowed:
        out["rank_bm25"] = rank_bm25_run(passages, judged, stemmer)
        gc.collect()
    else:
        out["rank_bm25"] = {"skipped": "not run at this scale"}
    trellis_qps = out["trellis_bm25"]["qps"]
    out["throughput_ratios"] = {
        "bm25s / trellis_bm25": out["bm25s"]["qps"] / trellis_qps,
        "trellis_tantivy_top10 / bm25s": out["trellis_tantivy_top10"]["qps"] / out["bm25s"]["qps"],
        **(
            {"rank_bm25 / trellis_bm25": out["rank_bm25"]["qps"] / trellis_qps}
            if "qps" in out["rank_bm25"]
            else {}
        ),
    }
    return out


def _subset(
    docs: Sequence[CorpusDoc], passage_counts: dict[str, int], target: int
) -> list[CorpusDoc]:
    """The first pages that hold about `target` passages."""
    chosen: list[CorpusDoc] = []
    count = 0
    for doc in docs:
        if count >= target:
            break
        chosen.append(doc)
        count += passage_counts[doc.path]
    return chosen


def scale_step(
    work: Path,
    label: str,
    target: int,
    docs: Sequence[CorpusDoc],
    passage_counts: dict[str, int],
    cache: EmbeddingCache,
    embedder: LocalEmbedder,
    texts: Sequence[str],
    judged: Sequence[str],
    stemmer: Callable[[str], str] | None,
    headings: dict[str, list[str]],
    *,
    rank_bm25_allowed: bool,
) -> dict[str, Any]:
    total = sum(passage_counts.values())
    if target <= total:  # a prefix of the pages with about `target` passages
        chosen = _subset(docs, passage_counts, target)
        copies = 1
    else:  # every page, replicated under new document ids
        chosen = list(docs)
        copies = math.ceil(target / total)
    print(f"scale {label}: building", flush=True)
    shard, info = build_scale_shard(work, f"scale-{label}", chosen, copies, cache)
    print(f"scale {label}: Trellis latency over {len(texts):,} queries per system", flush=True)
    latency = trellis_latency(shard, texts, embedder)
    print(f"scale {label}: peers", flush=True)
    passages, _ = shard_passages(shard, headings)
    peers = peer_comparison(
        shard, passages, texts, judged, stemmer, rank_bm25_allowed=rank_bm25_allowed
    )
    drop_shard(shard)
    return {"index": info, "latency": latency, "peers": peers, "peak_rss_mb": peak_rss_mb()}


# -- through the gateway -------------------------------------------------------------------------

GATEWAY_SERVICES: Final = ("inference", "indexer", "gateway")
GATEWAY_MODES: Final = {"bm25": "KEYWORD", "dense": "SEMANTIC", "hybrid": "HYBRID_NORMALIZED"}
MAX_BATCH_BYTES: Final = 6 * 1024 * 1024


def gateway_step(
    root: Path, docs: Sequence[CorpusDoc], pages: Path, texts: Sequence[str]
) -> dict[str, Any]:
    """The platform as `make run` starts it (processes, embeddings by the inference service):
    BatchPutDocument of the raw HTML pages over REST, then Query latency over HTTP."""
    return asyncio.run(_gateway(root, docs, pages, texts))


async def _wait(what: str, check: Callable[[], Any], timeout_s: float) -> float:
    began = time.perf_counter()
    last = began
    while True:
        done = await check()
        if done:
            return time.perf_counter() - began
        now = time.perf_counter()
        if now - began > timeout_s:
            raise RuntimeError(f"{what}: not done after {timeout_s:g} s")
        if now - last > 30:
            print(f"  gateway: waiting for {what} ({now - began:.0f} s)", flush=True)
            last = now
        await asyncio.sleep(0.5)


async def _gateway(
    root: Path, docs: Sequence[CorpusDoc], pages: Path, texts: Sequence[str]
) -> dict[str, Any]:
    platform = Platform(root, env={"TRELLIS_LOG_LEVEL": "WARNING"})
    nats_url = platform.start_nats()
    for name in GATEWAY_SERVICES:
        platform.start(name)
    bus = await Bus.connect(nats_url, source="bench")
    out: dict[str, Any] = {"documents": len(docs), "services": list(GATEWAY_SERVICES)}
    try:
        async with httpx.AsyncClient(
            base_url=platform.http_url,
            headers={"Authorization": f"Bearer {platform.api_key}"},
            timeout=120,
        ) as http:
            out["startup_s"] = await platform.wait_ready(bus, http, GATEWAY_SERVICES, 300)

            async def model_ready() -> bool:
                probe = await http.post(
                    "/v1/models/all-minilm-l6-v2/infer", json={"texts": ["ready?"]}
                )
                return probe.status_code == 200

            out["model_ready_s"] = await _wait("MiniLM in the inference service", model_ready, 300)
            created = await http.post("/v1/indexes", json={"Name": "bench"})
            created.raise_for_status()
            index_id = created.json()["Id"]
            began = time.perf_counter()
            batch: list[dict[str, Any]] = []
            size = 0

            async def send() -> None:
                response = await http.post(
                    f"/v1/indexes/{index_id}/documents", json={"Documents": batch}
                )
                response.raise_for_status()
                failed = response.json()["FailedDocuments"]
                if failed:
                    raise RuntimeError(f"BatchPutDocument failed: {failed[:3]}")

            for doc in docs:
                blob = base64.b64encode((pages / doc.path).read_bytes()).decode()
                if batch and (len(batch) == 10 or size + len(blob) > MAX_BATCH_BYTES):
                    await send()
                    batch, size = [], 0
                batch.append({"Id": doc.path, "Blob": blob, "ContentType": "HTML"})
                size += len(blob)
            if batch:
                await send()
            out["put_s"] = time.perf_counter() - began

            async def searchable() -> bool:
                described = (await http.get(f"/v1/indexes/{index_id}")).json()
                stats = described["IndexStatistics"]["TextDocumentStatistics"]
                return bool(stats["IndexedTextDocumentsCount"] == len(docs))

            async def embedded() -> bool:
                described = (await http.get(f"/v1/indexes/{index_id}")).json()
                out["passages"] = described["EmbeddingStatistics"]["Passages"]
                return bool(described["EmbeddingStatistics"]["PendingPassages"] == 0)

            out["searchable_s"] = out["put_s"] + await _wait("BM25 indexing", searchable, 600)
            out["embedded_s"] = out["put_s"] + await _wait("embeddings", embedded, 1800)
            out["docs_per_s_bm25"] = len(docs) / out["searchable_s"]
            out["docs_per_s_with_embeddings"] = len(docs) / out["embedded_s"]
            print(
                f"  gateway: {len(docs)} pages searchable in {out['searchable_s']:.1f} s,"
                f" embedded in {out['embedded_s']:.1f} s",
                flush=True,
            )
            samples: dict[str, list[float]] = {key: [] for key in GATEWAY_MODES}
            for n, text in enumerate([*texts[:WARMUP_QUERIES], *texts]):
                for key, mode in GATEWAY_MODES.items():
                    began = time.perf_counter()
                    response = await http.post(
                        f"/v1/indexes/{index_id}/query",
                        json={"QueryText": text, "RankingMode": mode},
                    )
                    elapsed = time.perf_counter() - began
                    response.raise_for_status()
                    if n >= WARMUP_QUERIES:
                        samples[key].append(elapsed)
            out["latency"] = {key: latency_summary(values) for key, values in samples.items()}
    finally:
        await bus.close()
        platform.close()
    return out


def bench(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    out: dict[str, Any] = {
        "benchmark": "bench/search.py",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": machine_info(),
        "loadavg_start": loadavg(),
    }
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    stemmer, stemmer_name = stemmer_or_none()
    out["bm25s_config"] = {"tokenizer": "bm25s default", "stopwords": "en", "stemmer": stemmer_name}

    print(f"loading the corpus from {args.docs}", flush=True)
    began = time.perf_counter()
    docs, counts = load_corpus(args.docs)
    queries = load_queries(args.queries, args.max_queries)
    paths = {d.path for d in docs}
    out["corpus"] = {
        "root": str(args.docs),
        **counts,
        "text_chars": sum(len(d.text) for d in docs),
        "extract_s": time.perf_counter() - began,
    }
    out["queries"] = {
        "count": len(queries),
        "kinds": dict(Counter(q.kind for q in queries)),
        "relevant_not_in_corpus": sorted(p for q in queries for p in q.relevant if p not in paths),
    }
    print(f"  {len(docs)} documents, {len(queries)} queries", flush=True)

    print("loading the MiniLM embedder", flush=True)
    embedder = LocalEmbedder(intra_op_threads=0)
    embedder.embed_sync(["warm up the embedder"])
    cache = EmbeddingCache(embedder)
    headings = {d.path: d.headings for d in docs}

    work = Path(tempfile.mkdtemp(prefix="trellis-bench-search-"))
    try:
        shard, out["indexing"] = indexing_speed(work, docs, cache)
        passage_counts = {
            shard.document(o).document_id: len(shard.document(o).pids) for o in shard.documents
        }

        print("quality: ranking every judged query with every system", flush=True)
        passages, owners = shard_passages(shard, headings)
        peer = Bm25sPeer(passages, stemmer)
        out["quality"] = quality(shard, queries, embedder, peer, owners)
        del peer, passages, owners
        drop_shard(shard)
        out["peak_rss_mb_after_quality"] = peak_rss_mb()

        repeat = args.repeat or math.ceil(MIN_TIMED_QUERIES / max(len(queries), 1))
        texts = timed_queries(queries, repeat)
        judged = [q.query for q in queries]
        out["timed_queries_per_system"] = len(texts)
        scales = [("10k", SMALL_SCALE, True)]
        if not args.skip_100k:
            scales.append(("100k", LARGE_SCALE, True))
        out["scales"] = {}
        for label, target, rank_ok in scales:
            out["scales"][label] = scale_step(
                work,
                label,
                target,
                docs,
                passage_counts,
                cache,
                embedder,
                texts,
                judged,
                stemmer,
                headings,
                rank_bm25_allowed=rank_ok,
            )
        if not args.skip_gateway:
            subset = _subset(docs, passage_counts, SMALL_SCALE)
            print(f"gateway: {len(subset)} pages through the platform's REST API", flush=True)
            out["gateway"] = gateway_step(work / "platform", subset, args.docs, texts)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    large = out["scales"].get("100k")
    if large is not None:
        latency = large["latency"]
        out["latency_goals_100k"] = {
            "bm25_p99_ms": latency["bm25"]["p99_ms"],
            "bm25_goal_ms": BM25_P99_GOAL_MS,
            "bm25_meets_goal": latency["bm25"]["p99_ms"] < BM25_P99_GOAL_MS,
            "hybrid_p99_ms": max(
                latency["hybrid_rrf"]["p99_ms"], latency["hybrid_normalized"]["p99_ms"]
            ),
            "hybrid_goal_ms": HYBRID_P99_GOAL_MS,
            "hybrid_meets_goal": max(
                latency["hybrid_rrf"]["p99_ms"], latency["hybrid_normalized"]["p99_ms"]
            )
            < HYBRID_P99_GOAL_MS,
        }
    out["embeddings_computed"] = cache.embedded
    out["peak_rss_mb"] = peak_rss_mb()
    out["loadavg_end"] = loadavg()
    out["total_s"] = time.perf_counter() - started
    return out


# -- report --------------------------------------------------------------------------------------


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:+.1f}%"


def quality_table(result: dict[str, Any]) -> str:
    systems = result["quality"]["systems"]
    lines = [
        "| System | nDCG@10 | MRR@10 | recall@100 | documents ranked (median) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, m in systems.items():
        lines.append(
            f"| {name} | {m['ndcg@10']:.3f} | {m['mrr@10']:.3f} | {m['recall@100']:.3f}"
            f" | {m['median_documents_ranked']:g} |"
        )
    return "\n".join(lines)


def kind_table(result: dict[str, Any]) -> str:
    systems = result["quality"]["systems"]
    kinds = [k for k in next(iter(systems.values()))["by_kind"]]
    header = " | ".join(f"{k} ({systems['Trellis BM25']['by_kind'][k]['queries']})" for k in kinds)
    lines = [f"| nDCG@10 by kind | {header} |", "|---|" + "---:|" * len(kinds)]
    for name, m in systems.items():
        if "by_kind" in m:
            cells = " | ".join(f"{m['by_kind'][k]['ndcg@10']:.3f}" for k in kinds)
            lines.append(f"| {name} | {cells} |")
    return "\n".join(lines)


def indexing_table(result: dict[str, Any]) -> str:
    idx = result["indexing"]
    lines = [
        "| Indexing | put s | commit s | embed s | total s | docs/s | passages/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, key in (("BM25 only", "bm25_only"), ("with embeddings", "with_embeddings")):
        r = idx[key]
        lines.append(
            f"| {label} | {fmt(r['put_s'], 2)} | {fmt(r['commit_s'], 2)} | {fmt(r.get('embed_s'))}"
            f" | {fmt(r['total_s'])} | {fmt(r['docs_per_s'])} | {fmt(r['passages_per_s'])} |"
        )
    return "\n".join(lines)


def latency_table(result: dict[str, Any]) -> str:
    lines = [
        "| Scale | passages | dense index | BM25 p50/p99 ms | dense p50/p99 ms"
        " | hybrid RRF p50/p99 ms | hybrid normalised p50/p99 ms"
        " | dense search-only p50/p99 | hybrid search-only p50/p99 | query embedding p50/p99 |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, scale in result["scales"].items():
        lat = scale["latency"]
        cells = " | ".join(
            f"{lat[k]['p50_ms']:.2f} / {lat[k]['p99_ms']:.2f}"
            for k in (
                "bm25",
                "dense",
                "hybrid_rrf",
                "hybrid_normalized",
                "dense_search_only",
                "hybrid_normalized_search_only",
                "query_embedding",
            )
        )
        lines.append(
            f"| {label} | {scale['index']['passages']:,} | {scale['index']['vector_search']}"
            f" | {cells} |"
        )
    return "\n".join(lines)


def peers_table(result: dict[str, Any]) -> str:
    lines = [
        "| Scale | system | queries | p50 ms | p99 ms | queries/s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for label, scale in result["scales"].items():
        peers = scale["peers"]
        for key, name in (
            ("trellis_bm25", "Trellis BM25 (shard.search, grouped)"),
            ("trellis_tantivy_top10", "Trellis tantivy adapter, top 10 passages"),
            ("bm25s", "bm25s retrieve k=10"),
            ("rank_bm25", "rank_bm25 BM25Okapi get_top_n"),
        ):
            r = peers[key]
            if "skipped" in r:
                lines.append(f"| {label} | {name} | skipped: {r['skipped']} | | | |")
                continue
            lines.append(
                f"| {label} | {name} | {int(r['n'])} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f}"
                f" | {r['qps']:,.0f} |"
            )
    return "\n".join(lines)


def print_report(result: dict[str, Any], output: Path) -> None:
    m = result["machine"]
    print()
    print(
        f"## Search: {m['cpu_count']} CPUs ({m['cpu_model']}), Python {m['python']},"
        f" load average {fmt(result['loadavg_start'], 2)} at start,"
        f" {fmt(result['loadavg_end'], 2)} at end; total {result['total_s']:.0f} s,"
        f" peak RSS {result['peak_rss_mb']:,.0f} MB"
    )
    corpus, queries = result["corpus"], result["queries"]
    print()
    print(
        f"Corpus: {corpus['documents']} pages of {corpus['html_files']} HTML files"
        f" ({corpus['skipped_by_path']} skipped by path, {corpus['skipped_short']} too short),"
        f" {result['indexing']['passages']:,} passages; {queries['count']} judged queries"
        f" {queries['kinds']}; relevant pages missing from the corpus:"
        f" {queries['relevant_not_in_corpus'] or 'none'}; bm25s stemmer:"
        f" {result['bm25s_config']['stemmer']}"
    )
    print()
    print("### Quality (document level, a document scores by its best passage)")
    print()
    print(quality_table(result))
    print()
    print(kind_table(result))
    print()
    for name, g in result["quality"]["hybrid_gains"].items():
        print(
            f"{name}: nDCG@10 {pct(g['ndcg@10_gain_over_bm25'])} over BM25,"
            f" {pct(g['ndcg@10_gain_over_dense'])} over dense"
            f" (goal +{QUALITY_GAIN_GOAL * 100:.0f}% over BM25 and above dense:"
            f" {'met' if g['meets_goal'] else 'NOT met'}; +10% over both:"
            f" {'met' if g['meets_strict_goal'] else 'NOT met'})"
        )
    print()
    gateway = result.get("gateway")
    if gateway:
        print("### Through the gateway (processes as `make run` starts them; REST, Bearer key)")
        print(
            f"{gateway['documents']} HTML pages ({gateway.get('passages', 0):,} passages) by"
            f" BatchPutDocument: searchable after {gateway['searchable_s']:.1f} s"
            f" ({gateway['docs_per_s_bm25']:.1f} docs/s), embedded by the inference service after"
            f" {gateway['embedded_s']:.1f} s ({gateway['docs_per_s_with_embeddings']:.2f} docs/s)"
        )
        print("| Query over HTTP | p50 ms | p99 ms |")
        print("|---|---:|---:|")
        for key, lat in gateway["latency"].items():
            print(f"| {key} | {lat['p50_ms']:.2f} | {lat['p99_ms']:.2f} |")
        print()
    print("### Indexing speed (in-process shard, LocalEmbedder)")
    print()
    print(indexing_table(result))
    print()
    print(
        f"### Query latency in-process ({result['timed_queries_per_system']} timed queries per"
        " system after warm-up; dense and hybrid include embedding the query)"
    )
    print()
    print(latency_table(result))
    goals = result.get("latency_goals_100k")
    if goals:
        print()
        print(
            f"Goals at 100k: BM25 p99 {goals['bm25_p99_ms']:.2f} ms < {BM25_P99_GOAL_MS:.0f} ms"
            f" {'met' if goals['bm25_meets_goal'] else 'NOT met'}; hybrid p99"
            f" {goals['hybrid_p99_ms']:.2f} ms < {HYBRID_P99_GOAL_MS:.0f} ms"
            f" {'met' if goals['hybrid_meets_goal'] else 'NOT met'}"
        )
    print()
    print("### BM25 peers on the same passages (one query at a time)")
    print()
    print(peers_table(result))
    for label, scale in result["scales"].items():
        ratios = ", ".join(f"{k} {v:.2f}x" for k, v in scale["peers"]["throughput_ratios"].items())
        print(f"{label} throughput ratios: {ratios}")
    print()
    print(f"results written to {output}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--docs", type=Path, default=DEFAULT_DOCS, help=f"HTML root of the corpus ({DEFAULT_DOCS})"
    )
    parser.add_argument(
        "--queries", type=Path, default=DEFAULT_QUERIES, help="judged queries, JSON lines"
    )
    parser.add_argument("--max-queries", type=int, default=None, help="use the first N queries")
    parser.add_argument(
        "--skip-100k", action="store_true", help="only the 10k-passage latency scale"
    )
    parser.add_argument(
        "--skip-gateway",
        action="store_true",
        help="no run through the platform's processes and REST API",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=0,
        help=f"passes over the queries for latency (0: enough for {MIN_TIMED_QUERIES} timings)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUTPUT, help="JSON results path")
    args = parser.parse_args(argv)
    if not args.docs.is_dir():
        parser.error(f"{args.docs} is not a directory (Debian package python3.11-doc)")
    if args.max_queries is not None and args.max_queries < 1:
        parser.error("--max-queries must be positive")
    if args.repeat < 0:
        parser.error("--repeat must not be negative")

    result = bench(args)
    result["tables_markdown"] = {
        "quality": quality_table(result),
        "quality_by_kind": kind_table(result),
        "indexing": indexing_table(result),
        "latency": latency_table(result),
        "peers": peers_table(result),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print_report(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
