"""Traffic data: highway-env generation (deterministic, resumable), import with quarantine,
and the windows the datamodule cuts."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

pytest.importorskip("highway_env")

from behave.data.manifest import DataError, verify_manifest  # noqa: E402
from behave.data.traffic import TRACKS_FILE, generate_traffic, import_tracks  # noqa: E402
from behave.data.traffic_datamodule import TrafficDataModule  # noqa: E402
from behave.data.traffic_sim import SceneConfig  # noqa: E402

SMALL = SceneConfig(lanes=(2, 2), vehicles_per_lane=(3, 3), duration_s=8.0, warmup_s=1.0)


@pytest.fixture(scope="module")
def traffic_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("traffic")
    generate_traffic(out, scenes=5, seed=3, config=SMALL, progress=False)
    return out


def test_generated_tracks_follow_the_schema_and_manifest(traffic_dir):
    manifest = verify_manifest(traffic_dir)
    tracks = pl.read_parquet(traffic_dir / TRACKS_FILE)
    assert tracks.columns == ["scene", "frame", "agent", "x", "y", "vx", "vy", "lane", "style"]
    assert tracks.height == 5 * 80 * 6  # scenes x frames x vehicles
    assert manifest["hz"] == 10.0 and manifest["behavior_rule"]["threshold"] > 0
    assert set(tracks["style"].unique()) <= {"aggressive", "normal", "timid"}
    assert sum(manifest["style_agents"].values()) == manifest["agents"] == 5 * 6
    # 10 Hz: velocity is the displacement to the next frame x 10
    one = tracks.filter((pl.col("scene") == 0) & (pl.col("agent") == 0)).sort("frame")
    step = np.diff(one["x"].to_numpy())
    assert np.allclose(step, one["vx"].to_numpy()[:-1] / 10, atol=1e-3)
    assert tracks.filter(pl.col("vx") <= 0).height == 0  # everyone drives forward


def test_generation_is_deterministic_and_resumes_from_shards(traffic_dir, tmp_path, monkeypatch):
    import behave.data.traffic as traffic

    monkeypatch.setattr(traffic, "SCENES_PER_SHARD", 2)
    calls = []
    real = traffic._simulate_shard

    def counting(job):
        calls.append(job[1])
        if len(calls) == 2:
            raise KeyboardInterrupt  # "crash" after the first shard
        return real(job)

    monkeypatch.setattr(traffic, "_simulate_shard", counting)
    with pytest.raises(KeyboardInterrupt):
        generate_traffic(tmp_path, scenes=5, seed=3, config=SMALL, progress=False)
    monkeypatch.setattr(traffic, "_simulate_shard", real)
    calls.clear()
    monkeypatch.setattr(
        traffic, "_simulate_shard", lambda job: (calls.append(job[1]), real(job))[1]
    )
    generate_traffic(tmp_path, scenes=5, seed=3, config=SMALL, progress=False)
    assert calls == [2, 4]  # shard 0 was kept
    a = pl.read_parquet(tmp_path / TRACKS_FILE)
    b = pl.read_parquet(traffic_dir / TRACKS_FILE)
    assert a.equals(b)  # shard size does not change the data


def test_windows_are_centred_padded_and_split_by_scene(traffic_dir):
    dm = TrafficDataModule(
        str(traffic_dir), max_agents=8, stride_s=1.0, val_fraction=0.2, test_fraction=0.2
    )
    dm.setup()
    train = dm.windows["train"].tensors
    assert train["observed"].shape[1:] == (8, 20, 2)
    assert train["future"].shape[1:] == (8, 50, 2)
    assert train["future_projection"].shape[1:] == (5, 8, 8)
    assert train["present"].sum(1).eq(6).all()  # 6 vehicles, 2 padding slots
    # the window's centre is the mean last observed position of its agents
    last = train["observed"][:, :, -1][train["present"]].view(-1, 6, 2)
    torch.testing.assert_close(last.mean(1), torch.zeros(len(last), 2), atol=1e-3, rtol=0)
    labels = train["behavior"][train["present"]]
    assert set(labels.tolist()) <= {0, 1, 2}
    assert (train["behavior"][~train["present"]] == -1).all()
    assert (
        len(dm.windows["train"]) == 3 * 2 and len(dm.windows["val"]) == 2
    )  # (80 - 70) / 10 + 1 windows


def test_too_short_scenes_fail_with_the_fix(traffic_dir):
    with pytest.raises(DataError, match="lower data.predict_s"):
        TrafficDataModule(str(traffic_dir), predict_s=7).setup()


def test_import_quarantines_bad_rows_and_derives_velocities(tmp_path):
    rows = ["frame,track_id,x,y"]
    for f in range(30):
        rows.append(f"{f},car,{2.0 * f},0.5")
        rows.append(f"{f},van,{100 + 1.5 * f},4")
    rows += ["3,van,nan,4", "30,car,60,0.5", "30,car,61,0.5", "x,car,1,1", "31,,1,1"]
    source = tmp_path / "tracks.csv"
    source.write_text("\n".join(rows) + "\n")
    summary = import_tracks(source, tmp_path / "out", mapping={"agent": "track_id"})
    assert summary.rows_read == 65
    # NaN x, both rows of car@30, a bad frame, no agent; the valid van@3 row is kept
    assert summary.rows_quarantined == 5
    assert summary.reasons == {"x": 1, "duplicate": 2, "frame": 1, "agent": 1}
    tracks = pl.read_parquet(tmp_path / "out" / TRACKS_FILE)
    car = tracks.filter(pl.col("agent") == 0).sort("frame")
    assert np.allclose(car["vx"].to_numpy(), 20.0)  # 2 m per frame at 10 Hz
    quarantine = pl.read_parquet(summary.quarantine_path)
    assert {"source_row", "reason", "raw_x"} <= set(quarantine.columns)
    verify_manifest(tmp_path / "out")


def test_import_names_a_missing_column(tmp_path):
    source = tmp_path / "t.csv"
    source.write_text("frame,id,x,y\n0,a,1,2\n")
    with pytest.raises(DataError, match="--map agent="):
        import_tracks(source, tmp_path / "out")
