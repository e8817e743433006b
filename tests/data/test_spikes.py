"""Spiking-circuit data: the simulator's ground truth shows in its spikes, generation is
deterministic, the Parquet layout round-trips, and imports quarantine what they cannot use."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from behave.cli import main
from behave.data.manifest import DataError, verify_manifest
from behave.data.spikes import (
    COVARIATES_FILE,
    SPIKES_FILE,
    generate_spikes,
    import_spikes,
    load_binned,
)
from behave.data.spikes_sim import CircuitConfig, simulate_circuit

TINY = CircuitConfig(num_neurons=20, num_trials=4, trial_s=1.0)
MEDIUM = CircuitConfig(num_trials=60)  # 100 neurons: enough spikes to see every hub edge


@pytest.fixture(scope="module")
def sim():
    return simulate_circuit(MEDIUM, seed=0)


def _lift(counts: np.ndarray, source: int, delay: int) -> np.ndarray:
    """P(target spikes at t + delay | source spiked at t) / P(target spikes), for every target."""
    before = counts[:, :-delay, source].astype(np.float64)  # (R, L - d)
    after = counts[:, delay:, :].astype(np.float64)  # (R, L - d, N)
    conditional = np.einsum("rl,rln->n", before, after) / before.sum()
    return conditional / after.mean(axis=(0, 1))


def test_simulation_is_deterministic_per_seed():
    a, b, c = (simulate_circuit(TINY, seed) for seed in (1, 1, 2))
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    assert not np.array_equal(a["counts"], c["counts"])
    assert not np.array_equal(a["edges"], c["edges"])


def test_rates_are_sane_and_the_network_is_stable(sim):
    counts = sim["counts"]
    assert counts.shape == (60, 300, 100) and counts.dtype == np.uint8 and counts.max() == 1
    rate_hz = counts.mean(axis=(0, 1)) / MEDIUM.bin_s  # (N,)
    assert 5.0 < rate_hz.mean() < 12.0
    assert rate_hz.max() < 40.0  # nobody runs away
    # stimulus on: the rate of the first and the last second agree (no slow build-up)
    early, late = counts[:, 50:150].mean(), counts[:, 200:300].mean()
    assert 0.8 < late / early < 1.25
    # refractory: no neuron fires in two consecutive bins
    assert not (counts[:, 1:] & counts[:, :-1]).any()
    # spike table: inside its bin, sorted by (trial, time, neuron)
    bins = np.floor(sim["spike_time"] / MEDIUM.bin_s).astype(int)
    assert counts[sim["spike_trial"], bins, sim["spike_neuron"]].all()
    assert len(bins) == counts.sum()
    order = np.lexsort((sim["spike_neuron"], sim["spike_time"], sim["spike_trial"]))
    assert np.array_equal(order, np.arange(len(order)))


def test_hub_edges_drive_their_targets_and_non_edges_do_not(sim):
    counts, edges, hubs = sim["counts"], sim["edges"], sim["hubs"]
    assert len(hubs) == 5
    edge_lift, other_lift, hits = [], [], []
    for hub in hubs:
        mine = edges[(edges[:, 0] == hub) & (edges[:, 3] > 1.0)]  # the hub's strong edges
        targets, delays = mine[:, 1].astype(int), mine[:, 2].astype(int)
        assert len(targets) >= 20  # ~25% of the other neurons
        lifts = np.stack([_lift(counts, hub, d) for d in (1, 2, 3)])  # (3, N)
        edge_lift.extend(lifts[delays - 1, targets])
        wired = set(edges[edges[:, 0] == hub, 1].astype(int)) | {int(hub)}
        strangers = [j for j in range(counts.shape[2]) if j not in wired]
        other_lift.extend(lifts[:, strangers].ravel())
        # the delay is visible too: the lift peaks at the edge's own delay
        hits.extend(lifts[:, targets].argmax(axis=0) + 1 == delays)
    assert np.mean(edge_lift) > 2.5
    assert 0.8 < np.mean(other_lift) < 1.2
    assert np.mean(hits) > 0.9


def test_running_speed_depends_on_and_modulates_activity(sim):
    counts, speed = sim["counts"].astype(np.float64), sim["behavior"].astype(np.float64)
    assert sim["behavior"].dtype == np.float32 and (speed >= 0).all() and speed.std() > 1.0
    # depends: the speed's innovation follows the previous bin's motor spikes, not others'
    innovation = (speed[:, 1:] - MEDIUM.speed_ar * speed[:, :-1]).ravel()
    motor = sim["motor"]
    others = np.setdiff1d(np.arange(counts.shape[2]), motor)[: len(motor)]
    motor_corr = np.corrcoef(counts[:, :-1, motor].sum(-1).ravel(), innovation)[0, 1]
    other_corr = np.corrcoef(counts[:, :-1, others].sum(-1).ravel(), innovation)[0, 1]
    assert motor_corr > 0.15 and abs(other_corr) < 0.1
    # modulates: each neuron's speed-spike correlation follows the sign of its gain
    corr = np.array(
        [np.corrcoef(speed.ravel(), counts[:, :, n].ravel())[0, 1] for n in range(counts.shape[2])]
    )
    assert np.corrcoef(sim["speed_gain"], corr)[0, 1] > 0.8


def test_stimulus_repeats_per_condition(sim):
    stimulus, conditions = sim["stimulus"], sim["conditions"]
    assert stimulus.shape == (60, 300, 8) and set(conditions) == {0, 1, 2, 3}
    assert not stimulus[:, :50].any()  # grey screen for the first 0.5 s
    for c in range(4):
        same = stimulus[conditions == c]
        assert (same == same[0]).all()
    assert not np.array_equal(stimulus[conditions == 0][0], stimulus[conditions == 1][0])


def test_generated_folder_follows_the_contract_and_round_trips(tmp_path):
    manifest = generate_spikes(tmp_path / "a", config=TINY, seed=3, progress=False)
    again = generate_spikes(tmp_path / "b", config=TINY, seed=3, progress=False)
    other = generate_spikes(tmp_path / "c", config=TINY, seed=4, progress=False)
    assert manifest["content_hash"] == again["content_hash"] != other["content_hash"]
    verify_manifest(tmp_path / "a")
    spikes = pl.read_parquet(tmp_path / "a" / SPIKES_FILE)
    assert dict(spikes.schema) == {"trial": pl.Int32, "neuron": pl.Int32, "time": pl.Float64}
    assert spikes.equals(spikes.sort("trial", "time", "neuron"))
    assert spikes["time"].min() >= 0 and spikes["time"].max() < TINY.trial_s
    covariates = pl.read_parquet(tmp_path / "a" / COVARIATES_FILE)
    assert covariates.columns == ["trial", "bin", "behavior", *[f"stim_{k}" for k in range(8)]]
    assert covariates.height == 4 * 100
    assert manifest["kind"] == "spikes" and manifest["behavior"] == "running_speed"
    assert (manifest["num_neurons"], manifest["num_trials"], manifest["bin_s"]) == (20, 4, 0.01)
    assert manifest["trial_s"] == 1.0 and manifest["stimulus_channels"] == 8

    sim = simulate_circuit(TINY, seed=3)
    binned = load_binned(tmp_path / "a")
    assert binned.counts.dtype == np.uint8 and np.array_equal(binned.counts, sim["counts"])
    assert np.array_equal(binned.behavior, sim["behavior"])
    assert np.array_equal(binned.stimulus, sim["stimulus"])
    assert np.array_equal(binned.conditions, sim["conditions"])
    expected = np.zeros((20, 20), dtype=bool)
    expected[sim["edges"][:, 0].astype(int), sim["edges"][:, 1].astype(int)] = True
    assert np.array_equal(binned.adjacency, expected) and not binned.adjacency.diagonal().any()
    assert manifest["adjacency"]["hubs"] == sim["hubs"].tolist()


def test_load_binned_says_how_to_make_the_folder(tmp_path):
    with pytest.raises(DataError, match="behave data generate spikes"):
        load_binned(tmp_path)
    generate_spikes(tmp_path, config=TINY, progress=False)
    (tmp_path / SPIKES_FILE).unlink()
    with pytest.raises(DataError, match="spikes.parquet is missing"):
        load_binned(tmp_path)


def _write_csv(path, rows: list[tuple]) -> None:
    pl.DataFrame(rows, schema=["unit", "t", "tr"], orient="row").write_csv(path)


def test_import_quarantines_bad_rows_and_renumbers_neurons(tmp_path):
    good = [("12", "0.015", "a"), ("40", "0.021", "a"), ("12", "0.5", "b"), ("7", "0.0", "b")]
    bad = [
        ("12", "-0.1", "a"),  # negative time
        ("12", "nan", "a"),  # non-finite time
        ("40", "", "a"),  # missing time
        ("3.5", "0.1", "a"),  # non-integer neuron
        ("-2", "0.1", "a"),  # negative neuron
        ("40", "0.021", "a"),  # second copy of a spike
        ("12", "0.3", ""),  # missing trial
    ]
    _write_csv(tmp_path / "s.csv", good + bad)
    summary = import_spikes(
        tmp_path / "s.csv", tmp_path / "out", mapping={"neuron": "unit", "time": "t", "trial": "tr"}
    )
    assert summary.rows_read == summary.rows_written + summary.rows_quarantined == 11
    assert summary.reasons == {
        "time_negative": 1,
        "time_not_a_number": 1,
        "time_missing": 1,
        "neuron_not_integer": 1,
        "neuron_negative": 1,
        "duplicate": 1,
        "trial_missing": 1,
    }
    quarantine = pl.read_parquet(summary.quarantine_path)
    assert quarantine["source_row"].to_list() == list(range(4, 11))
    assert "7 quarantined" in summary.one_line() and "duplicate: 1" in summary.one_line()
    manifest = summary.manifest
    assert manifest["neuron_ids"] == [7, 12, 40] and manifest["trial_ids"] == ["a", "b"]
    assert manifest["adjacency"] is None and manifest["behavior"] is None
    binned = load_binned(tmp_path / "out")
    assert binned.counts.shape == (2, 51, 3)  # until the bin of the last spike (0.5 s)
    assert binned.counts.sum() == 4 and binned.counts[0, 1, 1] == 1  # neuron 12 at 15 ms
    assert binned.counts[1, 0, 0] == 1 and binned.counts[0, 2, 2] == 1
    assert binned.behavior is None and binned.stimulus is None and binned.adjacency is None


def test_import_errors_name_the_column_and_the_fix(tmp_path):
    pl.DataFrame({"unit": [1, 2], "time": [0.1, 0.2]}).write_csv(tmp_path / "s.csv")
    with pytest.raises(DataError, match=r"no 'neuron' column.*--map neuron="):
        import_spikes(tmp_path / "s.csv", tmp_path / "out")
    with pytest.raises(DataError, match="--map neuron=cell names no column"):
        import_spikes(tmp_path / "s.csv", tmp_path / "out", mapping={"neuron": "cell"})
    pl.DataFrame({"neuron": [-1, 2], "time": [0.1, -0.2]}).write_csv(tmp_path / "bad.csv")
    with pytest.raises(DataError, match="no valid spikes"):
        import_spikes(tmp_path / "bad.csv", tmp_path / "out")
    with pytest.raises(ValueError, match="trial_s must be a positive multiple"):
        import_spikes(
            tmp_path / "s.csv", tmp_path / "out", mapping={"neuron": "unit"}, trial_s=0.015
        )


def test_import_covariates_average_and_fill_bins(tmp_path):
    pl.DataFrame({"neuron": [0, 1], "time": [0.005, 0.035]}).write_parquet(tmp_path / "s.parquet")
    pl.DataFrame(
        {
            "time": [0.001, 0.006, 0.021, 0.031, 0.2],  # two samples in bin 0; bin 1 empty
            "speed": [1.0, 3.0, 5.0, 7.0, 9.0],
            "stim_0": [0.0, 0.0, 1.0, 1.0, 1.0],
        }
    ).write_csv(tmp_path / "c.csv")
    summary = import_spikes(
        tmp_path / "s.parquet",
        tmp_path / "out",
        mapping={"behavior": "speed"},
        covariates=tmp_path / "c.csv",
        trial_s=0.05,
    )
    assert summary.covariate_rows_quarantined == 1  # 0.2 s is past the trial's end
    assert summary.reasons == {"covariates:bin_past_trial_end": 1}
    assert summary.covariate_bins_filled == 2  # bins 1 and 4
    binned = load_binned(tmp_path / "out")
    assert np.allclose(binned.behavior, [[2.0, 2.0, 5.0, 7.0, 7.0]])
    assert binned.stimulus.shape == (1, 5, 1) and summary.manifest["behavior"] == "speed"


def test_cli_generates_and_imports_spikes(tmp_path, capsys):
    out = tmp_path / "gen"
    main(
        ["data", "generate", "spikes", "--out", str(out), "--neurons", "20", "--trials", "4"]
        + ["--trial-s", "1", "--hubs", "2", "--seed", "1", "--no-progress"]
    )
    line = capsys.readouterr().out
    assert "of 20 neurons in 4 trials" in line and "Hz mean rate" in line
    assert "content hash" in line
    binned = load_binned(out)
    assert binned.counts.shape == (4, 100, 20)

    spikes = pl.read_parquet(out / SPIKES_FILE).rename({"neuron": "unit", "time": "t"})
    spikes.write_csv(tmp_path / "s.csv")
    main(
        ["data", "import", "spikes", str(tmp_path / "s.csv"), "--out", str(tmp_path / "imp")]
        + ["--map", "neuron=unit,time=t", "--covariates", str(out / COVARIATES_FILE)]
        + ["--trial-s", "1"]
    )
    assert "none quarantined" in capsys.readouterr().out
    imported = load_binned(tmp_path / "imp")
    assert np.array_equal(imported.counts, binned.counts)
    assert np.array_equal(imported.behavior, binned.behavior)

    with pytest.raises(SystemExit) as exit_info:
        main(["data", "import", "spikes", str(tmp_path / "s.csv"), "--out", str(tmp_path / "x")])
    assert exit_info.value.code == 2
    assert "no 'neuron' column" in capsys.readouterr().err
