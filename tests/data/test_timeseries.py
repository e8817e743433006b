"""Time-series classification data for the TimeX explainers: each synthetic set plants exactly
the signal its spec describes where its ground truth says, generation is seeded, the Parquet
layout round-trips, loading refuses damaged folders, and aeon's bundled UCR/UEA sets import
offline."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from behave.cli import main
from behave.data.manifest import DataError, write_manifest
from behave.data.timeseries import (
    SERIES_FILE,
    generate_timeseries_synth,
    import_ucr,
    load_timeseries,
    offline_ucr_names,
)
from behave.data.timeseries_synth import SYNTH_DATASETS, _generate, make_synth, synth_splits

N = 64  # series per check: 16 per class


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of each run of 1s in a 1-D mask."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return list(zip(starts.tolist(), (ends - starts).tolist(), strict=True))


def _gen(name: str, n: int = N, seed: int = 0) -> dict[str, np.ndarray]:
    return _generate(name, n, np.random.default_rng(seed))


# ---- generators --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(SYNTH_DATASETS))
def test_shapes_dtypes_and_balanced_shuffled_classes(name):
    info = SYNTH_DATASETS[name]
    x, y, truth = make_synth(name, 66, np.random.default_rng(0))
    assert x.shape == truth.shape == (66, info.seq_len, info.channels)
    assert (x.dtype, y.dtype, truth.dtype) == (np.float32, np.int64, np.uint8)
    assert np.isfinite(x).all() and set(np.unique(truth)) <= {0, 1}
    counts = np.bincount(y, minlength=info.num_classes)
    assert counts.sum() == 66 and counts.max() - counts.min() <= 1
    assert not np.array_equal(y, np.sort(y))  # shuffled, not sorted by class
    assert len(info.class_names) == info.num_classes


@pytest.mark.parametrize("name", list(SYNTH_DATASETS))
def test_same_seed_same_arrays_other_seed_other_arrays(name):
    a, b, c = (synth_splits(name, s, num_train=16, num_val=4, num_test=8) for s in (3, 3, 4))
    assert [len(a[s][1]) for s in ("train", "val", "test")] == [16, 4, 8]
    for split in a:
        for left, right in zip(a[split], b[split], strict=True):
            assert np.array_equal(left, right)
    assert not np.array_equal(a["train"][0], c["train"][0])
    assert not np.array_equal(a["train"][0], a["test"][0][:16])  # splits are distinct draws


def test_unknown_names_and_bad_sizes_are_clear():
    with pytest.raises(ValueError, match="seqcomb-uv, seqcomb-mv, freqshapes, lowvardetect"):
        make_synth("seqcomb", 4, np.random.default_rng(0))
    with pytest.raises(ValueError, match="choose one of"):
        synth_splits("SeqComb-UV")
    with pytest.raises(ValueError, match="num_train >= 1"):
        synth_splits("freqshapes", num_train=0)


def test_narma_background_is_the_timesynth_recursion():
    out = _gen("seqcomb-uv", 256)
    background = out["background"][out["y"] == 0][..., 0]  # class 0: background only
    # y[t] = 0.3 y[t-1] + 1.5 u u' + 0.1 with u, u' in [0, 0.5): y in [0.1, 0.1 + 0.375 / 0.7)
    assert background.min() > 0.1 - 0.06 and background.max() < 0.1 + 0.375 / 0.7 + 0.06
    assert abs(background[:, 50:].mean() - (0.1 + 1.5 * 0.0625) / 0.7) < 0.01  # stationary mean
    assert np.array_equal(out["x"][out["y"] == 0], out["background"][out["y"] == 0])


@pytest.mark.parametrize("name", ["seqcomb-uv", "seqcomb-mv"])
def test_seqcomb_plants_two_trend_plus_sine_segments_where_the_truth_says(name):
    out = _gen(name)
    x, y, truth, background = out["x"], out["y"], out["truth"], out["background"]
    low, high = (10, 19) if name == "seqcomb-uv" else (15, 29)
    seq_len = SYNTH_DATASETS[name].seq_len
    # class 0 has no ground truth, every other sample has some
    assert truth[y == 0].sum() == 0 and (truth[y != 0].sum(axis=(1, 2)) > 0).all()
    # the truth is exactly where the signal replaced the background
    assert np.array_equal(x != background, truth.astype(bool))
    signs = {1: (-1, -1), 2: (1, 1), 3: (1, -1)}
    for i in np.flatnonzero(y != 0):
        rise = 5 * (abs(background[i].min()) + abs(background[i].max()))
        (s1, l1, c1), (s2, l2, c2) = out["segments"][i]
        assert low <= l1 <= high and low <= l2 <= high
        assert 0 <= s1 < seq_len // 2 and s1 + l1 <= s2 and s2 + l2 <= seq_len  # no overlap
        expected = np.zeros_like(truth[i])
        expected[s1 : s1 + l1, c1] = expected[s2 : s2 + l2, c2] = 1
        assert np.array_equal(truth[i], expected)
        for k, (start, length, channel) in enumerate(out["segments"][i]):
            pos = np.arange(length) - length // 2  # integer steps centred on 0
            trend = x[i, start : start + length, channel] - np.sin(out["freq"][i, k] * pos)
            slope = signs[int(y[i])][k] * rise / length
            assert np.allclose(trend, slope * pos)
        if name == "seqcomb-uv":  # one channel: one run, or two touching runs merged
            runs = _runs(truth[i, :, 0])
            assert [r[1] for r in runs] in ([l1, l2], [l1 + l2])
        else:  # two distinct channels, one run each
            assert c1 != c2
            hot = np.flatnonzero(truth[i].any(axis=0))
            assert sorted(hot.tolist()) == sorted([c1, c2])
            assert [len(_runs(truth[i, :, c])) for c in hot] == [1, 1]
            assert {r[1] for c in hot for r in _runs(truth[i, :, c])} <= set(range(low, high + 1))
    assert (out["freq"] >= 0).all() and abs(out["freq"].mean() - (10 if "uv" in name else 5)) < 2


def test_freqshapes_spikes_every_period_three_points_each():
    out = _gen("freqshapes")
    x, y, truth, noise = out["x"][..., 0], out["y"], out["truth"][..., 0], out["background"][..., 0]
    shape = {0: -1, 1: 1, 2: -1, 3: 1}
    period = {0: 10, 1: 10, 2: 17, 3: 17}
    for i in range(N):
        runs = _runs(truth[i])
        assert runs and all(length == 3 for _, length in runs)
        starts = np.array([s for s, _ in runs])
        assert (np.diff(starts) == period[int(y[i])]).all()
        # every centre that fits is there: none before the first or after the last
        first_centre = out["segments"][i, 0]
        centres = np.arange(first_centre, 50, period[int(y[i])])
        fits = centres[(centres >= 1) & (centres <= 48)]
        assert np.array_equal(starts + 1, fits)
        # the signal is the spike shape exactly at the truth, 0 elsewhere, under N(0, 0.25²)
        signal = x[i] - noise[i]
        spike = shape[int(y[i])] * np.array([1.75, 2.0, 1.75])
        assert np.allclose(signal[truth[i] == 1].reshape(-1, 3), spike, atol=1e-5)
        assert np.allclose(signal[truth[i] == 0], 0.0, atol=1e-5)
    assert abs(noise.std() - 0.25) < 0.01


def test_lowvardetect_one_low_variance_segment_on_the_class_channel():
    out = _gen("lowvardetect", 128)
    x, y, truth, background = out["x"], out["y"], out["truth"], out["background"]
    assert np.array_equal(x != background, truth.astype(bool))
    stds = []
    for i in range(len(y)):
        channel = 0 if y[i] in (0, 1) else 1
        assert truth[i, :, 1 - channel].sum() == 0
        ((start, length),) = _runs(truth[i, :, channel])
        assert 10 <= length <= 19 and 20 <= start < 160
        segment = x[i, start : start + length, channel]
        assert abs(segment.mean() - (-1.5 if y[i] in (0, 2) else 1.5)) < 0.15
        stds.append(segment.std(ddof=1))
    assert 0.08 < np.mean(stds) < 0.12  # low variance: the background's std is ~1
    assert 0.9 < background.std() < 1.15


# ---- files -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def seqcomb_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("seqcomb")
    generate_timeseries_synth(out, "seqcomb-mv", seed=1, num_train=N, num_val=8, num_test=16)
    return out


def test_write_load_round_trip_and_manifest(seqcomb_dir, tmp_path):
    data = load_timeseries(seqcomb_dir)
    expected = synth_splits("seqcomb-mv", 1, num_train=N, num_val=8, num_test=16)
    for split in ("train", "val", "test"):
        for got, want in zip(data.splits[split], expected[split], strict=True):
            assert got.dtype == want.dtype and np.array_equal(got, want)
    assert (data.name, data.seq_len, data.channels, data.num_classes) == ("seqcomb-mv", 200, 4, 4)
    assert data.null_class == 0 and data.has_ground_truth
    m = data.manifest
    assert m["kind"] == "timeseries" and m["source"] == "synthetic" and m["dataset"] == "seqcomb-mv"
    assert m["split_sizes"] == {"train": N, "val": 8, "test": 16}
    assert m["class_names"] == ["none", "down-down", "up-up", "up-down"]
    assert m["null_class"] == 0 and m["has_ground_truth"] is True and m["seed"] == 1
    # time-major flattening: x[t * D + d]
    frame = pl.read_parquet(seqcomb_dir / SERIES_FILE)
    assert frame.schema["x"] == pl.Array(pl.Float32, 800)
    assert frame["split"].to_list()[: N + 1] == ["train"] * N + ["val"]
    row = frame["x"][0].to_numpy()
    assert np.array_equal(row.reshape(200, 4), data.splits["train"][0][0])
    # same arguments, same bytes
    again = generate_timeseries_synth(
        tmp_path, "seqcomb-mv", seed=1, num_train=N, num_val=8, num_test=16
    )
    assert again["content_hash"] == m["content_hash"]


def test_load_refuses_missing_tampered_and_malformed_folders(seqcomb_dir, tmp_path):
    with pytest.raises(DataError, match="behave data generate timeseries-synth"):
        load_timeseries(tmp_path / "nothing")
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    for name in (SERIES_FILE, "manifest.json"):
        (tampered / name).write_bytes((seqcomb_dir / name).read_bytes())
    frame = pl.read_parquet(tampered / SERIES_FILE)
    frame.with_columns(pl.col("label").reverse()).write_parquet(tampered / SERIES_FILE)
    with pytest.raises(DataError, match=r"series\.parquet changed.*--name seqcomb-mv"):
        load_timeseries(tampered)

    def rewrite(frame: pl.DataFrame, folder) -> None:  # damage, then re-hash: content checks
        folder.mkdir()
        frame.write_parquet(folder / SERIES_FILE)
        manifest = load_timeseries(seqcomb_dir).manifest
        extra = {k: v for k, v in manifest.items() if k in _EXTRA}
        write_manifest(
            folder,
            kind="timeseries",
            generator="behave.data.timeseries",
            generator_version="1",
            seed=1,
            params=manifest["params"],
            files=[SERIES_FILE],
            extra=extra,
        )

    x = frame["x"].to_numpy().copy()
    x[3, 17] = np.nan
    nan = frame.with_columns(pl.Series("x", x, dtype=frame.schema["x"]))
    rewrite(nan, tmp_path / "nan")
    with pytest.raises(DataError, match=r"nan/series\.parquet: NaN or inf in \{'x': 1\}.*row 3"):
        load_timeseries(tmp_path / "nan")
    rewrite(frame.with_columns(pl.lit(7, pl.Int64).alias("label")), tmp_path / "labels")
    with pytest.raises(DataError, match=r"series\.parquet: .* labels outside 0\.\.3"):
        load_timeseries(tmp_path / "labels")
    rewrite(frame.drop("truth"), tmp_path / "schema")
    with pytest.raises(DataError, match=r"series\.parquet: .*missing columns \['truth'\]"):
        load_timeseries(tmp_path / "schema")
    short = frame.with_columns(pl.col("x").arr.slice(0, 400).list.to_array(400))
    rewrite(short, tmp_path / "short")
    with pytest.raises(
        DataError, match=r"x channels = .* per row: column 'x' is Array\(Float32, shape=\(400,\)\)"
    ):
        load_timeseries(tmp_path / "short")


_EXTRA = (
    "dataset seq_len channels layout split_sizes num_classes class_names null_class "
    "has_ground_truth source description padded original_length_min original_length_max"
).split()


# ---- UCR/UEA via aeon --------------------------------------------------------------------------
def test_import_gunpoint_round_trip(tmp_path):
    from aeon.datasets import load_classification

    manifest = import_ucr("GunPoint", tmp_path, val_fraction=0.1, seed=0)
    data = load_timeseries(tmp_path)
    assert (data.seq_len, data.channels, data.num_classes) == (150, 1, 2)
    assert data.class_names == ["1", "2"] and not data.has_ground_truth
    assert manifest["split_sizes"] == {"train": 45, "val": 5, "test": 150}
    assert manifest["source"] == "aeon UCR/UEA" and manifest["padded"] is False
    x_train, y_train, truth = data.splits["train"]
    assert x_train.shape == (45, 150, 1) and truth is None
    assert set(np.bincount(data.splits["val"][1])) == {2, 3}  # per class: 10% of 24 and 26
    # raw values (not normalized), time-major, labels "1"/"2" -> 0/1, rows in aeon's order
    raw_x, raw_y = load_classification("GunPoint", split="test")
    x_test, y_test, _ = data.splits["test"]
    assert np.allclose(x_test[:, :, 0], raw_x[:, 0, :].astype(np.float32))
    assert np.array_equal(y_test, raw_y.astype(int) - 1)
    raw_train, _ = load_classification("GunPoint", split="train")
    together = np.concatenate([x_train, data.splits["val"][0]])[:, :, 0]
    assert sorted(map(bytes, together)) == sorted(map(bytes, raw_train[:, 0].astype(np.float32)))
    other = import_ucr("gunpoint", tmp_path / "again", seed=1)  # case-insensitive, new val rows
    assert other["dataset"] == "GunPoint" and other["content_hash"] != manifest["content_hash"]


def test_import_unequal_length_pads_with_the_last_value(tmp_path):
    from aeon.datasets import load_classification

    manifest = import_ucr("JapaneseVowels", tmp_path)
    assert manifest["padded"] is True and manifest["channels"] == 12
    assert (manifest["original_length_min"], manifest["original_length_max"]) == (7, 29)
    x_test = load_timeseries(tmp_path).splits["test"][0]
    raw, _ = load_classification("JapaneseVowels", split="test")
    first = raw[0].T.astype(np.float32)  # (T_0, 12)
    assert np.array_equal(x_test[0, : len(first)], first)
    assert (x_test[0, len(first) :] == first[-1]).all()


def test_import_refuses_names_that_would_download_and_bad_fractions(tmp_path):
    assert {"GunPoint", "BasicMotions", "ArrowHead", "JapaneseVowels"} <= set(offline_ucr_names())
    assert "Covid3Month" not in offline_ucr_names()  # a regression set
    with pytest.raises(DataError, match=r"'Wafer' does not ship inside aeon.*GunPoint"):
        import_ucr("Wafer", tmp_path)
    with pytest.raises(ValueError, match="val_fraction"):
        import_ucr("GunPoint", tmp_path, val_fraction=1.0)


# ---- CLI ---------------------------------------------------------------------------------------
def test_cli_generates_and_imports_timeseries(tmp_path, capsys):
    main(
        ["data", "generate", "timeseries-synth", "--name", "lowvardetect", "--out"]
        + [str(tmp_path / "lvd"), "--train", "32", "--val", "4", "--test", "8", "--seed", "2"]
    )
    line = capsys.readouterr().out.strip()
    assert "32 train / 4 val / 8 test" in line and "T=200, D=2, 4 classes" in line
    assert "content hash" in line and "\n" not in line
    assert load_timeseries(tmp_path / "lvd").manifest["seed"] == 2

    main(["data", "import", "ucr", "BasicMotions", "--out", str(tmp_path / "bm")])
    main(["data", "import", "ucr", "ItalyPowerDemand", "--out", str(tmp_path / "ipd")])
    main(["data", "import", "ucr", "ArrowHead", "--out", str(tmp_path / "ah")])
    basic, italy, arrow = capsys.readouterr().out.strip().split("\n")
    assert "BasicMotions: 36 train / 4 val / 40 test" in basic and "D=6" in basic
    assert "no ground truth" in basic
    assert "ItalyPowerDemand" in italy and "ArrowHead" in arrow
    assert load_timeseries(tmp_path / "bm").class_names[0] == "badminton"

    for argv in (
        ["data", "generate", "timeseries-synth", "--name", "seqcomb", "--out", str(tmp_path)],
        ["data", "import", "ucr", "Wafer", "--out", str(tmp_path / "w")],
        ["data", "import", "ucr", "--out", str(tmp_path / "w")],
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("behave: error: ") and err.count("\n") == 1
    assert not (tmp_path / "w").exists()
