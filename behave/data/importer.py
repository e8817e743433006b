"""Import a user's own event log (CSV or Parquet) into the canonical schema.

One call turns any "who / when / what" table into ``events.parquet`` + ``manifest.json``, the
same layout :mod:`behave.data.user_events` writes, so every model reads real and synthetic logs
through one code path.

- Columns: ``mapping`` maps canonical name -> source column (``{"user_id": "uid", "timestamp":
  "ts", "behavior": "event"}``); unmapped canonical columns are looked up under their own name;
  missing optional ones get :data:`~behave.data.schema.OPTIONAL_DEFAULTS` (``domain`` ->
  ``default_domain``).
- Timestamps: datetimes, dates, ISO-like strings (``T`` or space, optional fraction, a trailing
  ``Z`` / ``+02:00`` offset is dropped so the wall-clock time is kept), or unix numbers whose unit
  (s / ms / us / ns) is read off their magnitude; ``timestamp_format`` (strptime syntax)
  overrides the guessing for strings.
- Nothing is dropped silently: a row with an empty user or behavior, or a missing, unparsable
  or implausible timestamp (before 1990, or more than a day in the future) goes to
  ``quarantine.parquet`` with its original values as strings, ``source_row`` (0-based row in
  the source), ``reason`` (failed canonical fields, comma-separated) and ``detail``.

Where we differ from a streaming importer: the source is read into memory once (fine for tens of
millions of rows); time zones are not converted (the schema stores user-local wall-clock time).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from behave.data.manifest import DataError, sha256_file, write_manifest
from behave.data.schema import (
    EVENT_SCHEMA,
    EVENTS_FILE,
    OPTIONAL_DEFAULTS,
    QUARANTINE_FILE,
    REQUIRED_COLUMNS,
)

__all__ = ["ImportSummary", "import_events", "read_table"]

GENERATOR = "behave.data.importer"
GENERATOR_VERSION = "1"

EARLIEST = dt.datetime(1990, 1, 1)
FUTURE_SLACK = dt.timedelta(days=1)
_SUFFIXES = {".csv": ",", ".tsv": "\t", ".parquet": None, ".pq": None}
# Tried in order on ISO-like strings after a "T" separator and any zone suffix are removed.
_FORMATS = (
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
    "%Y/%m/%d %H:%M:%S%.f",
    "%Y/%m/%d %H:%M",
    "%Y/%m/%d",
)
_ZONE_SUFFIX = r"(\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*(?:Z|UTC|[+-]\d{2}(?::?\d{2})?)$"
_SNIFF_ROWS = 10_000  # values inspected to tell unix-number strings from date strings
MAP_HINT = "--map {name}={column}"  # how the CLI spells a mapping, quoted in error messages
_HINTS = {
    "user_id": ("user", "uid", "member", "account", "customer", "client"),
    "timestamp": ("time", "ts", "date", "when", "created", "occurred"),
    "behavior": ("event", "action", "behav", "activity", "type", "name"),
    "location": ("loc", "place", "geo", "city"),
    "domain": ("domain", "app", "product", "platform", "source"),
}


@dataclass
class ImportSummary:
    rows_read: int
    rows_written: int
    rows_quarantined: int
    reasons: dict[str, int]  # failed field -> rows (a row can fail several fields)
    out_dir: Path
    quarantine_path: Path | None
    manifest: dict = field(default_factory=dict, repr=False)

    def one_line(self) -> str:
        events = Path(self.out_dir) / EVENTS_FILE
        line = f"imported {self.rows_written:,} of {self.rows_read:,} rows to {events}"
        if not self.rows_quarantined:
            return line + "; none quarantined"
        why = ", ".join(
            f"{k}: {v:,}" for k, v in sorted(self.reasons.items(), key=lambda kv: -kv[1])
        )
        return f"{line}; {self.rows_quarantined:,} quarantined ({why}) → {self.quarantine_path}"


def read_table(source: Path) -> pl.DataFrame:
    """A CSV/TSV (every column as text: importers parse and validate it themselves, and
    quarantine keeps the raw text) or Parquet file; DataError with the fix otherwise."""
    suffix = source.suffix.lower()
    if suffix not in _SUFFIXES:
        raise DataError(
            f"{source}: unsupported file type {source.suffix or '(none)'!r}; "
            f"import a {', '.join(_SUFFIXES)} file (convert other formats to CSV or Parquet first)"
        )
    if not source.is_file():
        raise DataError(f"{source} does not exist; check the path")
    try:
        if _SUFFIXES[suffix] is None:
            return pl.read_parquet(source)
        # Strings only: we parse and validate ourselves, and quarantine keeps the raw text.
        return pl.read_csv(source, separator=_SUFFIXES[suffix], infer_schema=False)
    except pl.exceptions.NoDataError as err:
        raise DataError(f"{source} is empty; nothing to import") from err
    except (pl.exceptions.ComputeError, OSError) as err:
        raise DataError(f"{source} could not be read as {suffix[1:]}: {err}") from err


def _resolve_columns(
    df: pl.DataFrame, source: Path, mapping: dict[str, str]
) -> dict[str, str | None]:
    unknown = sorted(set(mapping) - set(EVENT_SCHEMA))
    if unknown:
        raise ValueError(
            f"mapping: unknown canonical column(s) {unknown}; "
            f"map from {list(EVENT_SCHEMA)} to your source's column names"
        )
    columns = {}
    for name in EVENT_SCHEMA:
        src = mapping.get(name, name)
        if src in df.columns:
            columns[name] = src
            continue
        if name in mapping or name in REQUIRED_COLUMNS:
            guess = [c for c in df.columns if any(h in c.lower() for h in _HINTS[name])]
            example = guess[0] if guess else "<column>"
            raise DataError(
                f"{source.name}: no column {src!r} for {name!r} (source columns: "
                f"{', '.join(df.columns)}); pass a column mapping, e.g. "
                f"mapping={{{name!r}: {example!r}}} "
                f"(CLI: {MAP_HINT.format(name=name, column=example)})"
            )
        columns[name] = None
    return columns


def _unix_unit(values: pl.Series) -> tuple[str, float]:
    """Unit of unix numbers from their magnitude -> (name, factor to microseconds)."""
    median = values.drop_nulls().abs().median()
    if median is None or median < 1e11:
        return "unix-s", 1e6
    if median < 1e14:
        return "unix-ms", 1e3
    if median < 1e17:
        return "unix-us", 1.0
    return "unix-ns", 1e-3


def _from_unix(numbers: pl.Expr, factor: float) -> pl.Expr:
    micros = (numbers * factor).round(0)
    in_range = micros.abs() < 9.2e18  # keep the Int64 cast from overflowing on garbage
    return pl.from_epoch(pl.when(in_range).then(micros).cast(pl.Int64), time_unit="us")


def _parse_timestamp(
    df: pl.DataFrame, column: str, timestamp_format: str | None
) -> tuple[pl.Expr, str]:
    """Expression parsing the source column to Datetime("us") (null where it fails) + a label."""
    col = pl.col(column)
    dtype = df.schema[column]
    if isinstance(dtype, pl.Datetime):
        parsed = col.dt.replace_time_zone(None) if dtype.time_zone else col
        return parsed.cast(pl.Datetime("us")), "datetime"
    if dtype == pl.Date:
        return col.cast(pl.Datetime("us")), "date"
    if dtype.is_numeric():
        unit, factor = _unix_unit(df[column].cast(pl.Float64))
        return _from_unix(col.cast(pl.Float64), factor), unit
    if dtype not in (pl.String, pl.Categorical) and not isinstance(dtype, pl.Enum):
        raise DataError(
            f"timestamp column {column!r} has type {dtype}; give datetimes, ISO strings or unix "
            "numbers (or pass timestamp_format for strings)"
        )
    text = col.cast(pl.String).str.strip_chars()
    if timestamp_format:
        return text.str.strptime(pl.Datetime("us"), timestamp_format, strict=False), (
            f"format:{timestamp_format}"
        )
    iso = text.str.replace(_ZONE_SUFFIX, "${1}").str.replace(r"^(\d{4}-\d{2}-\d{2})T", "${1} ")
    as_iso = pl.coalesce(
        [iso.str.strptime(pl.Datetime("us"), fmt, strict=False) for fmt in _FORMATS]
    )
    # Unix numbers or date strings? Whichever reading parses more of the first values.
    sniff = (
        df.lazy()
        .select(text.alias("text"), as_iso.alias("iso"))
        .filter(pl.col("text").is_not_null() & (pl.col("text") != ""))
        .head(_SNIFF_ROWS)
        .with_columns(pl.col("text").cast(pl.Float64, strict=False).alias("number"))
        .collect()
    )
    if sniff["number"].is_not_null().sum() > sniff["iso"].is_not_null().sum():
        unit, factor = _unix_unit(sniff["number"])
        return _from_unix(text.cast(pl.Float64, strict=False), factor), unit
    return as_iso, "iso-string"


def _text(column: str | None, default: str | None) -> pl.Expr:
    """Canonical string column: stripped text, empty -> null, then the default if any."""
    expr = pl.lit(None, dtype=pl.String) if column is None else pl.col(column).cast(pl.String)
    expr = expr.str.strip_chars()
    expr = pl.when(expr != "").then(expr)
    return expr.fill_null(default) if default is not None else expr


def _as_text(name: str, dtype: pl.DataType) -> pl.Expr:
    if dtype.is_nested() or dtype == pl.Object:
        return pl.col(name).map_elements(
            lambda v: None if v is None else str(v), return_dtype=pl.String
        )
    return pl.col(name).cast(pl.String)


def _write_parquet(df: pl.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    df.write_parquet(tmp, compression="zstd", statistics=True)
    os.replace(tmp, path)


def import_events(
    source: Path,
    out_dir: Path,
    *,
    mapping: dict[str, str] | None = None,
    timestamp_format: str | None = None,
    default_domain: str = "default",
) -> ImportSummary:
    """Convert ``source`` (CSV/TSV/Parquet) to ``out_dir/events.parquet`` + manifest.

    Raises :class:`DataError` for an unreadable source or a missing required column, and when
    no row survives validation (the quarantine file is still written for inspection).
    """
    source, out_dir = Path(source), Path(out_dir)
    mapping = dict(mapping or {})
    if not isinstance(default_domain, str) or not default_domain.strip():
        raise ValueError(f"default_domain must be a non-empty string, got {default_domain!r}")
    raw = read_table(source)
    columns = _resolve_columns(raw, source, mapping)
    ts_expr, ts_kind = _parse_timestamp(raw, columns["timestamp"], timestamp_format)
    defaults = {**OPTIONAL_DEFAULTS, "domain": default_domain}

    ts_text = _text(columns["timestamp"], None)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    checked = raw.with_row_index("__row").with_columns(
        _text(columns["user_id"], None).alias("__user_id"),
        ts_expr.alias("__timestamp"),
        _text(columns["behavior"], None).alias("__behavior"),
        *[_text(columns[c], defaults[c]).alias(f"__{c}") for c in OPTIONAL_DEFAULTS],
        ts_text.is_null().alias("__ts_missing"),
    )
    ts = pl.col("__timestamp")
    bad_ts_detail = (
        pl.when(pl.col("__ts_missing"))
        .then(pl.lit("timestamp: missing"))
        .when(ts.is_null())
        .then(pl.lit("timestamp: unparsable"))
        .when(ts < EARLIEST)
        .then(pl.lit("timestamp: before 1990"))
        .when(ts > now + FUTURE_SLACK)
        .then(pl.lit("timestamp: more than a day in the future"))
    )
    checks = {
        "user_id": (pl.col("__user_id").is_null(), pl.lit("user_id: missing or empty")),
        "timestamp": (bad_ts_detail.is_not_null(), bad_ts_detail),
        "behavior": (pl.col("__behavior").is_null(), pl.lit("behavior: missing or empty")),
    }
    checked = checked.with_columns(
        pl.concat_str(
            [pl.when(bad).then(pl.lit(name)) for name, (bad, _) in checks.items()],
            separator=",",
            ignore_nulls=True,
        ).alias("__reason"),
        pl.concat_str(
            [pl.when(bad).then(detail) for bad, detail in checks.values()],
            separator="; ",
            ignore_nulls=True,
        ).alias("__detail"),
    )
    is_bad = pl.col("__reason") != ""
    rows_read = raw.height

    bad = checked.filter(is_bad)
    reasons = {
        name: int(bad.select(pl.col("__reason").str.split(",").list.contains(name).sum()).item())
        for name in checks
    }
    reasons = {k: v for k, v in reasons.items() if v}
    out_dir.mkdir(parents=True, exist_ok=True)
    quarantine_path = out_dir / QUARANTINE_FILE
    if bad.height:
        taken = set(raw.columns)
        extra_names = {
            n: n if n not in taken else f"{n}_quarantine"
            for n in ("source_row", "reason", "detail")
        }
        quarantine = bad.select(
            pl.col("__row").cast(pl.Int64).alias(extra_names["source_row"]),
            *[_as_text(c, raw.schema[c]).alias(c) for c in raw.columns],
            pl.col("__reason").alias(extra_names["reason"]),
            pl.col("__detail").alias(extra_names["detail"]),
        )
        _write_parquet(quarantine, quarantine_path)
    elif quarantine_path.exists():
        quarantine_path.unlink()  # a stale file from an earlier import would mislead

    events = (
        checked.filter(~is_bad)
        .select(pl.col(f"__{c}").cast(dtype).alias(c) for c, dtype in EVENT_SCHEMA.items())
        .sort("user_id", "timestamp", maintain_order=True)
    )
    if events.height == 0:
        raise DataError(
            f"{source}: none of its {rows_read:,} rows is valid "
            f"({', '.join(f'{k}: {v:,}' for k, v in reasons.items())}); see {quarantine_path} and "
            "fix the column mapping or timestamp_format"
        )
    _write_parquet(events, out_dir / EVENTS_FILE)

    files = [EVENTS_FILE] + ([QUARANTINE_FILE] if bad.height else [])
    manifest = write_manifest(
        out_dir,
        kind="user-events",
        generator=GENERATOR,
        generator_version=GENERATOR_VERSION,
        seed=None,
        params={
            "source": source.name,
            "mapping": {c: s for c, s in columns.items() if s is not None},
            "timestamp_format": timestamp_format,
            "default_domain": default_domain,
        },
        files=files,
        extra={
            "source_sha256": sha256_file(source),
            "source_rows": rows_read,
            "rows_quarantined": bad.height,
            "quarantine_reasons": reasons,
            "timestamp_parsing": ts_kind,
            "defaulted_columns": [c for c in OPTIONAL_DEFAULTS if columns[c] is None],
        },
    )
    return ImportSummary(
        rows_read=rows_read,
        rows_written=events.height,
        rows_quarantined=bad.height,
        reasons=reasons,
        out_dir=out_dir,
        quarantine_path=quarantine_path if bad.height else None,
        manifest=manifest,
    )
