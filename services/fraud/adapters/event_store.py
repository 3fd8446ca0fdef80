"""Stored events as Parquet (polars): a log of puts, label updates and deletes, resolved on read."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from contracts.fraud import EventDeleted, EventLabelUpdated, EventSent

TS = pl.Datetime("us", "UTC")
BASE_SCHEMA: dict[str, Any] = {
    "_seq": pl.Int64,
    "_op": pl.Utf8,  # put | label | delete
    "EVENT_ID": pl.Utf8,
    "EVENT_TIMESTAMP": TS,
    "ENTITY_TYPE": pl.Utf8,
    "ENTITY_ID": pl.Utf8,
    "EVENT_LABEL": pl.Utf8,
    "LABEL_TIMESTAMP": TS,
}
META_COLUMNS = tuple(c for c in BASE_SCHEMA if not c.startswith("_"))
TIMESTAMP_COLUMNS = tuple(c for c, t in BASE_SCHEMA.items() if t == TS)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _epoch_us(value: datetime) -> int:
    """Microseconds since the epoch: the in-memory tail keeps timestamps as integers because
    polars builds a column of ints ~20x faster than one of datetimes, and a flush builds its
    frame while holding the GIL (the event loop waits meanwhile)."""
    delta = (value if value.tzinfo else value.replace(tzinfo=UTC)) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _part_name(sequence: int) -> str:
    """Parts sort by the last stream sequence they hold; the suffix keeps every name unique."""
    return f"part-{sequence:012d}-{secrets.token_hex(4)}.parquet"


def _read_parts(parts: list[Path]) -> pl.DataFrame:
    """The log rows of several parts, in their order."""
    return pl.concat([pl.read_parquet(p) for p in parts], how="diagonal_relaxed")


def _rows(part: Path) -> int:
    """A part's row count, from its footer."""
    return int(pl.scan_parquet(part).select(pl.len()).collect().item())


def _safe_name(event_type: str) -> str:
    if not event_type or "/" in event_type or event_type.startswith("."):
        raise ValueError(f"invalid event type name {event_type!r}")
    return event_type


class EventStore:
    """One replica's copy of the stored events, rebuilt from the FRAUD_EVENTS stream.

    Writes land in an in-memory tail; `flush()` writes the tail as a Parquet part and records
    the last stream sequence it holds, so a restart replays only what came after.
    `compact()` resolves the log of one event type into a single part.
    """

    def __init__(self, root: Path, *, flush_rows: int = 20_000) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.flush_rows = flush_rows
        self._tail: dict[str, list[dict[str, Any]]] = {}
        self._flushing: dict[
            str, list[dict[str, Any]]
        ] = {}  # being written: still visible to reads
        self._lock = threading.Lock()
        self._state_path = self.root / "state.json"
        self.flushed_seq = (
            json.loads(self._state_path.read_text())["seq"] if self._state_path.exists() else 0
        )
        self.applied_seq = self.flushed_seq

    # -- applying the log ---------------------------------------------------------------------

    def _append(self, event_type: str, row: dict[str, Any]) -> None:
        with self._lock:
            self._tail.setdefault(_safe_name(event_type), []).append(row)
            self.applied_seq = max(self.applied_seq, row["_seq"])

    def apply_sent(self, seq: int, event: EventSent) -> None:
        row: dict[str, Any] = {
            "_seq": seq,
            "_op": "put",
            "EVENT_ID": event.event_id,
            "EVENT_TIMESTAMP": _epoch_us(event.event_timestamp),
            "ENTITY_TYPE": event.entity_type,
            "ENTITY_ID": event.entity_id,
            "EVENT_LABEL": event.label,
            "LABEL_TIMESTAMP": _epoch_us(event.label_timestamp) if event.label_timestamp else None,
        }
        row.update({f"v:{k}": v for k, v in event.variables.items()})
        self._append(event.event_type, row)

    def apply_label(self, seq: int, update: EventLabelUpdated) -> None:
        self._append(
            update.event_type,
            {
                "_seq": seq,
                "_op": "label",
                "EVENT_ID": update.event_id,
                "EVENT_LABEL": update.label,
                "LABEL_TIMESTAMP": _epoch_us(update.label_timestamp),
            },
        )

    def apply_deleted(self, seq: int, deleted: EventDeleted) -> None:
        self._append(
            deleted.event_type, {"_seq": seq, "_op": "delete", "EVENT_ID": deleted.event_id}
        )

    def apply_purged(self, seq: int, event_type: str) -> None:
        with self._lock:
            self._tail.pop(_safe_name(event_type), None)
            shutil.rmtree(self.root / event_type, ignore_errors=True)
            self.applied_seq = max(self.applied_seq, seq)

    # -- durability ----------------------------------------------------------------------------

    def tail_rows(self) -> int:
        return sum(len(rows) for rows in self._tail.values())

    def flush(self) -> None:
        with self._lock:
            tails, self._tail = self._tail, {}
            self._flushing = tails
            seq = self.applied_seq
        for event_type, rows in tails.items():
            if rows:
                frame = self._frame(rows)
                directory = self.root / event_type
                directory.mkdir(parents=True, exist_ok=True)
                name = _part_name(rows[-1]["_seq"])
                tmp = directory / f".{name}.tmp"
                frame.write_parquet(tmp, compression="zstd")
                os.replace(tmp, directory / name)
        with self._lock:
            self._flushing = {}
        self._write_state(seq)

    def _write_state(self, seq: int) -> None:
        tmp = self._state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"seq": seq}))
        os.replace(tmp, self._state_path)
        self.flushed_seq = seq

    def compact(self, event_type: str) -> None:
        """Rewrite one event type's parts as a single resolved part (flushes first)."""
        self.flush()
        directory = self.root / _safe_name(event_type)
        parts = sorted(directory.glob("part-*.parquet")) if directory.exists() else []
        if len(parts) < 2:
            return
        self._replace(directory, parts, self._resolve(_read_parts(parts)))

    def maintain(self, max_parts: int = 16) -> list[str]:
        """Keep reads to a few files: with a flush every few seconds, parts pile up by thousands
        a day. Past `max_parts`, the parts after the oldest are merged into one (log rows kept
        as they are, so a delete or label still reaches an event in the older part); once those
        hold half as many rows as the oldest part, everything is resolved into one (`compact`). So each row is
        rewritten a bounded number of times, not at every merge. Returns the event types done."""
        done = []
        for directory in sorted(p for p in self.root.iterdir() if p.is_dir()):
            if directory.name.startswith("."):
                continue
            parts = sorted(directory.glob("part-*.parquet"))
            if len(parts) <= max_parts:
                continue
            oldest, recent = parts[0], parts[1:]
            if 2 * sum(_rows(p) for p in recent) >= _rows(oldest):
                self.compact(directory.name)
            else:
                self._replace(directory, recent, _read_parts(recent))
            done.append(directory.name)
        return done

    def _replace(self, directory: Path, parts: list[Path], frame: pl.DataFrame) -> None:
        """Write `frame` as one part in place of `parts`, sorting where the last of them did."""
        # A new name, never the old last part's: readers (and parquet readers' caches) must
        # never see different bytes under a path they already listed.
        name = _part_name(int(parts[-1].name.split("-")[1]))
        tmp = directory / f".{name}.tmp"
        frame.write_parquet(tmp, compression="zstd")
        with self._lock:
            os.replace(tmp, directory / name)
            for part in parts:
                part.unlink()

    # -- reading -------------------------------------------------------------------------------

    @staticmethod
    def _frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
        variables = sorted({k for row in rows for k in row if k.startswith("v:")})
        as_integers = {c: pl.Int64 for c in TIMESTAMP_COLUMNS}
        schema = {**BASE_SCHEMA, **as_integers, **{v: pl.Utf8 for v in variables}}
        return pl.DataFrame(rows, schema=schema).with_columns(
            pl.col(c).cast(pl.Datetime("us")).dt.replace_time_zone("UTC") for c in as_integers
        )

    def _log(self, event_type: str) -> pl.DataFrame:
        directory = self.root / _safe_name(event_type)
        for _ in range(5):
            # Parts and in-memory rows are listed together, so a concurrent flush hides nothing;
            # a row both in memory and in a fresh part is harmless (resolving is idempotent).
            with self._lock:
                parts = sorted(directory.glob("part-*.parquet")) if directory.exists() else []
                tail = [*self._flushing.get(event_type, []), *self._tail.get(event_type, [])]
            try:
                frames = [pl.read_parquet(p) for p in parts]
                break
            except FileNotFoundError:  # compacted while we read: list again
                continue
        else:
            raise RuntimeError(f"the event store of {event_type!r} keeps changing; try again")
        if tail:
            frames.append(self._frame(tail))
        if not frames:
            return pl.DataFrame(schema=BASE_SCHEMA)
        return pl.concat(frames, how="diagonal_relaxed")

    @staticmethod
    def _resolve(log: pl.DataFrame) -> pl.DataFrame:
        """Apply the log: the last put per (id, timestamp) wins, later labels apply, deletes remove."""
        # Stable sorts: the events of one group-committed message share a sequence, and their
        # order in the log (the order they were sent in) decides which of two copies wins.
        puts = log.filter(pl.col("_op") == "put").sort("_seq", maintain_order=True)
        puts = puts.unique(subset=["EVENT_ID", "EVENT_TIMESTAMP"], keep="last", maintain_order=True)
        deletes = (
            log.filter(pl.col("_op") == "delete")
            .group_by("EVENT_ID")
            .agg(pl.col("_seq").max().alias("_del"))
        )
        labels = (
            log.filter(pl.col("_op") == "label")
            .sort("_seq", maintain_order=True)
            .group_by("EVENT_ID")
            .agg(
                pl.col("_seq").last().alias("_lseq"),
                pl.col("EVENT_LABEL").last().alias("_label"),
                pl.col("LABEL_TIMESTAMP").last().alias("_lts"),
            )
        )
        out = puts.join(deletes, on="EVENT_ID", how="left").filter(
            pl.col("_del").is_null() | (pl.col("_seq") > pl.col("_del"))
        )
        out = out.join(labels, on="EVENT_ID", how="left").with_columns(
            pl.when(pl.col("_lseq") > pl.col("_seq"))
            .then(pl.col("_label"))
            .otherwise(pl.col("EVENT_LABEL"))
            .alias("EVENT_LABEL"),
            pl.when(pl.col("_lseq") > pl.col("_seq"))
            .then(pl.col("_lts"))
            .otherwise(pl.col("LABEL_TIMESTAMP"))
            .alias("LABEL_TIMESTAMP"),
        )
        return out.drop("_del", "_lseq", "_label", "_lts").sort("EVENT_TIMESTAMP")

    def events(
        self, event_type: str, *, start: datetime | None = None, end: datetime | None = None
    ) -> pl.DataFrame:
        """The stored events, one row each: the AFD columns, then one Utf8 column per variable."""
        resolved = self._resolve(self._log(event_type))
        if start is not None:
            resolved = resolved.filter(pl.col("EVENT_TIMESTAMP") >= start)
        if end is not None:
            resolved = resolved.filter(pl.col("EVENT_TIMESTAMP") <= end)
        variables = [c for c in resolved.columns if c.startswith("v:")]
        return resolved.select(*META_COLUMNS, *[pl.col(v).alias(v[2:]) for v in variables])

    def get(self, event_type: str, event_id: str) -> dict[str, Any] | None:
        found = self.events(event_type).filter(pl.col("EVENT_ID") == event_id)
        if found.is_empty():
            return None
        return found.sort("EVENT_TIMESTAMP").row(-1, named=True)

    def statistics(self, event_type: str) -> dict[str, Any]:
        events = self.events(event_type)
        directory = self.root / _safe_name(event_type)
        size = (
            sum(p.stat().st_size for p in directory.glob("*.parquet")) if directory.exists() else 0
        )
        stats: dict[str, Any] = {
            "numberOfEvents": events.height,
            "eventDataSizeInBytes": int(size or events.estimated_size()),
        }
        if events.height:
            stats["leastRecentEvent"] = _iso(events["EVENT_TIMESTAMP"].min())
            stats["mostRecentEvent"] = _iso(events["EVENT_TIMESTAMP"].max())
        stats["lastUpdatedTime"] = _iso(datetime.now(UTC))
        return stats

    def has_events(self, event_type: str) -> bool:
        return self.events(event_type).height > 0


def _iso(value: Any) -> str:
    moment = value if isinstance(value, datetime) else datetime.now(UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
