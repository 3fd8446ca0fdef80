"""BM25 keyword retrieval over passages with tantivy (embedded, on disk, one directory per index)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tantivy

FIELDS = ("title", "headings", "body")
DEFAULT_BOOSTS = {"title": 2.0, "headings": 1.5, "body": 1.0}
# Characters of tantivy's query language; a user's query is words, never syntax.
_SYNTAX = re.compile(r"[^\w\s]+")


@dataclass(frozen=True)
class KeywordPassage:
    pid: int
    title: str
    headings: str
    body: str


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_unsigned_field("pid", stored=False, indexed=True, fast=True)
    for field in FIELDS:
        builder.add_text_field(field, stored=False, tokenizer_name="en_stem")
    return builder.build()


class KeywordIndex:
    """Passages as tantivy documents keyed by a passage id (`pid`, a fast field).

    Writes are buffered until `commit()`, which makes them searchable; callers commit in
    batches because a tantivy commit costs milliseconds.
    """

    def __init__(self, directory: Path, *, heap_bytes: int = 64_000_000) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._schema = _schema()
        self._index = tantivy.Index(self._schema, path=str(directory))
        self._writer = self._index.writer(heap_size=heap_bytes, num_threads=1)
        self._pending = 0
        self._searcher = self._index.searcher()

    def add(self, passages: Iterable[KeywordPassage]) -> None:
        for passage in passages:
            doc = tantivy.Document()
            doc.add_unsigned("pid", passage.pid)
            doc.add_text("title", passage.title)
            doc.add_text("headings", passage.headings)
            doc.add_text("body", passage.body)
            self._writer.add_document(doc)
            self._pending += 1

    def delete(self, pids: Sequence[int]) -> None:
        if pids:
            query = tantivy.Query.term_set_query(self._schema, "pid", [int(p) for p in pids])
            self._writer.delete_documents_by_query(query)
            self._pending += 1

    @property
    def dirty(self) -> bool:
        return self._pending > 0

    def commit(self) -> None:
        if self._pending:
            self._writer.commit()
            self._index.reload()
            self._searcher = self._index.searcher()
            self._pending = 0

    def __len__(self) -> int:
        return int(self._searcher.num_docs)

    def search(
        self, text: str, limit: int, *, boosts: dict[str, float] | None = None
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """Passage ids and BM25 scores of the best `limit` matches, and how many passages match."""
        words = _SYNTAX.sub(" ", text).strip()
        if not words or limit <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32), 0
        query, _ = self._index.parse_query_lenient(
            words, list(FIELDS), field_boosts=boosts or DEFAULT_BOOSTS
        )
        result = self._searcher.search(query, limit, count=True)
        hits = result.hits
        if not hits:
            return (
                np.zeros(0, np.int64),
                np.zeros(0, np.float32),
                int(getattr(result, "count", 0) or 0),
            )
        pids = self._searcher.fast_field_values("pid", [address for _, address in hits])
        scores = np.fromiter((score for score, _ in hits), np.float32, len(hits))
        return np.asarray(pids, np.int64), scores, int(getattr(result, "count", 0) or 0)

    def close(self) -> None:
        self.commit()
        self._writer.wait_merging_threads()

    def destroy(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
