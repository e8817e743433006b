"""Bad data in the other families (offline-RL, traffic, spikes, time series) is a one-line
``DataError`` naming the file, the problem and the fix, never a crash or a silent run, and the
input is left as it was: the same guarantees tests/reliability/test_bad_data.py gives user events.

The matrix builds each datamodule in process (family x fault); one ``behave fit`` per family
checks the same errors end the command with exit code 2 and one line, without a traceback."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tests.reliability.test_bad_data import _reseal  # a manifest that agrees with a bad file
from tests.test_cli import REPO, behave

pytestmark = [pytest.mark.slow, pytest.mark.reliability]


@dataclass(frozen=True)
class Family:
    file: str  # the main table; faults damage it unless they name another file
    datamodule: str  # module:class
    kwargs: dict  # small settings (as the family's tiny pipeline)
    pipeline: str  # pipelines/<name>.yaml for the end-to-end run
    fix: str  # words of the fix every message must carry
    drop: str  # a required column (dropped, or reversed to edit the file)
    nan: tuple[str, str]  # (file, float column) a NaN goes into
    inf: tuple[str, str]  # (file, float column) an inf goes into
    null: tuple[str, str]  # (file, column that may not be null)
    needs: tuple[str, ...] = field(default=())  # importable modules the generator needs


FAMILIES = {
    "offline-rl": Family(
        file="transitions.parquet",
        datamodule="behave.data.offline_rl_datamodule:OfflineRLDataModule",
        kwargs={"context_length": 8, "batch_size": 16, "windows_per_epoch": 64},
        pipeline="decision-mamba-tiny",
        fix="behave data generate offline-rl",
        drop="reward",
        nan=("transitions.parquet", "observation"),  # an Array column
        inf=("transitions.parquet", "reward"),
        null=("transitions.parquet", "terminal"),
        needs=("gymnasium", "Box2D"),
    ),
    "traffic": Family(
        file="tracks.parquet",
        datamodule="behave.data.traffic_datamodule:TrafficDataModule",
        kwargs={},
        pipeline="graph-lstm-tiny",
        fix="behave data generate traffic",
        drop="x",
        nan=("tracks.parquet", "x"),
        inf=("tracks.parquet", "vy"),
        null=("tracks.parquet", "agent"),
        needs=("highway_env",),
    ),
    "spikes": Family(
        file="spikes.parquet",
        datamodule="behave.data.spikes_datamodule:SpikesDataModule",
        kwargs={"stride_bins": 5, "val_fraction": 0.2, "test_fraction": 0.2, "few_shot_trials": 2},
        pipeline="neuroformer-tiny",
        fix="behave data generate spikes",
        drop="time",
        nan=("spikes.parquet", "time"),
        inf=("covariates.parquet", "behavior"),
        null=("spikes.parquet", "neuron"),
    ),
    "timeseries": Family(
        file="series.parquet",
        datamodule="behave.data.timeseries_datamodule:TimeSeriesDataModule",
        kwargs={"batch_size": 16},
        pipeline="tsclassifier-tiny",
        fix="behave data generate timeseries-synth",
        drop="label",
        nan=("series.parquet", "x"),  # an Array column
        inf=("series.parquet", "x"),
        null=("series.parquet", "label"),
    ),
}


def _generate(family: str, out: Path) -> None:
    """The smallest data each family's tiny pipeline still loads (about 2 s for all four)."""
    for module in FAMILIES[family].needs:
        pytest.importorskip(module)
    if family == "offline-rl":
        from behave.data.offline_rl import generate_offline_rl

        generate_offline_rl(out, quality="medium", num_transitions=300, seed=1, progress=False)
    elif family == "traffic":
        from behave.data.traffic import generate_traffic
        from behave.data.traffic_sim import SceneConfig

        small = SceneConfig(lanes=(2, 2), vehicles_per_lane=(3, 3), duration_s=8.0, warmup_s=1.0)
        generate_traffic(out, scenes=3, seed=3, config=small, progress=False)
    elif family == "spikes":
        from behave.data.spikes import generate_spikes
        from behave.data.spikes_sim import CircuitConfig

        config = CircuitConfig(num_neurons=20, num_trials=6, trial_s=1.0)
        generate_spikes(out, config=config, seed=0, progress=False)
    else:
        from behave.data.timeseries import generate_timeseries_synth

        generate_timeseries_synth(out, "freqshapes", seed=1, num_train=16, num_val=4, num_test=4)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """family -> a clean data folder, generated once per module on first use."""
    root = tmp_path_factory.mktemp("bad-data-families")
    made: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in made:
            _generate(family, root / family)
            made[family] = root / family
        return made[family]

    return get


@pytest.fixture(autouse=True)
def _no_global_store(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


# ---- faults ------------------------------------------------------------------------------------
def _set_row_1(path: Path, column: str, value: float | None) -> None:
    """Row 1 of ``column`` becomes ``value`` (in an Array column: its first element; a None
    there nulls the whole row)."""
    df = pl.read_parquet(path)
    dtype = df.schema[column]
    if isinstance(dtype, pl.Array) and value is not None:
        values = df[column].to_numpy().copy()
        values[1, 0] = value
        series = pl.Series(column, values, dtype=dtype)
    else:
        series = df[column].scatter(1, value)
    df.with_columns(series).write_parquet(path)


def _damage(fault: str, family: Family, folder: Path) -> tuple[Path, str]:
    """Damages ``folder`` as ``fault`` says; returns the damaged file and the words its error
    must contain."""
    main = folder / family.file
    if fault == "edited since its manifest":  # values changed, manifest left as it was
        df = pl.read_parquet(main)
        df.with_columns(pl.col(family.drop).reverse()).write_parquet(main)
        return main, "changed since its manifest was written"
    if fault == "truncated":
        main.write_bytes(main.read_bytes()[: main.stat().st_size // 2])
        damaged, words = main, "not a readable Parquet file"
    elif fault == "empty file":
        main.write_bytes(b"")
        damaged, words = main, "not a readable Parquet file"
    elif fault == "empty table":
        pl.read_parquet(main).clear().write_parquet(main)
        damaged, words = main, "the table is empty"
    elif fault == "missing column":
        pl.read_parquet(main).drop(family.drop).write_parquet(main)
        damaged, words = main, f"missing columns ['{family.drop}']"
    else:  # nan, inf, null
        name, column = getattr(family, fault)
        damaged = folder / name
        _set_row_1(damaged, column, {"nan": np.nan, "inf": np.inf, "null": None}[fault])
        problem = "missing values in" if fault == "null" else "NaN or inf in"
        words = f"{problem} {{'{column}': 1}}"
    _reseal(folder)
    return damaged, words


FAULTS = [
    "edited since its manifest",
    "truncated",
    "empty file",
    "empty table",
    "missing column",
    "nan",
    "inf",
    "null",
]


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _load(family: Family, folder: Path):
    """What `behave fit` asks of a datamodule before training: build it, set it up, read the
    facts the model is sized from."""
    import importlib

    module, name = family.datamodule.split(":")
    dm = getattr(importlib.import_module(module), name)(data_dir=str(folder), **family.kwargs)
    dm.setup("fit")
    return dm.data_info


# ---- in process: every family x every fault ----------------------------------------------------
@pytest.mark.parametrize("family", list(FAMILIES))
def test_clean_data_loads(good, family):
    assert _load(FAMILIES[family], good(family))["content_hash"]


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("family", list(FAMILIES))
def test_bad_table_is_a_data_error_naming_file_problem_and_fix(good, tmp_path, family, fault):
    from behave.data.manifest import DataError

    spec = FAMILIES[family]
    folder = tmp_path / family
    shutil.copytree(good(family), folder)
    damaged, words = _damage(fault, spec, folder)
    before = _hashes(folder)
    with pytest.raises(DataError) as caught:
        _load(spec, folder)
    message = str(caught.value)
    assert "\n" not in message, message
    assert str(damaged) in message and words in message and spec.fix in message, message
    assert _hashes(folder) == before


# ---- end to end: `behave fit` exits 2 with one line ------------------------------------------
@pytest.mark.parametrize(
    ("family", "fault"),
    [("offline-rl", "nan"), ("traffic", "null"), ("spikes", "inf"), ("timeseries", "empty table")],
)
def test_behave_fit_on_bad_data_exits_2_with_one_line(good, tmp_path, family, fault):
    spec = FAMILIES[family]
    folder = tmp_path / "data"
    shutil.copytree(good(family), folder)
    damaged, words = _damage(fault, spec, folder)
    before = _hashes(folder)
    proc = behave(
        "fit", "--config", str(REPO / "pipelines" / f"{spec.pipeline}.yaml"),
        "--data.data_dir", str(folder), "--trainer.fast_dev_run", "true",
        cwd=tmp_path, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-4000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("behave: error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-4000:]
    assert str(damaged) in errors[0] and words in errors[0] and spec.fix in errors[0], errors[0]
    assert _hashes(folder) == before
