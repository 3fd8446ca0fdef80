"""Reading AFD-format event files: reserved columns, per-row validation with reasons (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl

RESERVED = (
    "EVENT_ID",
    "EVENT_TIMESTAMP",
    "ENTITY_TYPE",
    "ENTITY_ID",
    "EVENT_LABEL",
    "LABEL_TIMESTAMP",
)
REQUIRED_FOR_IMPORT = ("EVENT_ID", "EVENT_TIMESTAMP", "ENTITY_TYPE", "ENTITY_ID")
_ISO = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})$"
_ID = r"^[0-9a-z_-]{1,64}$"
_ENTITY_ID = r"^[0-9A-Za-z_.@+-]{1,256}$"


@dataclass(frozen=True)
class RowError:
    row: int  # 1-based data row, as a spreadsheet shows it after the header
    reason: str


@dataclass(frozen=True)
class ImportedRows:
    events: list[dict[str, Any]]
    errors: list[RowError]
    total: int


def normalise_columns(frame: pl.DataFrame) -> pl.DataFrame:
    """Reserved columns in upper case, variables in lower case, as AFD reads them."""
    renames = {}
    for column in frame.columns:
        upper = column.strip().upper()
        renames[column] = upper if upper in RESERVED else column.strip().lower()
    frame = frame.rename(renames)
    empty = [c for c in frame.columns if c == ""]
    return frame.drop(empty) if empty else frame


def read_events(
    frame: pl.DataFrame,
    *,
    variables: Mapping[str, str],  # name -> data type
    labels: Sequence[str],
    entity_types: Sequence[str],
    require_ids: bool = True,
) -> ImportedRows:
    """Check every row; good rows come back as dicts, bad ones as reasons. Nothing raises per row."""
    frame = normalise_columns(frame)
    needed = REQUIRED_FOR_IMPORT if require_ids else ("EVENT_TIMESTAMP",)
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"the file lacks the required columns {missing}")
    unknown = sorted(set(frame.columns) - set(RESERVED) - set(variables))
    if unknown:
        raise ValueError(f"columns {unknown} are not variables of the event type")
    frame = frame.with_row_index("_row", offset=1).with_columns(
        pl.col(c).cast(pl.Utf8) for c in frame.columns
    )
    problems: list[pl.Expr] = []

    def problem(condition: pl.Expr, reason: str) -> None:
        problems.append(pl.when(condition).then(pl.lit(reason)).otherwise(None))

    ts = pl.col("EVENT_TIMESTAMP")
    problem(ts.is_null() | ~ts.str.contains(_ISO), "EVENT_TIMESTAMP missing or not ISO 8601 UTC")
    if require_ids:
        problem(
            pl.col("EVENT_ID").is_null() | ~pl.col("EVENT_ID").str.contains(_ID),
            "EVENT_ID missing or invalid",
        )
        problem(
            pl.col("ENTITY_ID").is_null() | ~pl.col("ENTITY_ID").str.contains(_ENTITY_ID),
            "ENTITY_ID missing or invalid",
        )
        problem(
            ~pl.col("ENTITY_TYPE").is_in(list(entity_types)),
            f"ENTITY_TYPE not in {list(entity_types)}",
        )
    if "EVENT_LABEL" in frame.columns:
        problem(
            pl.col("EVENT_LABEL").is_not_null() & ~pl.col("EVENT_LABEL").is_in(list(labels)),
            f"EVENT_LABEL not in {list(labels)}",
        )
    if "LABEL_TIMESTAMP" in frame.columns:
        lts = pl.col("LABEL_TIMESTAMP")
        problem(lts.is_not_null() & ~lts.str.contains(_ISO), "LABEL_TIMESTAMP not ISO 8601 UTC")
    for name, data_type in variables.items():
        if name not in frame.columns:
            continue
        value = pl.col(name)
        if data_type == "INTEGER":
            problem(
                value.is_not_null() & value.cast(pl.Int64, strict=False).is_null(),
                f"{name} is not an INTEGER",
            )
        elif data_type == "FLOAT":
            problem(
                value.is_not_null() & value.cast(pl.Float64, strict=False).is_null(),
                f"{name} is not a FLOAT",
            )
        elif data_type == "BOOLEAN":
            problem(
                value.is_not_null() & ~value.str.to_lowercase().is_in(["true", "false"]),
                f"{name} is not a BOOLEAN",
            )
    checked = frame.with_columns(
        pl.concat_str(problems, separator="; ", ignore_nulls=True).alias("_problem")
    )
    bad = checked.filter(pl.col("_problem").str.len_chars() > 0)
    good = checked.filter(pl.col("_problem").is_null() | (pl.col("_problem").str.len_chars() == 0))
    good = good.with_columns(
        pl.col("EVENT_TIMESTAMP")
        .str.replace("Z$", "+00:00")
        .str.to_datetime(time_zone="UTC", time_unit="us")
    )
    if "LABEL_TIMESTAMP" in good.columns:
        good = good.with_columns(
            pl.col("LABEL_TIMESTAMP")
            .str.replace("Z$", "+00:00")
            .str.to_datetime(time_zone="UTC", time_unit="us")
        )
    events = good.drop("_row", "_problem").to_dicts()
    errors = [
        RowError(int(r["_row"]), str(r["_problem"]))
        for r in bad.select("_row", "_problem").to_dicts()
    ]
    return ImportedRows(events, errors, frame.height)


def event_fields(row: Mapping[str, Any], variables: Sequence[str]) -> dict[str, Any]:
    """The EventSent fields of one good row."""
    label_ts: datetime | None = row.get("LABEL_TIMESTAMP")
    return {
        "event_id": row["EVENT_ID"],
        "event_timestamp": row["EVENT_TIMESTAMP"],
        "entity_type": row["ENTITY_TYPE"],
        "entity_id": row["ENTITY_ID"],
        "label": row.get("EVENT_LABEL"),
        "label_timestamp": label_ts or (row["EVENT_TIMESTAMP"] if row.get("EVENT_LABEL") else None),
        "variables": {v: row[v] for v in variables if row.get(v) is not None},
    }
