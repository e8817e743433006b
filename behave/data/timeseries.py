"""Time-series classification sets for the TimeX explainers: generated (with ground-truth
explanations) or imported from the UCR/UEA sets that ship inside ``aeon``.

On disk (both ways; the contract the datamodule, models and explainers share):

- ``series.parquet``: one row per series, train rows first, then val, then test::

      split Utf8 (train | val | test) · label Int64 (0..C-1)
      · x Array(Float32, T*D)   values flattened time-major: x[t * D + d]
      · truth Array(UInt8, T*D) 1 where the cell decides the label (same layout); null when the
                                set has no ground truth (imported sets)

- ``manifest.json`` (kind ``timeseries``, see :mod:`behave.data.manifest`) with dataset (name),
  seq_len (T), channels (D), num_classes (C), class_names (label i is class_names[i]),
  null_class (the class whose samples carry no ground truth, e.g. SeqComb's class 0, or null),
  split_sizes ({split: rows}), has_ground_truth, source ("synthetic" | "aeon UCR/UEA"), padded
  and original_length_min / original_length_max (imported series of unequal length are
  right-padded to the longest by repeating their last value).

:func:`generate_timeseries_synth` writes one of :data:`~behave.data.timeseries_synth.
SYNTH_DATASETS`; :func:`import_ucr` converts a UCR/UEA set bundled with aeon (offline: no
download; :func:`offline_ucr_names` lists them), keeping aeon's train/test split and carving a
seeded, per-class validation split from train; values are stored raw (not z-normalized).
:func:`load_timeseries` reads either back as numpy arrays, checking the hashes and the values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from behave.data.checks import check_table
from behave.data.manifest import DataError, read_manifest, verify_manifest, write_manifest
from behave.data.schema import MANIFEST_FILE
from behave.data.timeseries_synth import SYNTH_DATASETS, synth_splits

__all__ = [
    "SERIES_FILE",
    "SPLITS",
    "TimeSeriesData",
    "generate_timeseries_synth",
    "import_ucr",
    "load_timeseries",
    "offline_ucr_names",
]

SERIES_FILE = "series.parquet"
SPLITS = ("train", "val", "test")
GENERATOR = "behave.data.timeseries"
GENERATOR_VERSION = "1"
IMPORTER = "behave.data.timeseries.importer"
SOURCE_SYNTH = "synthetic"
SOURCE_UCR = "aeon UCR/UEA"

Split = tuple[np.ndarray, np.ndarray, np.ndarray | None]  # X (N, T, D), y (N,), truth (N, T, D)


def _schema(width: int) -> dict[str, pl.DataType]:
    return {
        "split": pl.String(),
        "label": pl.Int64(),
        "x": pl.Array(pl.Float32, width),
        "truth": pl.Array(pl.UInt8, width),
    }


# ---- write -------------------------------------------------------------------------------------
def _write(
    out_dir: Path,
    splits: dict[str, Split],
    *,
    generator: str,
    seed: int | None,
    params: dict,
    extra: dict,
) -> dict:
    """series.parquet + manifest.json from {split: (X, y, truth | None)}; returns the manifest."""
    first = next(iter(splits.values()))[0]
    seq_len, channels = first.shape[1], first.shape[2]
    width = seq_len * channels
    frames = []
    for split in SPLITS:
        x, y, truth = splits[split]
        n = len(y)
        frames.append(
            pl.DataFrame(
                {
                    "split": pl.Series([split] * n, dtype=pl.String),
                    "label": pl.Series(np.asarray(y, dtype=np.int64)),
                    "x": pl.Series(
                        x.astype(np.float32).reshape(n, width), dtype=pl.Array(pl.Float32, width)
                    ),
                    "truth": (
                        pl.Series([None] * n, dtype=pl.Array(pl.UInt8, width))
                        if truth is None
                        else pl.Series(
                            truth.astype(np.uint8).reshape(n, width),
                            dtype=pl.Array(pl.UInt8, width),
                        )
                    ),
                },
                schema=_schema(width),
            )
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pl.concat(frames).write_parquet(out_dir / SERIES_FILE)
    return write_manifest(
        out_dir,
        kind="timeseries",
        generator=generator,
        generator_version=GENERATOR_VERSION,
        seed=seed,
        params=params,
        files=[SERIES_FILE],
        extra={
            "seq_len": seq_len,
            "channels": channels,
            "layout": "x[t * channels + d]",
            "split_sizes": {split: len(splits[split][1]) for split in SPLITS},
            **extra,
        },
    )


def generate_timeseries_synth(
    out_dir: Path,
    name: str,
    seed: int = 0,
    num_train: int = 5000,
    num_val: int = 100,
    num_test: int = 1000,
) -> dict:
    """Write synthetic set ``name`` (see :mod:`behave.data.timeseries_synth`) into ``out_dir``;
    returns the manifest. Same arguments -> identical files and ``content_hash``."""
    splits = synth_splits(name, seed, num_train=num_train, num_val=num_val, num_test=num_test)
    info = SYNTH_DATASETS[name]
    return _write(
        out_dir,
        splits,
        generator=GENERATOR,
        seed=seed,
        params={"name": name, "num_train": num_train, "num_val": num_val, "num_test": num_test},
        extra={
            "dataset": name,
            "num_classes": info.num_classes,
            "class_names": list(info.class_names),
            "null_class": info.null_class,
            "has_ground_truth": True,
            "source": SOURCE_SYNTH,
            "description": info.description,
            "padded": False,
            "original_length_min": info.seq_len,
            "original_length_max": info.seq_len,
        },
    )


# ---- import (aeon) -----------------------------------------------------------------------------
def _aeon():
    try:
        import aeon
        from aeon.datasets import load_classification
    except ImportError as err:
        raise ImportError("importing UCR/UEA sets needs aeon: pip install -e '.[explain]'") from err
    return aeon, load_classification


def _bundled_dir(aeon) -> Path:
    return Path(aeon.__file__).parent / "datasets" / "data"


def _is_classification(ts_file: Path) -> bool:
    """True when a .ts file's header says ``@classLabel true`` (regression sets say false)."""
    with open(ts_file, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            text = line.strip().lower()
            if text.startswith("@classlabel"):
                return text.split()[1:2] == ["true"]
            if text.startswith("@data"):
                return False
    return False


def offline_ucr_names() -> list[str]:
    """UCR/UEA classification sets bundled inside the installed aeon (loadable offline)."""
    aeon, _ = _aeon()
    root = _bundled_dir(aeon)
    names = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        train, test = folder / f"{folder.name}_TRAIN.ts", folder / f"{folder.name}_TEST.ts"
        if train.is_file() and test.is_file() and _is_classification(train):
            names.append(folder.name)
    return names


def _class_order(labels: set[str]) -> list[str]:
    """Sorted class names: numerically when every label is a number ("2" before "10")."""
    try:
        return sorted(labels, key=lambda s: (float(s), s))
    except ValueError:
        return sorted(labels)


def _as_array(series, name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """aeon's (n, D, T) array or list of (D, T_i) -> ((n, T, D) float64 padded, lengths (n,))."""
    items = [np.asarray(s, dtype=np.float64) for s in series]
    lengths = np.array([s.shape[1] for s in items], dtype=np.int64)
    channels = {s.shape[0] for s in items}
    if len(channels) != 1:
        raise DataError(f"aeon {name} {split}: series have different channel counts {channels}")
    longest = int(lengths.max())
    out = np.stack([np.pad(s, ((0, 0), (0, longest - s.shape[1])), mode="edge") for s in items])
    return out.transpose(0, 2, 1), lengths  # (n, T, D)


def _carve_val(
    y: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, val rows), both ascending: fraction * n_c (rounded half up) of each class
    to val, but every class keeps at least one training row."""
    val = []
    for label in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == label))
        take = min(len(rows) - 1, int(np.floor(fraction * len(rows) + 0.5)))  # half rounds up
        val.extend(rows[:take].tolist())
    val_rows = np.array(sorted(val), dtype=np.int64)
    return np.setdiff1d(np.arange(len(y)), val_rows), val_rows


def import_ucr(name: str, out_dir: Path, val_fraction: float = 0.1, seed: int = 0) -> dict:
    """Import UCR/UEA set ``name`` as bundled with aeon into ``out_dir``; returns the manifest.

    aeon's train/test split is kept; ``val_fraction`` of each training class (seeded by
    ``seed``) becomes the val split. Labels map to 0..C-1 in sorted order of their names
    (numeric order when every name is a number). Only sets that ship inside aeon are accepted,
    matched case-insensitively (nothing is downloaded).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    aeon, load_classification = _aeon()
    offline = offline_ucr_names()
    canonical = {n.lower(): n for n in offline}.get(str(name).lower())
    if canonical is None:
        raise DataError(
            f"UCR/UEA set {name!r} does not ship inside aeon {aeon.__version__} (it would have "
            f"to be downloaded; behave imports offline only); offline sets: {', '.join(offline)}"
        )
    loaded = {split: load_classification(canonical, split=split) for split in ("train", "test")}
    arrays, labels, lengths = {}, {}, []
    for split, (series, y) in loaded.items():
        arrays[split], split_lengths = _as_array(series, canonical, split)
        labels[split] = np.asarray(y).astype(str)
        lengths.append(split_lengths)
        if not np.isfinite(arrays[split]).all():
            raise DataError(
                f"aeon {canonical} {split}: {int((~np.isfinite(arrays[split])).sum()):,} missing "
                "or non-finite values; behave stores complete series only, pick another set"
            )
    lengths = np.concatenate(lengths)
    seq_len = int(lengths.max())
    for split, x in arrays.items():  # train and test may differ in their longest series
        arrays[split] = np.pad(x, ((0, 0), (0, seq_len - x.shape[1]), (0, 0)), mode="edge")
    class_names = _class_order(set(labels["train"]) | set(labels["test"]))
    index = {c: i for i, c in enumerate(class_names)}
    codes = {s: np.array([index[c] for c in labels[s]], dtype=np.int64) for s in labels}

    rng = np.random.default_rng(seed)
    train_rows, val_rows = _carve_val(codes["train"], val_fraction, rng)
    x_train, x_test = arrays["train"].astype(np.float32), arrays["test"].astype(np.float32)
    splits: dict[str, Split] = {
        "train": (x_train[train_rows], codes["train"][train_rows], None),
        "val": (x_train[val_rows], codes["train"][val_rows], None),
        "test": (x_test, codes["test"], None),
    }
    return _write(
        out_dir,
        splits,
        generator=IMPORTER,
        seed=seed,
        params={"name": canonical, "val_fraction": val_fraction, "aeon_version": aeon.__version__},
        extra={
            "dataset": canonical,
            "num_classes": len(class_names),
            "class_names": class_names,
            "null_class": None,
            "has_ground_truth": False,
            "source": SOURCE_UCR,
            "padded": bool(lengths.min() != lengths.max()),
            "original_length_min": int(lengths.min()),
            "original_length_max": int(lengths.max()),
        },
    )


# ---- load --------------------------------------------------------------------------------------
@dataclass
class TimeSeriesData:
    name: str
    seq_len: int  # T
    channels: int  # D
    num_classes: int  # C
    class_names: list[str]
    null_class: int | None  # class without ground truth (SeqComb's 0), else None
    has_ground_truth: bool
    manifest: dict = field(repr=False)
    # split -> (X (N, T, D) float32, y (N,) int64, truth (N, T, D) uint8 or None)
    splits: dict[str, Split] = field(repr=False)


def _fix(data_dir: Path, manifest: dict | None) -> str:
    name = (manifest or {}).get("dataset")
    if name and (manifest or {}).get("source") == SOURCE_UCR:
        return f"re-import it with `behave data import ucr {name} --out {data_dir}`"
    if name:
        return f"regenerate it with `behave data generate timeseries-synth --name {name} --out {data_dir}`"
    return (
        f"generate one with `behave data generate timeseries-synth --name seqcomb-uv --out "
        f"{data_dir}` or import one with `behave data import ucr GunPoint --out {data_dir}`"
    )


def load_timeseries(data_dir: Path, verify: bool = True) -> TimeSeriesData:
    """Read a time-series folder (generated or imported) as numpy arrays per split.

    ``verify`` re-hashes the files against the manifest first. Raises :class:`DataError`
    naming the file for a missing, unreadable or empty file, a wrong schema, missing or
    non-finite values, labels outside 0..C-1 or split sizes that disagree with the manifest.
    """
    data_dir = Path(data_dir)
    data_dir = data_dir.parent if data_dir.is_file() else data_dir
    if not (data_dir / MANIFEST_FILE).is_file():
        raise DataError(f"no {MANIFEST_FILE} in {data_dir}: {_fix(data_dir, None)}")
    manifest = read_manifest(data_dir)
    fix = _fix(data_dir, manifest)
    if manifest.get("kind") != "timeseries":
        raise DataError(f"{data_dir} holds {manifest.get('kind')!r} data, not timeseries; {fix}")
    path = data_dir / SERIES_FILE
    if not path.is_file():
        raise DataError(f"{path} is missing; {fix}")
    if verify:
        verify_manifest(data_dir, fix=fix)
    keys = ("seq_len", "channels", "num_classes", "class_names", "split_sizes", "has_ground_truth")
    absent = [k for k in keys if k not in manifest]
    if absent:
        raise DataError(f"{data_dir / MANIFEST_FILE} lacks {absent}; {fix}")
    seq_len, channels = int(manifest["seq_len"]), int(manifest["channels"])
    num_classes = int(manifest["num_classes"])
    width = seq_len * channels
    check_table(
        path,
        _schema(width),
        table=f"a series table of seq_len x channels = {seq_len} x {channels} values per row",
        fix=fix,
        nullable=("truth",),  # sets without ground truth
    )

    frame = pl.read_parquet(path, columns=list(_schema(width)))
    split_col = frame["split"].to_numpy()
    unknown = sorted(set(np.unique(split_col).tolist()) - set(SPLITS))
    if unknown:
        raise DataError(f"{path}: unknown split value(s) {unknown}; expected {SPLITS}; {fix}")
    x = frame["x"].to_numpy().reshape(-1, seq_len, channels)  # (N, T, D) float32
    y = frame["label"].to_numpy()
    bad = (y < 0) | (y >= num_classes)
    if bad.any():
        raise DataError(
            f"{path}: {int(bad.sum()):,} labels outside 0..{num_classes - 1} "
            f"(e.g. {int(y[bad][0])}) for {num_classes} classes; {fix}"
        )
    has_truth = bool(manifest["has_ground_truth"])
    truth = None
    if has_truth:
        if frame["truth"].null_count():
            raise DataError(
                f"{path}: {frame['truth'].null_count():,} rows without truth although the "
                f"manifest says has_ground_truth; {fix}"
            )
        truth = frame["truth"].to_numpy().reshape(-1, seq_len, channels)  # (N, T, D) uint8

    splits: dict[str, Split] = {}
    for split in SPLITS:
        rows = np.flatnonzero(split_col == split)
        expected = int(manifest["split_sizes"].get(split, 0))
        if len(rows) != expected:
            raise DataError(
                f"{path}: {len(rows):,} {split} rows, the manifest says {expected:,}; {fix}"
            )
        splits[split] = (x[rows], y[rows], None if truth is None else truth[rows])
    return TimeSeriesData(
        name=str(manifest.get("dataset", data_dir.name)),
        seq_len=seq_len,
        channels=channels,
        num_classes=num_classes,
        class_names=[str(c) for c in manifest["class_names"]],
        null_class=manifest.get("null_class"),
        has_ground_truth=has_truth,
        manifest=manifest,
        splits=splits,
    )
