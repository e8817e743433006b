"""Spiking-circuit data for the Neuroformer family: generated (known wiring) or imported.

On disk (both ways; the contract the datamodule, models and metrics share):

- ``spikes.parquet``: one row per spike, sorted by (trial, time, neuron)::

      trial Int32 · neuron Int32 (0..num_neurons-1) · time Float64 (s from the trial's start)

- ``covariates.parquet``: one row per (trial, bin) at ``bin_s`` (0.01 s), sorted by (trial, bin)::

      trial Int32 · bin Int32 · behavior Float32 · stim_0 … stim_{S-1} Float32

  (imported data may lack behavior and/or stim columns: the manifest then says
  ``behavior: null`` / ``stimulus_channels: 0``).
- ``manifest.json`` (kind ``spikes``) with num_neurons, num_trials, bin_s, trial_s,
  stimulus_channels, behavior (the behavior's name or null), conditions (per trial, or null),
  adjacency ``{"edges": [[source, target, delay_bins, weight], ...], "hubs": [...]}`` (ground
  truth of generated data; null for imported data) and neuron_ids (imported: the source's id of
  each neuron 0..N-1).

:func:`generate_spikes` simulates :mod:`behave.data.spikes_sim`; :func:`import_spikes` converts
a user's (neuron, time[, trial]) table plus optional covariates; :func:`load_binned` reads either
back as dense arrays of spike counts per bin.

Import rules: rows with a missing or non-finite time, a negative time (or one past ``trial_s``
when given), a neuron id that is not an integer >= 0, or a missing trial go to
``quarantine.parquet`` with a ``reason``; so does every copy after the first of one (trial,
neuron, time). Nothing is dropped silently. Covariate rows are checked the same way (their
reasons start with ``covariates:``); several rows in one (trial, bin) are averaged and bins
without a row take the previous (else the next) bin's values, counted in the summary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from behave.data.checks import check_table
from behave.data.importer import read_table
from behave.data.manifest import DataError, read_manifest, verify_manifest, write_manifest
from behave.data.schema import MANIFEST_FILE, QUARANTINE_FILE
from behave.data.spikes_sim import CircuitConfig, simulate_circuit

__all__ = [
    "SPIKES_FILE",
    "COVARIATES_FILE",
    "SPIKE_SCHEMA",
    "BinnedSpikes",
    "SpikeImportSummary",
    "generate_spikes",
    "import_spikes",
    "load_binned",
]

SPIKES_FILE = "spikes.parquet"
COVARIATES_FILE = "covariates.parquet"
GENERATOR = "behave.data.spikes"
GENERATOR_VERSION = "1"
IMPORTER = "behave.data.spikes.importer"
BEHAVIOR_NAME = "running_speed"
_BIN_TOLERANCE = 1e-6  # of a bin: a time a rounding error below a bin edge belongs to the next bin

SPIKE_SCHEMA: dict[str, pl.DataType] = {
    "trial": pl.Int32(),
    "neuron": pl.Int32(),
    "time": pl.Float64(),
}


def _covariate_frame(
    trials: int, bins: int, behavior: np.ndarray | None, stimulus: np.ndarray | None
) -> pl.DataFrame:
    columns: dict[str, pl.Series] = {
        "trial": pl.Series(np.repeat(np.arange(trials, dtype=np.int32), bins)),
        "bin": pl.Series(np.tile(np.arange(bins, dtype=np.int32), trials)),
    }
    if behavior is not None:
        columns["behavior"] = pl.Series(behavior.reshape(-1).astype(np.float32))
    if stimulus is not None:
        flat = stimulus.reshape(trials * bins, -1).astype(np.float32)
        for k in range(flat.shape[1]):
            columns[f"stim_{k}"] = pl.Series(flat[:, k])
    return pl.DataFrame(columns)


# ---- generate ----------------------------------------------------------------------------------
def generate_spikes(
    out_dir: Path, *, config: CircuitConfig | None = None, seed: int = 0, progress: bool = True
) -> dict:
    """Simulate the circuit into ``out_dir`` (spikes, covariates, manifest); returns the manifest.

    Same config and seed -> identical files and ``content_hash``.
    """
    config = config or CircuitConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sim = simulate_circuit(config, seed, progress=progress)
    trials, bins, neurons = sim["counts"].shape
    pl.DataFrame(
        {"trial": sim["spike_trial"], "neuron": sim["spike_neuron"], "time": sim["spike_time"]},
        schema=SPIKE_SCHEMA,
    ).write_parquet(out_dir / SPIKES_FILE)
    _covariate_frame(trials, bins, sim["behavior"], sim["stimulus"]).write_parquet(
        out_dir / COVARIATES_FILE
    )
    num_spikes = len(sim["spike_time"])
    edges = sim["edges"]
    return write_manifest(
        out_dir,
        kind="spikes",
        generator=GENERATOR,
        generator_version=GENERATOR_VERSION,
        seed=seed,
        params=config.to_dict(),
        files=[SPIKES_FILE, COVARIATES_FILE],
        extra={
            "num_neurons": neurons,
            "num_trials": trials,
            "bin_s": config.bin_s,
            "trial_s": config.trial_s,
            "stimulus_channels": config.stimulus_channels,
            "behavior": BEHAVIOR_NAME,
            "conditions": [int(c) for c in sim["conditions"]],
            "adjacency": {
                "edges": [[int(s), int(t), int(d), float(w)] for s, t, d, w in edges],
                "hubs": [int(h) for h in sim["hubs"]],
            },
            "motor_neurons": [int(m) for m in sim["motor"]],
            "neuron_ids": None,
            "num_spikes": num_spikes,
            "mean_rate_hz": round(num_spikes / (trials * neurons * config.trial_s), 4),
        },
    )


# ---- load --------------------------------------------------------------------------------------
@dataclass
class BinnedSpikes:
    counts: np.ndarray  # (trials, bins, neurons) uint8: spikes per bin
    behavior: np.ndarray | None  # (trials, bins) float32
    stimulus: np.ndarray | None  # (trials, bins, S) float32
    conditions: np.ndarray | None  # (trials,) int: stimulus condition per trial
    adjacency: np.ndarray | None  # (neurons, neurons) bool: [source, target] ground truth
    bin_s: float

    @property
    def num_trials(self) -> int:
        return self.counts.shape[0]

    @property
    def num_bins(self) -> int:
        return self.counts.shape[1]

    @property
    def num_neurons(self) -> int:
        return self.counts.shape[2]


def _bin_of(time: pl.Expr, bin_s: float) -> pl.Expr:
    return (time / bin_s + _BIN_TOLERANCE).floor()


def load_binned(data_dir: Path, verify: bool = False) -> BinnedSpikes:
    """Read a spikes folder (generated or imported) as dense per-bin arrays.

    ``verify`` re-hashes the files against the manifest first. Raises :class:`DataError` for a
    missing manifest or file, a changed file (``verify``), an unreadable or empty table, a wrong
    schema, or null, NaN or inf values.
    """
    data_dir = Path(data_dir)
    data_dir = data_dir.parent if data_dir.is_file() else data_dir
    fix = (
        f"generate one with `behave data generate spikes --out {data_dir}` or import a "
        f"recording with `behave data import spikes SPIKES.csv --out {data_dir}`"
    )
    if not (data_dir / MANIFEST_FILE).is_file():
        raise DataError(f"no {MANIFEST_FILE} in {data_dir}: {fix}")
    manifest = read_manifest(data_dir)
    if manifest.get("kind") != "spikes":
        raise DataError(f"{data_dir} holds {manifest.get('kind')!r} data, not spikes; {fix}")
    for name in (SPIKES_FILE, COVARIATES_FILE):
        if not (data_dir / name).is_file():
            raise DataError(f"{data_dir / name} is missing; {fix}")
    if verify:
        verify_manifest(data_dir, fix=fix)
    channels = int(manifest.get("stimulus_channels") or 0)
    check_table(data_dir / SPIKES_FILE, SPIKE_SCHEMA, table="a spikes table", fix=fix)
    check_table(
        data_dir / COVARIATES_FILE,
        {
            "trial": pl.Int32(),
            "bin": pl.Int32(),
            "behavior": pl.Float32(),
            **{f"stim_{k}": pl.Float32() for k in range(channels)},
        },
        table="a covariates table",
        fix=fix,
        optional=("behavior",),
    )
    trials, neurons = int(manifest["num_trials"]), int(manifest["num_neurons"])
    bin_s = float(manifest["bin_s"])
    bins = int(round(float(manifest["trial_s"]) / bin_s))
    spikes = pl.read_parquet(data_dir / SPIKES_FILE, columns=["trial", "neuron", "time"])
    flat = (
        spikes.select(
            (
                pl.col("trial").cast(pl.Int64) * (bins * neurons)
                + _bin_of(pl.col("time"), bin_s).clip(0, bins - 1).cast(pl.Int64) * neurons
                + pl.col("neuron").cast(pl.Int64)
            ).alias("i")
        )
        .to_series()
        .to_numpy()
    )
    counts = np.bincount(flat, minlength=trials * bins * neurons)
    counts = np.minimum(counts, 255).astype(np.uint8).reshape(trials, bins, neurons)

    covariates = pl.read_parquet(data_dir / COVARIATES_FILE).sort("trial", "bin")
    if covariates.height != trials * bins:
        raise DataError(
            f"{data_dir / COVARIATES_FILE} has {covariates.height:,} rows, expected "
            f"{trials:,} trials x {bins:,} bins; regenerate or re-import the folder"
        )
    behavior = None
    if manifest.get("behavior") and "behavior" in covariates.columns:
        behavior = covariates["behavior"].to_numpy().astype(np.float32).reshape(trials, bins)
    stimulus = None
    if channels:
        stimulus = (
            covariates.select([f"stim_{k}" for k in range(channels)])
            .to_numpy()
            .astype(np.float32)
            .reshape(trials, bins, channels)
        )
    conditions = manifest.get("conditions")
    adjacency = None
    if manifest.get("adjacency"):
        adjacency = np.zeros((neurons, neurons), dtype=bool)
        for source, target, *_ in manifest["adjacency"]["edges"]:
            adjacency[int(source), int(target)] = True
    return BinnedSpikes(
        counts=counts,
        behavior=behavior,
        stimulus=stimulus,
        conditions=None if conditions is None else np.asarray(conditions, dtype=np.int64),
        adjacency=adjacency,
        bin_s=bin_s,
    )


# ---- import ------------------------------------------------------------------------------------
@dataclass
class SpikeImportSummary:
    rows_read: int
    rows_written: int
    rows_quarantined: int  # spike rows; covariate rows are counted separately
    reasons: dict[str, int]  # reason -> rows (covariate reasons start with "covariates:")
    out_dir: Path
    quarantine_path: Path | None
    num_neurons: int
    num_trials: int
    trial_s: float
    covariate_rows_read: int = 0
    covariate_rows_quarantined: int = 0
    covariate_bins_filled: int = 0  # (trial, bin) cells without a row, filled from a neighbour
    manifest: dict = field(default_factory=dict, repr=False)

    def one_line(self) -> str:
        line = (
            f"imported {self.rows_written:,} of {self.rows_read:,} spikes "
            f"({self.num_neurons:,} neurons, {self.num_trials:,} "
            f"trial{'s' if self.num_trials != 1 else ''} of {self.trial_s:g} s) "
            f"to {Path(self.out_dir) / SPIKES_FILE}"
        )
        if self.covariate_rows_read:
            line += f"; covariates from {self.covariate_rows_read:,} rows"
            if self.covariate_bins_filled:
                line += f" ({self.covariate_bins_filled:,} empty bins filled)"
        quarantined = self.rows_quarantined + self.covariate_rows_quarantined
        if not quarantined:
            return line + "; none quarantined"
        why = ", ".join(
            f"{k}: {v:,}" for k, v in sorted(self.reasons.items(), key=lambda kv: -kv[1])
        )
        return f"{line}; {quarantined:,} quarantined ({why}) -> {self.quarantine_path}"


_MAPPABLE = ("neuron", "time", "trial", "bin", "behavior")


def _text(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.String).str.strip_chars()


def _missing(raw: str) -> pl.Expr:
    return pl.col(raw).is_null() | (pl.col(raw) == "")


def _not_finite(raw: str) -> pl.Expr:
    number = pl.col(raw).cast(pl.Float64, strict=False)
    return ~_missing(raw) & (number.is_null() | ~number.is_finite()).fill_null(True)


def _not_integer(raw: str) -> pl.Expr:
    number = pl.col(raw).cast(pl.Float64, strict=False)
    return _not_finite(raw) | (~_missing(raw) & (number != number.round(0)).fill_null(False))


def _reasons(checks: dict[str, pl.Expr]) -> pl.Expr:
    return pl.concat_str(
        [pl.when(bad.fill_null(False)).then(pl.lit(name)) for name, bad in checks.items()],
        separator=",",
        ignore_nulls=True,
    ).fill_null("")


def _trial_key(raw: str | None) -> pl.Expr:
    """Trial ids as text, integers normalized ("2.0" -> "2"); no column -> every row trial "0"."""
    if raw is None:
        return pl.lit("0")
    number = pl.col(raw).cast(pl.Float64, strict=False)
    integral = number.is_finite().fill_null(False) & (number == number.round(0)).fill_null(False)
    return pl.when(integral).then(number.cast(pl.Int64).cast(pl.String)).otherwise(pl.col(raw))


def _trial_order(keys: set[str]) -> list[str]:
    def sort_key(key: str) -> tuple[int, int, str]:
        try:
            return (0, int(key), "")
        except ValueError:
            return (1, 0, key)

    return sorted(keys, key=sort_key)


def _columns(
    table: pl.DataFrame, mapping: dict[str, str], wanted: tuple[str, ...]
) -> dict[str, str]:
    """canonical -> source column for the ``wanted`` names present in ``table``."""
    found = {}
    for canonical in wanted:
        source = mapping.get(canonical, canonical)
        if source in table.columns:
            found[canonical] = source
        elif canonical in table.columns:  # a mapping meant for the other table
            found[canonical] = canonical
    return found


def _require(found: dict, needed: str, source: Path, table: pl.DataFrame, example: str) -> None:
    if needed not in found:
        raise DataError(
            f"{source.name}: no {needed!r} column (columns: {', '.join(table.columns)}); "
            f"rename one or map it, e.g. --map {needed}={example}"
        )


def _quarantine_rows(bad: pl.DataFrame, table: str) -> pl.DataFrame:
    return bad.select(
        "source_row",
        pl.lit(table).alias("table"),
        *[c for c in bad.columns if c.startswith("raw_")],
        "reason",
    )


def _count_reasons(bad: pl.DataFrame, prefix: str = "") -> dict[str, int]:
    reasons: dict[str, int] = {}
    for text in bad["reason"]:
        for r in text.split(","):
            reasons[prefix + r] = reasons.get(prefix + r, 0) + 1
    return reasons


def _parse_spikes(
    raw: pl.DataFrame, columns: dict[str, str], trial_s: float | None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(valid rows with trial_key, neuron_f, time; quarantined rows with a reason)."""
    frame = raw.with_row_index("source_row").select(
        "source_row", *[_text(src).alias(f"raw_{name}") for name, src in columns.items()]
    )
    time = pl.col("raw_time").cast(pl.Float64, strict=False)
    neuron = pl.col("raw_neuron").cast(pl.Float64, strict=False)
    checks = {
        "time_missing": _missing("raw_time"),
        "time_not_a_number": _not_finite("raw_time"),
        "time_negative": time < 0,
        "time_past_trial_end": time >= trial_s if trial_s is not None else pl.lit(False),
        "neuron_missing": _missing("raw_neuron"),
        "neuron_not_integer": _not_integer("raw_neuron"),
        "neuron_negative": neuron < 0,
        "neuron_too_large": neuron >= 2**31,
        "trial_missing": _missing("raw_trial") if "trial" in columns else pl.lit(False),
    }
    parsed = frame.with_columns(
        _reasons(checks).alias("reason"),
        time.alias("time"),
        neuron.alias("neuron_f"),
        _trial_key("raw_trial" if "trial" in columns else None).alias("trial_key"),
    )
    # a spike recorded twice: keep the first copy, quarantine the others
    copy = pl.int_range(pl.len()).over("trial_key", "neuron_f", "time")
    parsed = pl.concat(
        [
            parsed.filter(pl.col("reason") != ""),
            parsed.filter(pl.col("reason") == "").with_columns(
                pl.when(copy > 0).then(pl.lit("duplicate")).otherwise(pl.lit("")).alias("reason")
            ),
        ]
    ).sort("source_row")
    return parsed.filter(pl.col("reason") == ""), parsed.filter(pl.col("reason") != "")


def _parse_covariates(
    raw: pl.DataFrame, source: Path, mapping: dict[str, str], bin_s: float, bins: int | None
) -> tuple[pl.DataFrame, pl.DataFrame, str | None, list[str]]:
    """(valid rows: trial_key, bin, value columns; quarantined rows; behavior name; stim columns)."""
    columns = _columns(raw, mapping, ("trial", "bin", "time", "behavior"))
    if "bin" not in columns and "time" not in columns:
        _require(columns, "bin", source, raw, "<bin column> (or a 'time' column in seconds)")
    stim = sorted(
        (c for c in raw.columns if c.startswith("stim_") and c[5:].isdigit()),
        key=lambda c: int(c[5:]),
    )
    if "behavior" not in columns and not stim:
        raise DataError(
            f"{source.name}: no 'behavior' or stim_0, stim_1, ... columns (columns: "
            f"{', '.join(raw.columns)}); name them so or map one, e.g. --map behavior=<column>"
        )
    index = {k: columns[k] for k in ("trial", "bin", "time") if k in columns}
    if "bin" in index:
        index.pop("time", None)
    values = ({"behavior": columns["behavior"]} if "behavior" in columns else {}) | {
        s: s for s in stim
    }
    frame = raw.with_row_index("source_row").select(
        "source_row",
        *[_text(src).alias(f"raw_{name}") for name, src in {**index, **values}.items()],
    )
    checks = {"trial_missing": _missing("raw_trial") if "trial" in index else pl.lit(False)}
    if "bin" in index:
        number = pl.col("raw_bin").cast(pl.Float64, strict=False)
        checks["bin_missing"] = _missing("raw_bin")
        checks["bin_not_integer"] = _not_integer("raw_bin")
        checks["bin_negative"] = number < 0
        bin_expr = number
    else:
        number = pl.col("raw_time").cast(pl.Float64, strict=False)
        checks["time_missing"] = _missing("raw_time")
        checks["time_not_a_number"] = _not_finite("raw_time")
        checks["time_negative"] = number < 0
        bin_expr = _bin_of(number, bin_s)
    checks["bin_past_trial_end"] = bin_expr >= bins if bins is not None else pl.lit(False)
    for name in values:
        kind = "behavior" if name == "behavior" else "stim"
        checks[f"{kind}_missing"] = checks.get(f"{kind}_missing", pl.lit(False)) | _missing(
            f"raw_{name}"
        )
        checks[f"{kind}_not_a_number"] = checks.get(
            f"{kind}_not_a_number", pl.lit(False)
        ) | _not_finite(f"raw_{name}")
    parsed = frame.with_columns(
        _reasons(checks).alias("reason"),
        _trial_key("raw_trial" if "trial" in index else None).alias("trial_key"),
        bin_expr.alias("bin_f"),
        *[pl.col(f"raw_{n}").cast(pl.Float64, strict=False).alias(n) for n in values],
    )
    good = parsed.filter(pl.col("reason") == "")
    bad = parsed.filter(pl.col("reason") != "")
    good = (
        good.with_columns(pl.col("bin_f").cast(pl.Int64).alias("bin"))
        .group_by("trial_key", "bin")
        .agg(pl.col(list(values)).mean(), pl.col("source_row").min())
    )
    renamed = {s: f"stim_{k}" for k, s in enumerate(stim)}
    good = good.rename(renamed)
    behavior = columns.get("behavior")
    return good, bad, behavior, [renamed[s] for s in stim]


def import_spikes(
    source: Path,
    out_dir: Path,
    *,
    mapping: dict[str, str] | None = None,
    covariates: Path | None = None,
    bin_s: float = 0.01,
    trial_s: float | None = None,
) -> SpikeImportSummary:
    """Import a (neuron, time[, trial]) spike table (CSV or Parquet; time in seconds from the
    trial's start; no trial column -> one trial 0) and optional covariates (trial, bin or time,
    behavior, stim_* columns) into the layout :func:`generate_spikes` writes.

    ``mapping``: canonical name (neuron, time, trial, bin, behavior) -> source column; it applies
    to whichever table has that column. Neuron ids are renumbered 0..N-1 in ascending order (the
    manifest's ``neuron_ids`` keeps the source ids); trials likewise (``trial_ids``). Without
    ``trial_s`` a trial lasts until the bin of the last spike or covariate row.
    """
    source, out_dir = Path(source), Path(out_dir)
    mapping = dict(mapping or {})
    unknown = sorted(set(mapping) - set(_MAPPABLE))
    if unknown:
        raise ValueError(f"mapping: unknown column(s) {unknown}; map {', '.join(_MAPPABLE)}")
    if not bin_s > 0:
        raise ValueError(f"bin_s must be > 0, got {bin_s}")
    fixed_bins = None
    if trial_s is not None:
        fixed_bins = int(round(trial_s / bin_s))
        if trial_s <= 0 or not math.isclose(fixed_bins * bin_s, trial_s, rel_tol=1e-9):
            raise ValueError(f"trial_s must be a positive multiple of bin_s={bin_s}, got {trial_s}")

    raw = read_table(source)
    columns = _columns(raw, mapping, ("neuron", "time", "trial"))
    for name in ("neuron", "time", "trial"):
        if name in mapping and mapping[name] not in raw.columns:
            raise DataError(
                f"{source.name}: --map {name}={mapping[name]} names no column (columns: "
                f"{', '.join(raw.columns)}); map {name} to one of them"
            )
    _require(columns, "neuron", source, raw, "<unit id column>")
    _require(columns, "time", source, raw, "<spike time column, seconds>")
    good, bad = _parse_spikes(raw, columns, trial_s)
    if good.is_empty():
        top = sorted(_count_reasons(bad).items(), key=lambda kv: -kv[1])[:3]
        raise DataError(
            f"{source}: no valid spikes (all {raw.height:,} rows quarantined: {top}); check the "
            "time column holds seconds >= 0 and neuron holds integer ids >= 0"
        )

    cov_good = cov_bad = None
    behavior_name, stim_columns, cov_rows = None, [], 0
    if covariates is not None:
        covariates = Path(covariates)
        cov_raw = read_table(covariates)
        cov_rows = cov_raw.height
        cov_good, cov_bad, behavior_name, stim_columns = _parse_covariates(
            cov_raw, covariates, mapping, bin_s, fixed_bins
        )

    # ids: neurons and trials renumbered densely, in ascending order of the source ids
    neuron_ids = sorted({int(v) for v in good["neuron_f"].unique().to_list()})
    keys = set(good["trial_key"].unique().to_list())
    if cov_good is not None:
        keys |= set(cov_good["trial_key"].unique().to_list())
    trial_ids = _trial_order(keys)
    spikes = (
        good.with_columns(
            pl.col("trial_key")
            .replace_strict(trial_ids, list(range(len(trial_ids))))
            .cast(pl.Int32)
            .alias("trial"),
            pl.col("neuron_f")
            .cast(pl.Int64)
            .replace_strict(neuron_ids, list(range(len(neuron_ids))))
            .cast(pl.Int32)
            .alias("neuron"),
        )
        .select(list(SPIKE_SCHEMA))
        .sort("trial", "time", "neuron")
    )
    bins = fixed_bins
    if bins is None:
        last = spikes.select(_bin_of(pl.col("time"), bin_s).max()).item()
        if cov_good is not None and cov_good.height:
            last = max(last, cov_good["bin"].max())
        bins = int(last) + 1
    num_trials = len(trial_ids)

    grid = _covariate_frame(num_trials, bins, None, None)
    filled = 0
    if cov_good is not None:
        cov = cov_good.with_columns(
            pl.col("trial_key").replace_strict(trial_ids, list(range(num_trials))).alias("trial")
        )
        values = (["behavior"] if behavior_name else []) + stim_columns
        grid = grid.join(
            cov.select(pl.col("trial").cast(pl.Int32), pl.col("bin").cast(pl.Int32), *values),
            on=["trial", "bin"],
            how="left",
        ).sort("trial", "bin")
        empty = grid[values[0]].is_null()
        filled = int(empty.sum())
        grid = grid.with_columns(
            pl.col(values).forward_fill().backward_fill().over("trial").cast(pl.Float32)
        )
        blank = grid.filter(pl.col(values[0]).is_null())["trial"].unique().to_list()
        if blank:
            names = [trial_ids[t] for t in blank[:5]]
            raise DataError(
                f"{covariates.name}: no valid rows for trial(s) {names}"
                f"{' …' if len(blank) > 5 else ''}; add them or leave out --covariates"
            )

    out_dir.mkdir(parents=True, exist_ok=True)
    spikes.write_parquet(out_dir / SPIKES_FILE)
    grid.write_parquet(out_dir / COVARIATES_FILE)
    quarantine = None
    reasons = _count_reasons(bad)
    parts = [_quarantine_rows(bad, "spikes")] if bad.height else []
    if cov_bad is not None and cov_bad.height:
        reasons |= _count_reasons(cov_bad, "covariates:")
        parts.append(_quarantine_rows(cov_bad, "covariates"))
    if parts:
        quarantine = out_dir / QUARANTINE_FILE
        pl.concat(parts, how="diagonal").write_parquet(quarantine)
    elif (out_dir / QUARANTINE_FILE).exists():
        (out_dir / QUARANTINE_FILE).unlink()  # left over from an earlier import into this folder
    manifest = write_manifest(
        out_dir,
        kind="spikes",
        generator=IMPORTER,
        generator_version=GENERATOR_VERSION,
        seed=None,
        params={
            "source": str(source),
            "covariates": None if covariates is None else str(covariates),
            "mapping": columns,
            "bin_s": bin_s,
            "trial_s": trial_s,
        },
        files=[SPIKES_FILE, COVARIATES_FILE],
        extra={
            "num_neurons": len(neuron_ids),
            "num_trials": num_trials,
            "bin_s": bin_s,
            "trial_s": bins * bin_s,
            "stimulus_channels": len(stim_columns),
            "behavior": behavior_name,
            "conditions": None,
            "adjacency": None,
            "neuron_ids": neuron_ids,
            "trial_ids": trial_ids,
            "num_spikes": spikes.height,
            "mean_rate_hz": round(spikes.height / (num_trials * len(neuron_ids) * bins * bin_s), 4),
        },
    )
    return SpikeImportSummary(
        rows_read=raw.height,
        rows_written=spikes.height,
        rows_quarantined=bad.height,
        reasons=reasons,
        out_dir=out_dir,
        quarantine_path=quarantine,
        num_neurons=len(neuron_ids),
        num_trials=num_trials,
        trial_s=bins * bin_s,
        covariate_rows_read=cov_rows,
        covariate_rows_quarantined=0 if cov_bad is None else cov_bad.height,
        covariate_bins_filled=filled,
        manifest=manifest,
    )
