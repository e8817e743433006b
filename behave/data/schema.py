"""The canonical user-event log schema every BehaveGPT input is converted to.

A generated log and an imported one look the same on disk: one Parquet file of events with
these columns, plus ``manifest.json`` beside it (see :mod:`behave.data.manifest`).

Required columns are the minimum a real app log has (who, when, what); optional ones default
to a single "unknown" / "default" value on import so one model code path serves every log.
"""

from __future__ import annotations

import polars as pl

__all__ = [
    "EVENT_SCHEMA",
    "REQUIRED_COLUMNS",
    "OPTIONAL_DEFAULTS",
    "EVENTS_FILE",
    "MANIFEST_FILE",
    "QUARANTINE_FILE",
    "NUM_TIME_SLOTS",
    "time_features",
]

EVENTS_FILE = "events.parquet"
MANIFEST_FILE = "manifest.json"
QUARANTINE_FILE = "quarantine.parquet"

EVENT_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.String(),  # opaque user key
    "timestamp": pl.Datetime("us"),  # user-local wall-clock time (drives weekday / time slot)
    "behavior": pl.String(),  # behavior type, e.g. "shop.add_to_cart.017"
    "location": pl.String(),  # coarse place, e.g. "home", "work", "commute"
    "domain": pl.String(),  # app / product the event came from
}
REQUIRED_COLUMNS = ("user_id", "timestamp", "behavior")
OPTIONAL_DEFAULTS = {"location": "unknown", "domain": "default"}

# 48 half-hour slots per day: fine enough for commute/lunch/evening rhythms, small embedding.
NUM_TIME_SLOTS = 48


def time_features(timestamp: pl.Expr) -> list[pl.Expr]:
    """Weekday (0=Mon..6=Sun) and half-hour time slot (0..47) derived from the timestamp."""
    return [
        (timestamp.dt.weekday() - 1).cast(pl.Int8).alias("weekday"),
        (timestamp.dt.hour().cast(pl.Int16) * 2 + timestamp.dt.minute() // 30)
        .cast(pl.Int8)
        .alias("time_slot"),
    ]
