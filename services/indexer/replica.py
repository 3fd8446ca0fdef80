"""A search replica: every index's shard, rebuilt from the DOCUMENTS log, kept embedded and committed."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import logging
import shutil
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from nats.aio.msg import Msg
from nats.js.object_store import ObjectStore

from contracts import subjects, topology
from contracts.index import (
    DocumentAdded,
    DocumentDeleted,
    DocumentModified,
    DocumentSubmitted,
    DocumentWithdrawn,
    FaqEntry,
    FaqLoaded,
    FaqRemoved,
    FeedbackSubmitted,
    IndexDropped,
    QueryLogged,
)
from runtime import codec
from runtime.bus import Bus
from runtime.errors import TrellisError
from services.indexer.adapters.embedder import Embedder
from services.indexer.domain.indexes import SnapshotManifest
from services.indexer.domain.suggestions import QueryLog
from services.indexer.shard import IndexShard

log = logging.getLogger("trellis.indexer")
EMBED_CHUNK = 256
KEPT_QUERIES = 100_000  # result maps kept for feedback


@dataclass
class Feedback:
    clicks: int = 0
    relevant: int = 0
    not_relevant: int = 0


@dataclass
class Activity:
    """Query log and feedback of one index, rebuilt from the INDEX_ACTIVITY log."""

    queries: QueryLog = field(default_factory=QueryLog)
    results: OrderedDict[str, dict[str, str]] = field(default_factory=OrderedDict)
    feedback: dict[str, Feedback] = field(default_factory=dict)


class Replica:
    def __init__(
        self, bus: Bus, directory: Path, embedder: Embedder, *, hnsw_threshold: int = 20_000
    ) -> None:
        self.bus = bus
        self.directory = directory
        self.embedder = embedder
        self.hnsw_threshold = hnsw_threshold
        self.shards: dict[str, IndexShard] = {}
        self.activity: dict[str, Activity] = {}
        self.embed_failures = 0
        self.embedded = 0  # passages embedded by this replica (snapshots are due as it grows)
        self.restoring: set[str] = set()
        self._turn = 0
        self._wake = asyncio.Event()
        # The log is the truth: local state from a previous run is replayed, not trusted.
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True, exist_ok=True)

    def shard(self, index_id: str) -> IndexShard:
        shard = self.shards.get(index_id)
        if shard is None:
            shard = IndexShard(
                index_id, self.directory / index_id, hnsw_threshold=self.hnsw_threshold
            )
            self.shards[index_id] = shard
        return shard

    def activity_of(self, index_id: str) -> Activity:
        return self.activity.setdefault(index_id, Activity())

    # -- the DOCUMENTS view ----------------------------------------------------------------

    async def apply_document(self, msg: Msg, sequence: int) -> None:
        try:
            self._apply_document(msg)
        except (codec.DecodeError, ValueError, TrellisError) as exc:
            await self.bus.dead_letter(
                msg.subject,
                msg.data,
                msg.headers,
                exc,
                stream=topology.DOCUMENTS.name,
                stream_sequence=sequence,
            )
        self._wake.set()

    def _apply_document(self, msg: Msg) -> None:
        subject = msg.subject
        if subject in (subjects.CRAWL_DOCUMENT_ADDED, subjects.CRAWL_DOCUMENT_MODIFIED):
            kind: type[DocumentAdded | DocumentModified | DocumentSubmitted] = (
                DocumentAdded if subject == subjects.CRAWL_DOCUMENT_ADDED else DocumentModified
            )
            meta, added = codec.decode(msg.data, kind)
            self.shard(added.document.index_id).put(added.document, meta.time)
        elif subject == subjects.INDEX_DOCUMENT_SUBMITTED:
            meta, submitted = codec.decode(msg.data, DocumentSubmitted)
            self.shard(submitted.document.index_id).put(submitted.document, meta.time)
        elif subject == subjects.CRAWL_DOCUMENT_DELETED:
            _, deleted = codec.decode(msg.data, DocumentDeleted)
            self.shard(deleted.index_id).delete(deleted.document_id)
        elif subject == subjects.INDEX_DOCUMENT_WITHDRAWN:
            _, withdrawn = codec.decode(msg.data, DocumentWithdrawn)
            self.shard(withdrawn.index_id).delete(withdrawn.document_id)
        elif subject == subjects.INDEX_FAQ_LOADED:
            _, faq = codec.decode(msg.data, FaqLoaded)
            self.shard(faq.index_id).set_faq(faq.faq_id, faq.entries, None)
        elif subject == subjects.INDEX_FAQ_REMOVED:
            _, removed = codec.decode(msg.data, FaqRemoved)
            self.shard(removed.index_id).drop_faq(removed.faq_id)
        elif subject == subjects.INDEX_INDEX_DROPPED:
            _, dropped = codec.decode(msg.data, IndexDropped)
            shard = self.shards.pop(dropped.index_id, None)
            if shard is not None:
                shard.destroy()
            self.activity.pop(dropped.index_id, None)
        else:
            raise ValueError(f"no handler for {subject}")

    # -- the INDEX_ACTIVITY view -----------------------------------------------------------

    async def apply_activity(self, msg: Msg, sequence: int) -> None:
        try:
            if msg.subject == subjects.INDEX_QUERY_LOGGED:
                meta, logged = codec.decode(msg.data, QueryLogged)
                activity = self.activity_of(logged.index_id)
                activity.queries.record(logged.query_text, logged.user_id, meta.time)
                activity.results[logged.query_id] = logged.results
                while len(activity.results) > KEPT_QUERIES:
                    activity.results.popitem(last=False)
            elif msg.subject == subjects.INDEX_FEEDBACK_SUBMITTED:
                _, feedback = codec.decode(msg.data, FeedbackSubmitted)
                self._count_feedback(feedback)
            else:
                raise ValueError(f"no handler for {msg.subject}")
        except (codec.DecodeError, ValueError) as exc:
            await self.bus.dead_letter(
                msg.subject,
                msg.data,
                msg.headers,
                exc,
                stream=topology.INDEX_ACTIVITY.name,
                stream_sequence=sequence,
            )

    def _count_feedback(self, feedback: FeedbackSubmitted) -> None:
        activity = self.activity_of(feedback.index_id)
        results = activity.results.get(feedback.query_id, {})
        for click in feedback.clicks:
            doc = results.get(click.result_id)
            if doc is not None:
                activity.feedback.setdefault(doc, Feedback()).clicks += 1
        for vote in feedback.votes:
            doc = results.get(vote.result_id)
            if doc is None:
                continue
            counts = activity.feedback.setdefault(doc, Feedback())
            if vote.relevance_value == "RELEVANT":
                counts.relevant += 1
            else:
                counts.not_relevant += 1

    # -- background work -------------------------------------------------------------------

    async def commit_loop(self, interval_s: float = 0.2) -> None:
        """Make applied documents searchable: one tantivy commit per shard per interval."""
        while True:
            await asyncio.sleep(interval_s)
            for shard in list(self.shards.values()):
                if shard.index_id in self.restoring:
                    continue
                if shard.keyword.dirty or shard.searchable_documents < len(shard.table):
                    # On the loop, not a thread: the tantivy writer takes one caller at a time.
                    try:
                        shard.commit()
                    except Exception:  # a failed commit is retried next round; never stop
                        log.exception("commit of index %s failed", shard.index_id)

    async def embed_loop(self) -> None:
        """Embed passages and FAQ questions as they arrive; back off while inference is away."""
        delay = 0.5
        while True:
            # Round robin over indexes: a large backlog in one must not starve the others.
            shards = list(self.shards.values())
            self._turn = (self._turn + 1) % max(len(shards), 1)
            work = next(
                (
                    (s, s.next_to_embed(EMBED_CHUNK))
                    for s in shards[self._turn :] + shards[: self._turn]
                    if s.pending_vectors and s.index_id not in self.restoring
                ),
                None,
            )
            faq = next(((s, f) for s in self.shards.values() for f in s.faqs_to_embed()), None)
            if work is None and faq is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                if faq is not None:
                    shard, faq_id = faq
                    entries = shard.faqs.get(faq_id, [])
                    vectors = await self.embedder.embed([e.question for e in entries])
                    if shard.faqs.get(faq_id) is entries:
                        shard.set_faq(faq_id, entries, vectors)
                if work is not None:
                    shard, batch = work
                    vectors = await self.embedder.embed([text for _, text in batch])
                    shard.add_vectors([pid for pid, _ in batch], vectors)
                    self.embedded += len(batch)
                delay = 0.5
            except Exception as exc:  # the inference service may be down or restarting
                self.embed_failures += 1
                log.warning("embedding failed (retrying in %.1f s): %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    # -- snapshots -------------------------------------------------------------------------

    async def snapshot(self, store: ObjectStore, sequence: int, by: str) -> SnapshotManifest:
        """Write every shard as of `sequence` (the caller reads it with no await in between)."""
        exports = {
            index_id: (shard.export(), shard.export_faqs())
            for index_id, shard in self.shards.items()
        }
        manifest = SnapshotManifest(
            id=uuid.uuid4().hex,
            sequence=sequence,
            created_at=datetime.now(UTC),
            indexes=sorted(exports),
            by=by,
            pending_passages={i: len(s.pending_vectors) for i, s in self.shards.items()},
        )
        for index_id, ((documents, vectors, keys), faqs) in exports.items():
            body = {"documents": documents, "keys": keys, "faqs": faqs}
            packed = await asyncio.to_thread(gzip.compress, json.dumps(body).encode(), 6)
            await store.put(f"{manifest.id}/{index_id}.json.gz", packed)
            buffer = io.BytesIO()
            np.save(buffer, vectors.astype(np.float32), allow_pickle=False)
            await store.put(f"{manifest.id}/{index_id}.npy", buffer.getvalue())
        return manifest

    async def restore(self, store: ObjectStore, manifest: SnapshotManifest) -> None:
        for index_id in manifest.indexes:
            packed = (await store.get(f"{manifest.id}/{index_id}.json.gz")).data or b""
            body = json.loads(await asyncio.to_thread(gzip.decompress, packed))
            raw = (await store.get(f"{manifest.id}/{index_id}.npy")).data or b""
            vectors = np.load(io.BytesIO(raw), allow_pickle=False)
            shard = self.shard(index_id)
            keys = [(str(doc), int(i)) for doc, i in body["keys"]]
            # Off the loop (it re-indexes every document); the commit and embed loops leave a
            # shard alone while it is restored, so its tantivy writer has one user.
            self.restoring.add(index_id)
            try:
                await asyncio.to_thread(shard.restore, body["documents"], vectors, keys)
            finally:
                self.restoring.discard(index_id)
            for faq_id, faq in body["faqs"].items():
                vectors_of = faq.get("vectors")
                shard.set_faq(
                    faq_id,
                    [FaqEntry.model_validate(e) for e in faq["entries"]],
                    np.asarray(vectors_of, np.float32) if vectors_of is not None else None,
                )
        self._wake.set()

    def reset(self) -> None:
        """Forget every shard (a failed restore): the log is replayed from its start."""
        for shard in self.shards.values():
            shard.destroy()
        self.shards.clear()

    def close(self) -> None:
        for shard in self.shards.values():
            shard.close()
