import dataclasses
import sys

import numpy as np
import polars as pl
import pytest

import behave.data.offline_rl as offline_rl
from behave.data.manifest import DataError, verify_manifest, write_manifest
from behave.data.offline_rl import (
    QUALITIES,
    TRANSITIONS_FILE,
    generate_offline_rl,
    load_trajectories,
    normalized_score,
)

N = 3_000  # transitions per generated dataset: ~15 expert, ~25 random episodes


@pytest.fixture(scope="module")
def gym():
    """The simulator; generator tests skip cleanly without it (loader tests still run)."""
    gymnasium = pytest.importorskip("gymnasium")
    pytest.importorskip("Box2D")
    # 20 reference episodes per policy instead of 100: the references only need expert >> random
    spec = offline_rl.ENVS["lunarlander"]
    offline_rl.ENVS["lunarlander"] = dataclasses.replace(spec, reference_episodes=20)
    offline_rl._reference.cache_clear()
    yield gymnasium
    offline_rl.ENVS["lunarlander"] = spec
    offline_rl._reference.cache_clear()


@pytest.fixture(scope="module")
def datasets(gym, tmp_path_factory):
    out = {}
    for quality in ("random", "medium", "expert"):
        path = tmp_path_factory.mktemp(quality)
        out[quality] = (
            path,
            generate_offline_rl(path, quality=quality, num_transitions=N, seed=0, progress=False),
        )
    return out


def _frame(path):
    return pl.read_parquet(path / TRANSITIONS_FILE)


def test_schema_dims_and_manifest(datasets):
    path, manifest = datasets["medium"]
    df = _frame(path)
    assert dict(df.schema) == {
        "episode": pl.Int32(),
        "step": pl.Int32(),
        "observation": pl.Array(pl.Float32, 8),
        "action": pl.Array(pl.Float32, 2),
        "reward": pl.Float32(),
        "terminal": pl.Boolean(),
        "timeout": pl.Boolean(),
        "next_observation": pl.Array(pl.Float32, 8),
    }
    assert df.height == N == manifest["row_counts"][TRANSITIONS_FILE]
    assert df.equals(df.sort("episode", "step"))
    assert verify_manifest(path)["content_hash"] == manifest["content_hash"]
    assert manifest["kind"] == "offline-rl" and manifest["generator"] == "behave.data.offline_rl"
    assert manifest["params"] == {"env": "lunarlander", "quality": "medium", "num_transitions": N}
    assert manifest["observation_dim"] == 8 and manifest["action_dim"] == 2
    assert manifest["action_low"] == [-1.0, -1.0] and manifest["action_high"] == [1.0, 1.0]
    assert manifest["episodes"] == df["episode"].n_unique()
    actions = df["action"].to_numpy()
    assert actions.min() >= -1.0 and actions.max() <= 1.0
    # next_observation of a step is the observation of the following step in the same episode
    obs, nxt, ep = df["observation"].to_numpy(), df["next_observation"].to_numpy(), df["episode"]
    same = (ep[1:] == ep[:-1]).to_numpy()
    np.testing.assert_array_equal(nxt[:-1][same], obs[1:][same])


@pytest.mark.parametrize("quality", ["random", "medium", "expert"])
def test_episodes_end_with_terminal_or_timeout(datasets, quality):
    path, manifest = datasets[quality]
    df = _frame(path)
    ends = df.group_by("episode").agg(
        pl.col("terminal").last(),
        pl.col("timeout").last(),
        (pl.col("terminal") | pl.col("timeout")).head(pl.len() - 1).any().alias("early"),
        (pl.col("step") == pl.int_range(pl.len())).all().alias("contiguous"),
    )
    assert (ends["terminal"] ^ ends["timeout"]).all()  # exactly one flag at the end
    assert not ends["early"].any() and ends["contiguous"].all()
    assert manifest["terminals"] + manifest["timeouts"] == manifest["episodes"]
    assert manifest["episodes"] - manifest["complete_episodes"] == len(
        manifest["truncated_episodes"]
    )


def test_quality_ordering_and_references(datasets):
    ret = {q: m["dataset_return_mean"] for q, (_, m) in datasets.items()}
    assert ret["random"] < ret["medium"] < ret["expert"]
    ref = datasets["expert"][1]["reference_returns"]
    assert set(ref) == {"random", "expert"}
    assert ref["expert"] > 200 and ref["random"] < -100  # heuristic lands, random crashes
    assert all(m["reference_returns"] == ref for _, m in datasets.values())  # seed-independent
    assert normalized_score(ref["expert"], ref) == pytest.approx(100.0)
    assert datasets["expert"][1]["dataset_score"] > 85
    assert 15 < datasets["medium"][1]["dataset_score"] < 75  # tuned to ~44; small sample
    for _, m in datasets.values():
        assert m["dataset_return_std"] >= 0 and m["complete_episodes"] >= 5


def test_same_seed_same_hash_and_mixed_qualities(gym, tmp_path):
    kw = {"quality": "medium-expert", "num_transitions": 1_500, "progress": False}
    a = generate_offline_rl(tmp_path / "a", seed=3, **kw)
    b = generate_offline_rl(tmp_path / "b", seed=3, **kw)
    assert a["content_hash"] == b["content_hash"]
    c = generate_offline_rl(tmp_path / "c", seed=4, **{**kw, "num_transitions": 300})
    assert c["content_hash"] != a["content_hash"]
    medium, expert = a["noise"]["parts"]
    assert (medium["behavior"], medium["transitions"]) == ("medium", 750)
    assert (expert["behavior"], expert["transitions"]) == ("expert", 750)
    assert expert["episodes"][0] == medium["episodes"][1] + 1
    replay = generate_offline_rl(
        tmp_path / "r", quality="medium-replay", num_transitions=300, progress=False
    )
    schedule = replay["noise"]["parts"][0]["settings"]
    assert schedule["from"]["epsilon"] == 1.0 and schedule["to"] == replay["noise"]["medium"]


def test_load_trajectories_matches_the_file(datasets):
    path, manifest = datasets["random"]
    trajectories = load_trajectories(path)
    assert len(trajectories) == manifest["episodes"]
    assert sum(len(t["rewards"]) for t in trajectories) == N
    first = trajectories[0]
    T = len(first["rewards"])
    assert first["observations"].shape == (T, 8) and first["actions"].shape == (T, 2)
    assert first["observations"].dtype == np.float32 and first["timesteps"].dtype == np.int64
    np.testing.assert_array_equal(first["timesteps"], np.arange(T))
    for t in trajectories:
        assert t["terminals"][-1] or t["timeouts"][-1]
        assert t["returns_to_go"][0] == pytest.approx(t["rewards"].astype(np.float64).sum(), 1e-4)


def _write_tiny(path, rewards_per_episode):
    """A hand-made offline-rl directory: episode e has the given rewards, ends terminal."""
    rows = [(e, t, r) for e, rs in enumerate(rewards_per_episode) for t, r in enumerate(rs)]
    n = len(rows)
    episode = np.array([r[0] for r in rows], np.int32)
    step = np.array([r[1] for r in rows], np.int32)
    last = np.r_[episode[1:] != episode[:-1], True]
    obs = np.arange(n * 8, dtype=np.float32).reshape(n, 8)
    pl.DataFrame(
        {
            "episode": episode,
            "step": step,
            "observation": obs,
            "action": np.zeros((n, 2), np.float32),
            "reward": np.array([r[2] for r in rows], np.float32),
            "terminal": last,
            "timeout": np.zeros(n, bool),
        }
    ).write_parquet(path / TRANSITIONS_FILE)
    write_manifest(
        path,
        kind="offline-rl",
        generator="test",
        generator_version="1",
        seed=None,
        params={},
        files=[TRANSITIONS_FILE],
        extra={"observation_dim": 8, "action_dim": 2},
    )


def test_returns_to_go_by_hand(tmp_path):
    _write_tiny(tmp_path, [[1.0, 2.0, 3.0], [5.0], [-1.0, 0.5]])
    a, b, c = load_trajectories(tmp_path)
    np.testing.assert_allclose(a["returns_to_go"], [6.0, 5.0, 3.0])
    np.testing.assert_allclose(b["returns_to_go"], [5.0])
    np.testing.assert_allclose(c["returns_to_go"], [-0.5, 0.5])
    np.testing.assert_array_equal(c["timesteps"], [0, 1])
    np.testing.assert_array_equal(a["terminals"], [False, False, True])
    assert b["observations"].shape == (1, 8) and b["observations"][0, 0] == 24.0
    assert "next_observations" not in a


def test_bad_files_raise_data_error(tmp_path):
    with pytest.raises(DataError, match="no manifest.json"):
        load_trajectories(tmp_path)
    _write_tiny(tmp_path, [[1.0, 2.0], [3.0]])
    path = tmp_path / TRANSITIONS_FILE
    df = pl.read_parquet(path)

    df.with_columns(reward=pl.Series([1.0, float("nan"), 3.0], dtype=pl.Float32)).write_parquet(
        path
    )
    with pytest.raises(DataError, match=r"transitions\.parquet: NaN or inf in \{'reward': 1\}"):
        load_trajectories(tmp_path)

    obs = df["observation"].to_numpy().copy()
    obs[2, 3] = np.inf
    df.with_columns(observation=pl.Series(obs)).write_parquet(path)
    with pytest.raises(DataError, match=r"NaN or inf in \{'observation': 1\}.*first at row 2"):
        load_trajectories(tmp_path)

    df.drop("timeout").write_parquet(path)
    with pytest.raises(DataError, match=r"missing columns \['timeout'\]"):
        load_trajectories(tmp_path)

    df.with_columns(pl.col("reward").cast(pl.Float64)).write_parquet(path)
    with pytest.raises(DataError, match="'reward' is Float64"):
        load_trajectories(tmp_path)

    df.with_columns(step=pl.Series([0, 2, 0], dtype=pl.Int32)).write_parquet(path)
    with pytest.raises(DataError, match="sorted by"):
        load_trajectories(tmp_path)

    df.with_columns(terminal=pl.Series([False, False, True])).write_parquet(path)
    with pytest.raises(DataError, match="terminal or timeout"):
        load_trajectories(tmp_path)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="choose one of: lunarlander"):
        generate_offline_rl(tmp_path, env="ant")
    with pytest.raises(ValueError, match="choose one of: " + ", ".join(QUALITIES)):
        generate_offline_rl(tmp_path, quality="great")
    with pytest.raises(ValueError, match="num_transitions"):
        generate_offline_rl(tmp_path, num_transitions=0)
    with pytest.raises(ValueError, match="seed"):
        generate_offline_rl(tmp_path, seed=-1)


def test_missing_simulator_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "gymnasium", None)  # `import gymnasium` now fails
    with pytest.raises(ImportError, match=r'pip install "gymnasium\[box2d\]"'):
        generate_offline_rl(tmp_path, num_transitions=10, progress=False)
