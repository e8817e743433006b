"""One cheap check of a Parquet table against what its data family promises.

:func:`verify_manifest` proves a file is the one its manifest describes; :func:`check_table`
proves that file is usable: readable Parquet, the required columns with the right dtypes, no
missing values where none may be, no NaN or inf in float columns (also inside list/array
columns) and at least one row. The schema comes from the file's footer; the values are counted
in one lazy polars pass over the checked columns only. Each problem is one :class:`DataError`
line that names the file, the problem and the fix (a generated folder, an imported one and a
user's own file all fail the same way), so ``behave`` prints it and exits 2.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path

import polars as pl

from behave.data.manifest import DataError

__all__ = ["Dtype", "check_table"]

# What a column must hold: an exact dtype (pl.Int32(), pl.Array(pl.Float32, 8)), a kind (the
# class: pl.Datetime is any unit or zone, pl.Array any inner type and width), or a tuple of these.
Dtype = pl.DataType | type[pl.DataType] | tuple


def _matches(found: pl.DataType, expected: Dtype) -> bool:
    if isinstance(expected, tuple):
        return any(_matches(found, e) for e in expected)
    if isinstance(expected, type):
        return found.base_type() == expected
    return found == expected


def _name(expected: Dtype) -> str:
    if isinstance(expected, tuple):
        return " or ".join(_name(e) for e in expected)
    return expected.__name__ if isinstance(expected, type) else str(expected)


def _values(column: str, dtype: pl.DataType) -> pl.Expr | None:
    """The values of a list/array column as a list column (None for a plain column)."""
    if isinstance(dtype, pl.Array):
        return pl.col(column).arr.to_list()
    if isinstance(dtype, pl.List):
        return pl.col(column)
    return None


def _missing(column: str, dtype: pl.DataType) -> pl.Expr:
    """Rows where the value (or one value of a list/array) is null."""
    values = _values(column, dtype)
    if values is None:
        return pl.col(column).is_null()
    return pl.col(column).is_null() | values.list.eval(pl.element().is_null()).list.any()


def _not_finite(column: str, dtype: pl.DataType) -> pl.Expr | None:
    """Rows with NaN or inf (None when the column holds no floats; nulls count as missing)."""
    values = _values(column, dtype)
    inner = dtype if values is None else dtype.inner
    if not inner.is_float():
        return None
    if values is None:
        return ~pl.col(column).is_finite()
    return values.list.eval(~pl.element().is_finite()).list.any()


def _unreadable(path: Path, err: Exception, fix: str) -> DataError:
    detail = " ".join(f"{type(err).__name__}: {err}".split())  # one line
    return DataError(f"{path}: not a readable Parquet file ({detail[:300]}); {fix}")


def _counted(stats: dict, prefix: str) -> tuple[dict[str, int], int]:
    """({column: rows}, first bad row of the first such column) from the pass's stats."""
    counts = {k[len(prefix) :]: n for k, n in stats.items() if k.startswith(prefix) and n}
    first = stats[f"first {prefix}{next(iter(counts))}"] if counts else -1
    return counts, first


def check_table(
    path: Path,
    columns: Mapping[str, Dtype],
    *,
    table: str,
    fix: str,
    nullable: Collection[str] = (),
    optional: Collection[str] = (),
) -> pl.LazyFrame:
    """Check the Parquet file ``path``; returns a lazy scan of it, or raises :class:`DataError`.

    Args:
        columns: every column the family reads -> its :data:`Dtype`; other columns are ignored.
        table: what the file should be, for the schema error (``"an event table"``).
        fix: how to get a good file, ending every message (``"regenerate with `behave ...`"``).
        nullable: columns that may hold nulls; the others may not.
        optional: columns that may be absent; when present they are checked like the rest.
    """
    path = Path(path)
    try:
        schema = pl.read_parquet_schema(path)
    except Exception as err:  # noqa: BLE001 - polars raises several kinds for a bad file
        raise _unreadable(path, err, fix) from err
    missing = [c for c in columns if c not in schema and c not in optional]
    wrong = [
        f"column {c!r} is {schema[c]}, expected {_name(dtype)}"
        for c, dtype in columns.items()
        if c in schema and not _matches(schema[c], dtype)
    ]
    if missing or wrong:
        problems = ([f"missing columns {missing}"] if missing else []) + wrong
        raise DataError(f"{path}: not {table}: {'; '.join(problems)}; {fix}")

    present = {c: schema[c] for c in columns if c in schema}
    stats = [pl.len().alias("rows")]
    for label, test in (("missing ", _missing), ("not finite ", _not_finite)):
        for c, dtype in present.items():
            if label == "missing " and c in nullable:
                continue
            bad = test(c, dtype)
            if bad is not None:
                stats += [bad.sum().alias(label + c), bad.arg_max().alias(f"first {label}{c}")]
    scan = pl.scan_parquet(path)
    try:
        found = scan.select(stats).collect().row(0, named=True)
    except Exception as err:  # noqa: BLE001 - a footer can be intact over corrupt pages
        raise _unreadable(path, err, fix) from err
    if found["rows"] == 0:
        raise DataError(f"{path}: the table is empty (0 rows); {fix}")
    for label, problem in (("missing ", "missing values in"), ("not finite ", "NaN or inf in")):
        counts, first = _counted(found, label)
        if counts:
            raise DataError(
                f"{path}: {problem} {counts} (column: rows, first at row {first}); {fix}"
            )
    return scan
