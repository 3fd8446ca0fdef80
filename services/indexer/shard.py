"""One index's searchable state in one replica: documents, passages, BM25, vectors, FAQs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from contracts.index import FaqEntry, SourceDocument
from runtime.errors import ValidationFailed
from services.indexer.adapters.keyword import KeywordIndex, KeywordPassage
from services.indexer.adapters.vectors import VectorIndex
from services.indexer.domain import filters as flt
from services.indexer.domain.ranking import (
    field_weight,
    freshness_multiplier,
    normalized_fusion,
    reciprocal_rank_fusion,
)
from services.indexer.domain.text import Passage, chunk_passages, query_terms

# An FAQ question answers the query from this similarity (cosine, or share of query terms).
FAQ_MATCH = 0.7
# Passages each retriever contributes to fusion: enough for 100 documents after grouping.
KEYWORD_DEPTH = 1000
DENSE_DEPTH = 300
# How many keyword matches a filtered query reads at most to count and facet its results.
ALL_MATCHES_CAP = 20_000
# BM25 field boosts (body 1.0), measured on the Python documentation (docs/benchmarks.md):
# the title and section headings are indexed with every passage, so a boost above 1 lets a
# page's title outweigh the passage that answers.
TITLE_BOOST = 0.5
HEADINGS_BOOST = 0.5
# Fusion weights (keyword, dense): MiniLM ranks questions better than BM25 (see benchmarks).
FUSION_WEIGHTS = (0.5, 1.0)
FILE_TYPES = {
    "PLAIN_TEXT": "PLAIN_TEXT",
    "HTML": "HTML",
    "MD": "MD",
    "CSV": "CSV",
    "JSON": "JSON",
    "PDF": "PDF",
}


@dataclass
class DocumentInfo:
    document_id: str
    title: str
    uri: str | None
    pids: list[int]
    text_bytes: int


@dataclass
class Hit:
    """A passage in the final ranking with what the response needs to explain it."""

    pid: int
    ordinal: int
    score: float
    keyword_score: float | None = None
    similarity: float | None = None


@dataclass
class SearchOutcome:
    hits: list[Hit]  # best passage per document (Query) or passages (Retrieve), ranked
    total: int  # distinct visible documents that matched
    best_keyword: float
    matched_ordinals: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


@dataclass(frozen=True)
class Tuning:
    """Relevance tuning in effect for one query (index settings merged with query overrides)."""

    title_importance: int | None = None
    body_importance: int | None = None
    freshness: tuple[str, timedelta, int] | None = None  # date attribute, duration, importance
    value_importance: dict[str, dict[str, int]] = field(default_factory=dict)


class IndexShard:
    def __init__(self, index_id: str, directory: Path, *, hnsw_threshold: int = 20_000) -> None:
        self.index_id = index_id
        self.table = flt.DocumentTable()
        self.keyword = KeywordIndex(directory / "keyword")
        self.vectors = VectorIndex(hnsw_threshold=hnsw_threshold)
        self.documents: dict[int, DocumentInfo] = {}
        self.attribute_types: dict[str, flt.AttributeType] = dict(flt.RESERVED_ATTRIBUTES)
        self._passage_doc = np.full(1024, -1, np.int64)
        self._passage_text: dict[int, str] = {}
        self._next_pid = 0
        self._uncommitted: set[int] = set()
        self.pending_vectors: dict[int, None] = {}  # pids awaiting embeddings, in order
        self.faqs: dict[str, list[FaqEntry]] = {}
        # What each document was indexed from: snapshots carry it, not the derived state.
        self.sources: dict[int, tuple[SourceDocument, datetime]] = {}
        self._faq_vectors: dict[str, np.ndarray] = {}

    # -- writes ----------------------------------------------------------------------------

    def put(self, doc: SourceDocument, at: datetime) -> int:
        """Index (or re-index) a document; returns its ordinal. Bad attributes raise."""
        attributes = self._attributes(doc, at)
        acl = flt.parse_acl(doc.access_control_list, "AccessControlList")
        existing = self.table.ordinal(doc.document_id)
        if existing is not None:
            self._drop_passages(existing)
        ordinal = self.table.put(doc.document_id, attributes, acl)
        passages = chunk_passages(doc.text)
        pids = list(range(self._next_pid, self._next_pid + len(passages)))
        self._next_pid += len(passages)
        self._grow(self._next_pid)
        sections = _section_headings(doc.text, doc.headings, passages)
        self.keyword.add(
            KeywordPassage(pid, doc.title, section, p.text)
            for pid, p, section in zip(pids, passages, sections, strict=True)
        )
        for pid, p in zip(pids, passages, strict=True):
            self._passage_doc[pid] = ordinal
            self._passage_text[pid] = p.text
            self.pending_vectors[pid] = None
        self.sources[ordinal] = (doc, at)
        self.documents[ordinal] = DocumentInfo(
            doc.document_id, doc.title, doc.uri, pids, len(doc.text.encode())
        )
        self._uncommitted.add(ordinal)
        return ordinal

    def delete(self, document_id: str) -> bool:
        ordinal = self.table.ordinal(document_id)
        if ordinal is None:
            return False
        self._drop_passages(ordinal)
        self.table.delete(document_id)
        self.documents.pop(ordinal, None)
        self.sources.pop(ordinal, None)
        self._uncommitted.discard(ordinal)
        return True

    def _drop_passages(self, ordinal: int) -> None:
        info = self.documents.get(ordinal)
        if info is None:
            return
        self.keyword.delete(info.pids)
        self.vectors.remove(np.asarray(info.pids, np.int64))
        for pid in info.pids:
            self._passage_doc[pid] = -1
            self._passage_text.pop(pid, None)
            self.pending_vectors.pop(pid, None)

    def _grow(self, size: int) -> None:
        if size > len(self._passage_doc):
            grown = np.full(max(size, 2 * len(self._passage_doc)), -1, np.int64)
            grown[: len(self._passage_doc)] = self._passage_doc
            self._passage_doc = grown

    def commit(self) -> None:
        self.keyword.commit()
        self._uncommitted.clear()

    def _attributes(
        self, doc: SourceDocument, at: datetime
    ) -> dict[str, tuple[flt.AttributeType, flt.AttributeValue]]:
        found: dict[str, tuple[flt.AttributeType, flt.AttributeValue]] = {}
        for i, raw in enumerate(doc.attributes):
            where = f"Attributes[{i}]"
            key = raw.get("Key") if isinstance(raw, dict) else None
            if not isinstance(key, str) or not key or len(key) > 200:
                raise ValidationFailed(f"{where}: Key must be a string of 1-200 characters")
            kind, value = flt.parse_attribute_value(raw.get("Value") or {}, f"{where}.Value")
            declared = self.attribute_types.setdefault(key, kind)
            if declared != kind:
                raise ValidationFailed(f"{where}: attribute {key!r} is {declared}, got {kind}")
            found[key] = (kind, value)
        defaults: dict[str, tuple[flt.AttributeType, flt.AttributeValue] | None] = {
            "_source_uri": (flt.AttributeType.STRING, doc.uri) if doc.uri else None,
            "_data_source_id": (flt.AttributeType.STRING, doc.data_source_id)
            if doc.data_source_id
            else None,
            "_file_type": (
                flt.AttributeType.STRING,
                FILE_TYPES.get(doc.content_type, "PLAIN_TEXT"),
            ),
            "_language_code": (flt.AttributeType.STRING, doc.language or "en"),
            "_document_title": (flt.AttributeType.STRING, doc.title) if doc.title else None,
            "_created_at": (flt.AttributeType.DATE, at),
            "_last_updated_at": (flt.AttributeType.DATE, at),
        }
        for key, default in defaults.items():
            if key not in found and default is not None:
                found[key] = default
        return found

    def set_faq(self, faq_id: str, entries: list[FaqEntry], vectors: np.ndarray | None) -> None:
        self.faqs[faq_id] = entries
        if vectors is not None:
            self._faq_vectors[faq_id] = vectors

    def faqs_to_embed(self) -> list[str]:
        return [faq_id for faq_id in self.faqs if faq_id not in self._faq_vectors]

    def drop_faq(self, faq_id: str) -> None:
        self.faqs.pop(faq_id, None)
        self._faq_vectors.pop(faq_id, None)

    # -- snapshots -------------------------------------------------------------------------

    def export(self) -> tuple[list[dict[str, Any]], np.ndarray, list[tuple[str, int]]]:
        """Documents in ordinal order, and the embeddings made so far keyed by (document, passage)."""
        documents = [
            {"at": at.isoformat(), "document": doc.model_dump(mode="json")}
            for _, (doc, at) in sorted(self.sources.items())
        ]
        keys: list[tuple[str, int]] = []
        pids: list[int] = []
        for ordinal in sorted(self.sources):
            info = self.documents[ordinal]
            for i, pid in enumerate(info.pids):
                if self.vectors.has(pid):
                    keys.append((info.document_id, i))
                    pids.append(pid)
        return documents, self.vectors.get(pids), keys

    def export_faqs(self) -> dict[str, dict[str, Any]]:
        return {
            faq_id: {
                "entries": [e.model_dump() for e in entries],
                "vectors": self._faq_vectors[faq_id].tolist()
                if faq_id in self._faq_vectors
                else None,
            }
            for faq_id, entries in self.faqs.items()
        }

    def restore(
        self, documents: list[dict[str, Any]], vectors: np.ndarray, keys: list[tuple[str, int]]
    ) -> None:
        """Rebuild from an export: documents are re-chunked and re-indexed, embeddings reused."""
        for entry in documents:
            self.put(
                SourceDocument.model_validate(entry["document"]),
                datetime.fromisoformat(entry["at"]),
            )
        pids = []
        for document_id, i in keys:
            ordinal = self.table.ordinal(document_id)
            pids.append(self.documents[ordinal].pids[i] if ordinal is not None else -1)
        known = [k for k, pid in enumerate(pids) if pid >= 0]
        self.add_vectors([pids[k] for k in known], vectors[known])
        self.commit()

    # -- embeddings ------------------------------------------------------------------------

    def next_to_embed(self, limit: int) -> list[tuple[int, str]]:
        out = []
        for pid in self.pending_vectors:
            out.append((pid, self._embedding_text(pid)))
            if len(out) >= limit:
                break
        return out

    def _embedding_text(self, pid: int) -> str:
        """The passage with its document's title: a passage often relies on it for its subject."""
        info = self.documents.get(int(self._passage_doc[pid]))
        title = info.title if info else ""
        text = self._passage_text.get(pid, "")
        return f"{title}. {text}" if title else text

    def add_vectors(self, pids: Sequence[int], vectors: np.ndarray) -> None:
        """Store embeddings of passages still current (a re-indexed document's old ones are gone)."""
        keep = [i for i, pid in enumerate(pids) if pid in self.pending_vectors]
        for i in keep:
            self.pending_vectors.pop(pids[i], None)
        if keep:
            self.vectors.add(np.asarray([pids[i] for i in keep], np.int64), vectors[keep])

    # -- reads -----------------------------------------------------------------------------

    @property
    def searchable_documents(self) -> int:
        return len(self.table) - len(self._uncommitted)

    @property
    def text_bytes(self) -> int:
        return sum(
            info.text_bytes for o, info in self.documents.items() if o not in self._uncommitted
        )

    @property
    def faq_entries(self) -> int:
        return sum(len(entries) for entries in self.faqs.values())

    def passage_text(self, pid: int) -> str:
        return self._passage_text.get(pid, "")

    def document(self, ordinal: int) -> DocumentInfo:
        return self.documents[ordinal]

    def visible_documents(
        self, filter_: flt.Filter | None, user: flt.UserContext | None, open_policy: bool
    ) -> np.ndarray:
        mask = self.table.mask(filter_)
        return mask & self.table.visible(user, open_policy)

    def _passage_mask(self, doc_mask: np.ndarray) -> np.ndarray:
        owners = self._passage_doc[: self._next_pid]
        mask = np.zeros(self._next_pid, bool)
        live = owners >= 0
        mask[live] = doc_mask[owners[live]]
        return mask

    def search(
        self,
        text: str,
        query_vector: np.ndarray | None,
        doc_mask: np.ndarray,
        *,
        mode: str,
        group_by_document: bool,
        tuning: Tuning,
        want_all_matches: bool = False,
        now: datetime | None = None,
    ) -> SearchOutcome:
        """Rank passages for `text` among documents allowed by `doc_mask`."""
        if len(doc_mask) < self.table.capacity:
            # A mask made before the latest documents arrived: those stay out of this search.
            doc_mask = np.pad(doc_mask, (0, self.table.capacity - len(doc_mask)))
        passage_mask = self._passage_mask(doc_mask)
        keyword: dict[int, float] = {}
        dense: dict[int, float] = {}
        matched: set[int] = set()
        best_keyword = 0.0
        matches = 0
        restricted = not bool(doc_mask[: self.table.capacity][self.table.alive()].all())
        if mode != "SEMANTIC":
            keyword, matched, best_keyword, matches = self._keyword(
                text, passage_mask, tuning, want_all_matches or restricted
            )
        if mode != "KEYWORD" and query_vector is not None and len(self.vectors):
            pids, sims = self.vectors.search(query_vector, DENSE_DEPTH, passage_mask)
            dense = {int(p): float(s) for p, s in zip(pids, sims, strict=True)}
        if group_by_document:
            hits = self._fuse_documents(keyword, dense, mode)
        else:
            hits = self._fuse_passages(keyword, dense, mode)
        hits = self._tune(hits, tuning, now or datetime.now(UTC))
        matched_docs = {int(self._passage_doc[p]) for p in matched} | {h.ordinal for h in hits}
        if restricted or matches <= len(matched):
            # Counted from visible matches only: a total must not reveal what a user may not see.
            total = len(matched_docs)
        else:
            # More passages match than were read: estimate the documents they belong to.
            read_docs = len({int(self._passage_doc[p]) for p in matched}) or 1
            total = max(len(matched_docs), round(read_docs * matches / max(len(matched), 1)))
        matched_docs = {int(self._passage_doc[p]) for p in matched} | {h.ordinal for h in hits}
        return SearchOutcome(hits, total, best_keyword, np.fromiter(sorted(matched_docs), np.int64))

    def _fuse_passages(
        self, keyword: dict[int, float], dense: dict[int, float], mode: str
    ) -> list[Hit]:
        fused = _fuse(keyword, dense, mode)
        return [
            Hit(pid, int(self._passage_doc[pid]), score, keyword.get(pid), dense.get(pid))
            for pid, score in fused
        ]

    def _fuse_documents(
        self, keyword: dict[int, float], dense: dict[int, float], mode: str
    ) -> list[Hit]:
        """Fuse document rankings (a document scores by its best passage in each retriever)."""
        owners = self._passage_doc
        by_keyword = _best_per_document(keyword, owners)
        by_dense = _best_per_document(dense, owners)
        fused = _fuse(
            {o: score for o, (_, score) in by_keyword.items()},
            {o: score for o, (_, score) in by_dense.items()},
            mode,
        )
        hits = []
        for ordinal, score in fused:
            # The excerpt comes from the passage the embedding liked best, else the keyword one.
            pid = (by_dense.get(ordinal) or by_keyword[ordinal])[0]
            k, d = by_keyword.get(ordinal), by_dense.get(ordinal)
            hits.append(Hit(pid, ordinal, score, k[1] if k else None, d[1] if d else None))
        return hits

    def _keyword(
        self, text: str, passage_mask: np.ndarray, tuning: Tuning, want_all: bool
    ) -> tuple[dict[int, float], set[int], float, int]:
        boosts = {
            "title": TITLE_BOOST * _weight(tuning.title_importance),
            "headings": HEADINGS_BOOST,
            "body": 1.0 * _weight(tuning.body_importance),
        }
        terms = " ".join(query_terms(text))
        limit = KEYWORD_DEPTH
        while True:
            pids, scores, count = self.keyword.search(terms, limit, boosts=boosts)
            keep = passage_mask[pids] if len(pids) else np.zeros(0, bool)
            enough = keep.sum() >= KEYWORD_DEPTH or len(pids) >= count
            if (enough and not want_all) or len(pids) >= min(count, ALL_MATCHES_CAP):
                break
            # Filters or ACLs removed too many, or every match is wanted: look deeper.
            limit = min(count, limit * 8, ALL_MATCHES_CAP)
        kept_pids, kept_scores = pids[keep], scores[keep]
        best = float(kept_scores.max()) if len(kept_scores) else 0.0
        ranked = {
            int(p): float(s)
            for p, s in zip(kept_pids[:KEYWORD_DEPTH], kept_scores[:KEYWORD_DEPTH], strict=True)
        }
        return ranked, {int(p) for p in kept_pids}, best, count if len(pids) < count else len(pids)

    def _tune(self, hits: list[Hit], tuning: Tuning, now: datetime) -> list[Hit]:
        if not tuning.freshness and not tuning.value_importance:
            return hits
        for hit in hits:
            factor = 1.0
            if tuning.freshness:
                key, duration, importance = tuning.freshness
                when = self.table.value(hit.ordinal, key)
                factor *= freshness_multiplier(
                    when if isinstance(when, datetime) else None,
                    now,
                    duration=duration,
                    importance=importance,
                )
            for key, weights in tuning.value_importance.items():
                value = self.table.value(hit.ordinal, key)
                values = value if isinstance(value, list) else [value]
                best = max((weights.get(str(v), 0) for v in values), default=0)
                if best:
                    factor *= _weight(best)
            hit.score *= factor
        return sorted(hits, key=lambda h: (-h.score, h.pid))

    def faq_matches(
        self, terms: Sequence[str], query_vector: np.ndarray | None, limit: int = 3
    ) -> list[tuple[FaqEntry, float]]:
        """FAQ entries whose question says what the query asks (embedding or term overlap)."""
        found: list[tuple[FaqEntry, float]] = []
        wanted = set(terms)
        for faq_id, entries in self.faqs.items():
            vectors = self._faq_vectors.get(faq_id)
            sims = (
                vectors @ query_vector if vectors is not None and query_vector is not None else None
            )
            for i, entry in enumerate(entries):
                score = float(sims[i]) if sims is not None else 0.0
                if wanted:
                    words = set(query_terms(entry.question))
                    overlap = len(wanted & words) / len(wanted)
                    score = max(score, overlap * 0.8)
                if score >= FAQ_MATCH:
                    found.append((entry, score))
        found.sort(key=lambda pair: -pair[1])
        return found[:limit]

    def close(self) -> None:
        self.keyword.commit()

    def destroy(self) -> None:
        self.keyword.destroy()


def _section_headings(text: str, headings: Sequence[str], passages: Sequence[Passage]) -> list[str]:
    """The headings a passage sits under: those inside it and the last one before it.

    Only these are indexed with the passage: giving every passage all of its page's headings
    lets a page with many matching headings outrank the passage that answers.
    """
    found: list[tuple[int, str]] = []
    position = 0
    for heading in headings:
        at = text.find(heading, position)
        if at >= 0:
            found.append((at, heading))
            position = at + len(heading)
    sections = []
    for passage in passages:
        before = [h for at, h in found if at < passage.begin]
        inside = [h for at, h in found if passage.begin <= at < passage.end]
        sections.append(" ".join(before[-1:] + inside))
    return sections


def _best_per_document(
    scores: dict[int, float], owners: np.ndarray
) -> dict[int, tuple[int, float]]:
    """Each document's best passage and its score."""
    best: dict[int, tuple[int, float]] = {}
    for pid, score in scores.items():
        ordinal = int(owners[pid])
        if ordinal not in best or score > best[ordinal][1]:
            best[ordinal] = (pid, score)
    return best


def _fuse(keyword: dict[int, float], dense: dict[int, float], mode: str) -> list[tuple[int, float]]:
    if mode == "KEYWORD" or not dense:
        return sorted(keyword.items(), key=lambda kv: (-kv[1], kv[0]))
    if mode == "SEMANTIC" or not keyword:
        return sorted(dense.items(), key=lambda kv: (-kv[1], kv[0]))
    if mode == "HYBRID_NORMALIZED":
        return normalized_fusion([keyword, dense], weights=FUSION_WEIGHTS)
    return reciprocal_rank_fusion(
        [sorted(keyword, key=lambda p: -keyword[p]), sorted(dense, key=lambda p: -dense[p])],
        weights=FUSION_WEIGHTS,
    )


def _weight(importance: int | None) -> float:
    return 1.0 if importance is None else field_weight(importance)
