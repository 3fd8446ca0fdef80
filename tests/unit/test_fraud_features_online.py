"""The one-event feature path (no polars) gives exactly the batch path's values, or defers to it."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import numpy as np
import polars as pl
import pytest

from services.fraud.domain.features import FeaturePipeline, VariableSpec
from tests.unit.test_fraud_features import (
    REGISTRATION_VARIABLES,
    T0,
    TRANSACTION_VARIABLES,
    UA_CHROME,
    UA_IPHONE,
    _sample,
)

EVERY_KIND = [
    VariableSpec("email", "STRING", "EMAIL_ADDRESS"),
    VariableSpec("ip", "STRING", "IP_ADDRESS"),
    VariableSpec("bin", "STRING", "CARD_BIN"),
    VariableSpec("phone", "STRING", "PHONE_NUMBER"),
    VariableSpec("ua", "STRING", "USERAGENT"),
    VariableSpec("note", "STRING", "FREE_FORM_TEXT"),
    VariableSpec("state", "STRING", "BILLING_STATE", default_value=" unknown "),
    VariableSpec("amount", "FLOAT", "PRICE"),
    VariableSpec("count", "INTEGER", "NUMERIC", default_value="0"),
    VariableSpec("flag", "BOOLEAN", "CATEGORICAL"),
    VariableSpec("seen", "DATETIME", "CATEGORICAL"),
    VariableSpec("order", "STRING", "ORDER_ID"),
]
# Values chosen to sit on the edges of each derivation: separators, case, blanks, junk, numbers
# and timestamps in every spelling, plus non-ASCII text (which the one-event path defers).
EDGE_VALUES: dict[str, list[str | None]] = {
    "email": [
        "Alice.99@GMail.com", "no-at-sign", "a@b@c.org", "@example.com", "bob@", "x1y2z3@free.fr",
        "  spaced@mail.com ", "", None, "émile@exemple.fr", "\tTAB@HOTMAIL.COM",
    ],
    "ip": [
        "8.8.8.8", "10.0.0.1", "256.1.1.1", "01.2.3.4", "100.64.0.1", "::ffff:192.168.0.1",
        "2001:db8::1", "fe80::1", "junk", "1.2.3", "", None, "٣.1.1.1",
    ],
    "bin": ["411111", "4111-11", "x", "  52 ", "", None, "0"],
    "phone": ["+1 (415) 555-0100", "415.555.0100", "+44 20 7946 0958", "abc", "", None, "+1-800"],
    "ua": [UA_IPHONE, UA_CHROME, "curl/8.0", "Android tablet thing", "", None],
    "note": [
        "Fast delivery, please!", "  many   spaces\tand\nlines  ", "UPPER lower", "a", "",
        None, "naïve café", "x" * 300,
    ],
    "state": ["CA", "ny", "  ", "", None, "Québec"],
    "amount": [
        "12.50", "+1", "-0", ".5", "5.", "1e5", "1E+5", "1e400", "inf", "NaN", "1_000", "0x10",
        "abc", "", None, "00012",
    ],
    "count": ["3", "-7", "", None, "2.5", "x"],
    "flag": ["true", "FALSE", "Y", "n", "1", "0.0", "maybe", "", None],
    "seen": [
        "2024-01-01", "2024-03-04T10:11:12Z", "2024-03-04T10:11:12.123Z", "2024-03-04 23:59:59",
        "2024-03-04T10:11:12+05:30", "2024-03-04T01:11:12+0530", "2024-03-04 10:11:12-23:59",
        "2024-02-30", "2024-03-04T24:00:00Z", "2024-03-04T23:59:60Z", "2024-3-4",
        "2024-03-04T10:11Z", "2024-03-04T10:11:12+24:00", "yesterday", "", None,
    ],
    "order": ["o-1", None],
}  # fmt: skip


def _frame(rows: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    names = [k for k in rows[0] if k != "EVENT_TIMESTAMP"]
    frame = pl.DataFrame(
        {k: [r.get(k) for r in rows] for k in names}, schema=dict.fromkeys(names, pl.Utf8)
    )
    return frame.with_columns(
        pl.Series("EVENT_TIMESTAMP", [r["EVENT_TIMESTAMP"] for r in rows]).cast(
            pl.Datetime("us", "UTC")
        )
    )


def _identical(one: np.ndarray, batch: np.ndarray) -> bool:
    return bool(np.all((one == batch) | (np.isnan(one) & np.isnan(batch))))


def _rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return list(frame.iter_rows(named=True))


@pytest.mark.parametrize(
    ("name", "variables"),
    [
        ("registration_data_2K_coldstart.csv", REGISTRATION_VARIABLES),
        ("registration_data_20K_minimum.csv", None),
        ("transaction_data_2K_coldstart.csv", TRANSACTION_VARIABLES),
    ],
)
def test_one_event_path_equals_batch_on_afd_samples(
    name: str, variables: list[VariableSpec] | None
) -> None:
    events = _sample(name)
    if variables is None:  # the 20K sample carries a subset of the registration variables
        variables = [v for v in REGISTRATION_VARIABLES if v.name in events.columns]
    pipeline = FeaturePipeline.fit(events, variables)
    batch = pipeline.transform(events).to_numpy()
    for i, event in enumerate(_rows(events)):
        one = pipeline.transform_one(event)
        assert one is not None, f"row {i} deferred to the batch path: {event}"
        assert one.shape == (1, len(pipeline.feature_names)) and one.dtype == np.float32
        assert _identical(one[0], batch[i]), f"row {i}: {event}"


def test_one_event_path_equals_batch_on_edge_values() -> None:
    rng = random.Random(11)
    rows = [
        {
            **{k: rng.choice(values) for k, values in EDGE_VALUES.items()},
            "EVENT_TIMESTAMP": T0,
        }
        for _ in range(1500)
    ]
    # Every edge value appears at least once, in a row of its own.
    for key, values in EDGE_VALUES.items():
        for value in values:
            rows.append({**rows[0], key: value})
    frame = _frame(rows)
    pipeline = FeaturePipeline.fit(frame, EVERY_KIND, rare_min_count=2)
    deferred = 0
    for i, event in enumerate(rows):
        one = pipeline.transform_one(event)
        if one is None:
            deferred += 1
            continue
        expected = pipeline.transform(frame[i : i + 1]).to_numpy()[0]
        assert _identical(one[0], expected), f"row {i}: {event}"
    # Rows drawing any non-ASCII or oddly spelled value defer; the rest were all compared.
    assert deferred > 0 and len(rows) - deferred > 400


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("email", "émile@exemple.fr"),
        ("state", "Québec"),
        ("amount", "1_000"),
        ("seen", "2024-3-4"),
        ("seen", "2024-03-04T23:59:60Z"),
    ],
)
def test_values_the_batch_parser_reads_differently_defer_to_it(key: str, value: str) -> None:
    base = {k: v[0] for k, v in EDGE_VALUES.items()} | {"EVENT_TIMESTAMP": T0}
    pipeline = FeaturePipeline.fit(_frame([base]), EVERY_KIND)
    assert pipeline.transform_one(base) is not None
    assert pipeline.transform_one({**base, key: value}) is None


def test_tfi_one_event_path_equals_batch_when_replayed_in_time_order() -> None:
    events = _sample("transaction_data_2K_coldstart.csv")
    pipeline = FeaturePipeline.fit(
        events, TRANSACTION_VARIABLES, model_type="TRANSACTION_FRAUD_INSIGHTS"
    )
    batch = pipeline.transform(events).to_numpy()
    order = events.with_row_index("_i").sort("EVENT_TIMESTAMP", "_i")["_i"].to_list()
    history = pipeline.new_history()
    assert pipeline.transform_one(_rows(events[0:1])[0]) is None  # TFI needs the history
    for i in order:
        one = pipeline.transform_one(_rows(events[i : i + 1])[0], history=history)
        assert one is not None
        assert _identical(one[0], batch[i]), f"row {i}"
        pipeline.observe(history, events[i : i + 1])


def test_observe_one_records_what_the_batch_observe_records() -> None:
    events = _sample("transaction_data_2K_coldstart.csv")
    pipeline = FeaturePipeline.fit(
        events, TRANSACTION_VARIABLES, model_type="TRANSACTION_FRAUD_INSIGHTS"
    )
    reference, batch, one = (pipeline.new_history() for _ in range(3))
    pipeline.observe(reference, events)
    pipeline.observe(batch, events)
    for event in _rows(events):
        assert pipeline.observe_one(one, event)
    # Events resent through the other path replace themselves (keys agree across paths).
    newest = events.sort("EVENT_TIMESTAMP").tail(200)
    pipeline.observe(one, newest)
    for event in _rows(newest):
        assert pipeline.observe_one(batch, event)
    probe = newest.with_columns(  # the same entities an hour later: they count the newest events
        pl.col("EVENT_TIMESTAMP") + timedelta(hours=1), pl.lit("probe").alias("EVENT_ID")
    )
    expected = pipeline.transform(probe, history=reference).to_numpy()
    for history in (one, batch):
        assert np.array_equal(
            pipeline.transform(probe, history=history).to_numpy(), expected, equal_nan=True
        )
    assert not pipeline.observe_one(one, {**_rows(events[0:1])[0], "ENTITY_ID": "émile"})
