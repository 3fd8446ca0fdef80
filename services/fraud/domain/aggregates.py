"""Per-entity history aggregates for Transaction Fraud Insights, computed without look-ahead."""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

# Tie rule: an event at time t sees exactly the entity's events with timestamp < t. Events that
# share a timestamp never see each other, whatever order they arrive in, so a batch (where their
# order is arbitrary) and an online stream agree. A window w covers [t - w, t).

DEFAULT_WINDOWS: tuple[timedelta, ...] = (
    timedelta(hours=1),
    timedelta(days=1),
    timedelta(days=7),
    timedelta(days=30),
)
ENTITY_FEATURE_PREFIX = "ENTITY_ID"

# Amounts are summed as integers in units of 1/AMOUNT_SCALE: integer sums do not depend on the
# order of addition, so the batch path and the online path give bit-identical sums and means.
AMOUNT_SCALE = 10_000
# Bound on one scaled amount (about 9e8 currency units): sums of up to 1024 of them stay below
# 2**53, so converting a window's integer sum to float is exact on both paths.
_MAX_SCALED = 2.0**53 / 1024

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def window_label(window: timedelta) -> str:
    """Short name of a window: 1h, 1d, 7d, 30d, 15m, 90s."""
    seconds = int(window.total_seconds())
    if seconds <= 0 or window != timedelta(seconds=seconds):
        raise ValueError(f"windows must be a positive whole number of seconds, got {window}")
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def aggregate_feature_names(
    windows: Sequence[timedelta], amount_variable: str | None, value_variables: Sequence[str]
) -> list[str]:
    """Names of the aggregate features, in output order."""
    labels = [window_label(w) for w in windows]
    names = [f"{ENTITY_FEATURE_PREFIX}__count_{lb}" for lb in labels]
    if amount_variable is not None:
        names += [f"{amount_variable}__entity_sum_{lb}" for lb in labels]
        names += [f"{amount_variable}__entity_mean_{lb}" for lb in labels]
    names.append(f"{ENTITY_FEATURE_PREFIX}__secs_since_prev")
    for v in value_variables:
        names += [f"{v}__entity_same_count", f"{v}__entity_distinct"]
    return names


def aggregate_feature_variables(
    windows: Sequence[timedelta], amount_variable: str | None, value_variables: Sequence[str]
) -> dict[str, str]:
    """Each aggregate feature -> the input it summarises ("ENTITY_ID", the amount or a value variable)."""
    out: dict[str, str] = {}
    for name in aggregate_feature_names(windows, amount_variable, value_variables):
        prefix = name.rsplit("__", 1)[0]
        out[name] = prefix
    return out


def scaled_amount(amount: float | None) -> int | None:
    """Amount in integer units of 1/AMOUNT_SCALE (None when missing, not finite or absurdly large)."""
    if amount is None or not math.isfinite(amount):
        return None
    scaled = amount * AMOUNT_SCALE + 0.5
    if abs(scaled) > _MAX_SCALED:
        return None
    return math.floor(scaled)


def scaled_amount_expr(amount: pl.Expr) -> pl.Expr:
    """Polars twin of `scaled_amount` (same float operations, so the same integers)."""
    scaled = amount.cast(pl.Float64) * float(AMOUNT_SCALE) + 0.5
    ok = scaled.is_finite() & (scaled.abs() <= _MAX_SCALED)
    return pl.when(ok).then(scaled.floor().cast(pl.Int64)).otherwise(None)


def parse_amount_expr(column: pl.Expr) -> pl.Expr:
    """Raw amount string (or number) -> Float64, null when unparseable."""
    return column.cast(pl.Utf8).str.strip_chars().cast(pl.Float64, strict=False)


def _to_us(ts: datetime) -> int:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return (ts - _EPOCH) // _US


@dataclass
class _EntityState:
    ts: list[int] = field(default_factory=list)  # recent events, ascending
    amounts: list[int | None] = field(default_factory=list)
    values: list[tuple[str | None, ...]] = field(default_factory=list)
    value_counts: list[dict[str, int]] = field(default_factory=list)
    keys: list[str | None] = field(default_factory=list)  # each recent event's identity
    last_ts: int | None = None
    before_last_ts: int | None = None  # greatest timestamp strictly below last_ts


class EntityHistory:
    """State for online prediction: per entity, its recent events; updated as events arrive.

    Only events within the largest window of the entity's latest event are kept, plus per-entity
    counts of each value variable's values (all time). `features` counts only events strictly
    before the asked timestamp; that is exact for events observed in time order, for ties, and for
    late events up to the largest window behind the entity's latest one.
    """

    def __init__(
        self,
        *,
        windows: Sequence[timedelta] = DEFAULT_WINDOWS,
        amount_variable: str | None,
        value_variables: Sequence[str],
    ) -> None:
        if not windows:
            raise ValueError("at least one window is needed")
        self.windows = tuple(windows)
        self.amount_variable = amount_variable
        self.value_variables = tuple(value_variables)
        self.feature_names = aggregate_feature_names(
            self.windows, amount_variable, self.value_variables
        )
        for w in self.windows:
            window_label(w)
        self._windows_us = [w // _US for w in self.windows]
        self._horizon_us = max(self._windows_us)
        self._entities: dict[str, _EntityState] = {}

    def __len__(self) -> int:
        return len(self._entities)

    def observe(
        self,
        entity_id: str,
        timestamp: datetime,
        amount: float | None,
        values: Mapping[str, str | None],
        *,
        key: str | None = None,
    ) -> None:
        """Record an event of `entity_id` (call after scoring it).

        `key` names the event (AFD: its id and timestamp): an event seen again with the same key
        replaces the earlier one, as a resent event overwrites the stored one, instead of
        counting twice (for events still within the largest window).
        """
        st = self._entities.get(entity_id)
        if st is None:
            st = _EntityState(value_counts=[{} for _ in self.value_variables])
            self._entities[entity_id] = st
        t = _to_us(timestamp)
        vals = tuple(values.get(v) for v in self.value_variables)
        if key is not None and self._replace(st, key, t, amount, vals):
            return
        i = bisect.bisect_right(st.ts, t)
        st.ts.insert(i, t)
        st.amounts.insert(i, scaled_amount(amount))
        st.values.insert(i, vals)
        st.keys.insert(i, key)
        _count(st, vals, +1)
        if st.last_ts is None or t > st.last_ts:
            st.before_last_ts = st.last_ts
            st.last_ts = t
        elif t < st.last_ts and (st.before_last_ts is None or t > st.before_last_ts):
            st.before_last_ts = t
        cut = bisect.bisect_left(st.ts, st.last_ts - self._horizon_us)
        if cut:
            del st.ts[:cut], st.amounts[:cut], st.values[:cut], st.keys[:cut]

    @staticmethod
    def _replace(
        st: _EntityState, key: str, t: int, amount: float | None, vals: tuple[str | None, ...]
    ) -> bool:
        for i in range(bisect.bisect_left(st.ts, t), bisect.bisect_right(st.ts, t)):
            if st.keys[i] == key:
                _count(st, st.values[i], -1)
                st.amounts[i] = scaled_amount(amount)
                st.values[i] = vals
                _count(st, vals, +1)
                return True
        return False

    def features(
        self, entity_id: str, timestamp: datetime, values: Mapping[str, str | None]
    ) -> dict[str, float]:
        """Aggregates for an event of `entity_id` at `timestamp`, from its events strictly before it."""
        t = _to_us(timestamp)
        st = self._entities.get(entity_id)
        ts: list[int] = st.ts if st is not None else []
        end = bisect.bisect_left(ts, t)
        out: list[float] = []
        starts = [bisect.bisect_left(ts, t - w, 0, end) for w in self._windows_us]
        out += [float(end - s) for s in starts]
        if self.amount_variable is not None:
            sums: list[float] = []
            means: list[float] = []
            for s in starts:
                total, n = 0, 0
                if st is not None:
                    for a in st.amounts[s:end]:
                        if a is not None:
                            total += a
                            n += 1
                amount_sum = total / AMOUNT_SCALE
                sums.append(amount_sum)
                means.append(amount_sum / n if n else math.nan)
            out += sums + means
        out.append(self._secs_since_prev(st, t, end))
        late: list[Counter[str]] = [Counter() for _ in self.value_variables]
        if st is not None:
            for vals in st.values[end:]:
                for c, val in zip(late, vals, strict=True):
                    if val is not None:
                        c[val] += 1
        for j, v in enumerate(self.value_variables):
            counts = st.value_counts[j] if st is not None else {}
            val = values.get(v)
            same = math.nan if val is None else float(counts.get(val, 0) - late[j][val])
            gone = sum(1 for k, c in late[j].items() if counts[k] == c)
            out += [same, float(len(counts) - gone)]
        return dict(zip(self.feature_names, out, strict=True))

    @staticmethod
    def _secs_since_prev(st: _EntityState | None, t: int, end: int) -> float:
        if st is None or st.last_ts is None:
            return math.nan
        if st.last_ts < t:
            prev: int | None = st.last_ts
        elif end > 0:
            prev = st.ts[end - 1]
        elif st.before_last_ts is not None and st.before_last_ts < t:
            prev = st.before_last_ts
        else:
            prev = None
        return math.nan if prev is None else (t - prev) / 1_000_000

    def to_dict(self) -> dict[str, Any]:
        """JSON-able snapshot of the state."""
        return {
            "windows_s": [int(w.total_seconds()) for w in self.windows],
            "amount_variable": self.amount_variable,
            "value_variables": list(self.value_variables),
            "entities": {
                k: {
                    "ts": st.ts,
                    "amounts": st.amounts,
                    "values": [list(v) for v in st.values],
                    "value_counts": st.value_counts,
                    "keys": st.keys,
                    "last_ts": st.last_ts,
                    "before_last_ts": st.before_last_ts,
                }
                for k, st in self._entities.items()
            },
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EntityHistory:
        h = cls(
            windows=[timedelta(seconds=s) for s in d["windows_s"]],
            amount_variable=d["amount_variable"],
            value_variables=d["value_variables"],
        )
        for k, e in d["entities"].items():
            h._entities[k] = _EntityState(
                ts=list(e["ts"]),
                amounts=list(e["amounts"]),
                values=[tuple(v) for v in e["values"]],
                value_counts=[dict(c) for c in e["value_counts"]],
                keys=list(e.get("keys") or [None] * len(e["ts"])),
                last_ts=e["last_ts"],
                before_last_ts=e["before_last_ts"],
            )
        return h


def _count(st: _EntityState, vals: tuple[str | None, ...], step: int) -> None:
    for counts, val in zip(st.value_counts, vals, strict=True):
        if val is not None:
            left = counts.get(val, 0) + step
            if left:
                counts[val] = left
            else:
                counts.pop(val, None)


def _codes(expr: pl.Expr) -> pl.Expr:
    """Distinct strings -> distinct small integers (null stays null)."""
    return expr.cast(pl.Utf8).cast(pl.Categorical).to_physical().cast(pl.Int64)


def batch_aggregates(
    events: pl.DataFrame,
    *,
    windows: Sequence[timedelta] = DEFAULT_WINDOWS,
    amount_variable: str | None,
    value_variables: Sequence[str],
) -> pl.DataFrame:
    """Aggregates for every event from the same entity's earlier events; one Float64 row per input row.

    `events` needs ENTITY_ID (Utf8) and EVENT_TIMESTAMP (Datetime); the amount (a string or a
    number) and value columns may be absent (then all missing). Rows without an entity or a
    timestamp get NaN everywhere. Fully vectorised: integer sort keys, prefix sums, searchsorted.
    """
    names = aggregate_feature_names(windows, amount_variable, value_variables)
    cols = set(events.columns)

    def col(name: str) -> pl.Expr:
        return pl.col(name) if name in cols else pl.lit(None, dtype=pl.Utf8)

    amount = (
        scaled_amount_expr(parse_amount_expr(col(amount_variable)))
        if amount_variable is not None
        else pl.lit(None, dtype=pl.Int64)
    )
    frame = events.select(
        _codes(pl.col("ENTITY_ID")).alias("e"),
        pl.col("EVENT_TIMESTAMP").dt.epoch("us").alias("t"),
        amount.alias("a"),
        *[_codes(col(v)).alias(f"v{j}") for j, v in enumerate(value_variables)],
    )
    out = np.full((events.height, len(names)), np.nan)
    rows = np.flatnonzero(
        frame.select(pl.col("e").is_not_null() & pl.col("t").is_not_null()).to_series().to_numpy()
    )
    if len(rows) == 0:
        return pl.DataFrame(out, schema=names)
    frame = frame[rows]
    ent0 = frame["e"].to_numpy().astype(np.int64)
    t0 = frame["t"].to_numpy().astype(np.int64)
    # Timestamps are replaced by their rank so that (entity, time) packs into one int64 key; all
    # work happens in key order, where numpy's searchsorted runs fastest on its sorted queries.
    times, t_rank0 = np.unique(t0, return_inverse=True)
    order = np.argsort((ent0 << 32) | t_rank0, kind="stable")
    ent, t, t_rank = ent0[order], t0[order], t_rank0[order]
    ent_key = ent << 32
    key = ent_key | t_rank
    first = np.searchsorted(key, ent_key)  # the entity's first event
    before = np.searchsorted(key, key)  # the entity's first event at t (so: count before t)
    features: list[np.ndarray[Any, np.dtype[np.float64]]] = []
    starts = [
        np.searchsorted(key, ent_key | np.searchsorted(times, times - w // _US)[t_rank])
        for w in windows
    ]
    features += [(before - lo).astype(np.float64) for lo in starts]
    if amount_variable is not None:
        amt = frame["a"].fill_null(0).to_numpy().astype(np.int64)[order]
        present = frame["a"].is_not_null().to_numpy()[order]
        # Integer prefix sums: a window's sum is a difference of two, exact even if a prefix wraps.
        csum = np.concatenate([[0], np.cumsum(amt)])
        ccount = np.concatenate([[0], np.cumsum(present.astype(np.int64))])
        sums = [(csum[before] - csum[lo]).astype(np.float64) / float(AMOUNT_SCALE) for lo in starts]
        counts = [ccount[before] - ccount[lo] for lo in starts]
        features += sums
        with np.errstate(divide="ignore", invalid="ignore"):
            features += [
                np.where(k > 0, s / k.astype(np.float64), np.nan)
                for s, k in zip(sums, counts, strict=True)
            ]
    prev_t = t[np.maximum(before - 1, 0)]
    features.append(np.where(before > first, (t - prev_t).astype(np.float64) / 1_000_000.0, np.nan))
    for j in range(len(value_variables)):
        features += _value_features(frame[f"v{j}"].gather(order), ent, t_rank)
    out[rows[order]] = np.column_stack(features)
    return pl.DataFrame(out, schema=names)


def _value_features(
    values: pl.Series, ent: np.ndarray[Any, np.dtype[np.int64]], t_rank: np.ndarray[Any, Any]
) -> list[np.ndarray[Any, np.dtype[np.float64]]]:
    """(times the entity used this value before, distinct values it used before), rows in key order."""
    same = np.full(len(ent), np.nan)
    idx = np.flatnonzero(values.is_not_null().to_numpy())
    pair = (ent[idx] << 32) | values.gather(idx).to_numpy().astype(np.int64)
    # Rows are in (entity, time) order, so a stable sort by (entity, value) leaves time sorted.
    order = np.argsort(pair, kind="stable")
    sp, st = pair[order], t_rank[idx][order]
    pos = np.arange(len(order))
    new_pair = np.ones(len(order), bool)
    new_pair[1:] = sp[1:] != sp[:-1]
    new_run = new_pair.copy()
    new_run[1:] |= st[1:] != st[:-1]
    pair_start = np.maximum.accumulate(np.where(new_pair, pos, 0)) if len(pos) else pos
    run_start = np.maximum.accumulate(np.where(new_run, pos, 0)) if len(pos) else pos
    same[idx[order]] = (run_start - pair_start).astype(np.float64)
    # A value counts as "seen before t" once its first use by the entity is strictly before t.
    firsts = np.sort(((sp[new_pair] >> 32) << 32) | st[new_pair])
    ent_key = ent << 32
    distinct = np.searchsorted(firsts, ent_key | t_rank) - np.searchsorted(firsts, ent_key)
    return [same, distinct.astype(np.float64)]
