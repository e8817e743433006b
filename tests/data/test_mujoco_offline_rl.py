"""MuJoCo offline-RL datasets from trained TD3 behavior policies (tiny runs: ~1k steps)."""

import dataclasses
import json
import logging
import shutil
import sys
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest

pytest.importorskip("gymnasium")
pytest.importorskip("mujoco")
pytest.importorskip("stable_baselines3")

import behave.data.behavior_policies as bp  # noqa: E402
import behave.data.offline_rl as offline_rl  # noqa: E402
from behave.data.offline_rl import (  # noqa: E402
    TRANSITIONS_FILE,
    generate_offline_rl,
    load_trajectories,
)

GYM_ID = "Hopper-v5"
# 800 gradient steps after a 200-step random warm-up; checkpoints at 250, 500, 750, 1000
TINY = bp.TD3Config(total_steps=1_000, checkpoint_every=250, learning_starts=200, eval_episodes=3)


def _weights(run, steps):
    return [w for layer in bp.load_actor(bp._actor_path(run, steps)).layers for w in layer]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny Hopper run, trained in two calls: to 500 steps, then resumed to 1000."""
    root = tmp_path_factory.mktemp("behave-cache")  # plays $BEHAVE_CACHE
    cache_dir = root / "behavior-policies"
    first = bp.train_td3(
        GYM_ID, dataclasses.replace(TINY, total_steps=500), cache_dir=cache_dir, progress=False
    )
    after_first = {s: _weights(first.run_dir, s) for s in bp.checkpoint_steps(first.run_dir)}
    second = bp.train_td3(GYM_ID, TINY, cache_dir=cache_dir, progress=False)
    return SimpleNamespace(
        root=root, cache_dir=cache_dir, dir=second.run_dir, first=first, second=second,
        after_first=after_first,
    )  # fmt: skip


def test_trains_checkpoints_and_resumes_without_retraining(run):
    first, second = run.first, run.second
    assert (first.steps, first.steps_trained, first.resumed_from) == (500, 500, None)
    assert sorted(run.after_first) == [250, 500]
    # the second call continued from the 500-step checkpoint: 500 more steps, not 1000
    assert (second.steps, second.steps_trained, second.resumed_from) == (1_000, 500, 500)
    assert first.run_dir == second.run_dir  # the budget is not part of the run's identity
    assert bp.checkpoint_steps(run.dir) == [250, 500, 750, 1_000]
    for steps, weights in run.after_first.items():  # earlier checkpoints left as they were
        for a, b in zip(weights, _weights(run.dir, steps), strict=True):
            np.testing.assert_array_equal(a, b)
    assert not np.array_equal(run.after_first[500][0], _weights(run.dir, 1_000)[0])  # it learned

    # nothing left to do for the same budget, nor for a smaller one with a checkpoint there
    again = bp.train_td3(GYM_ID, TINY, cache_dir=run.cache_dir, progress=False)
    assert (again.steps, again.steps_trained) == (1_000, 0)
    shorter = dataclasses.replace(TINY, total_steps=750)
    assert bp.train_td3(GYM_ID, shorter, cache_dir=run.cache_dir).steps_trained == 0
    with pytest.raises(ValueError, match="without a checkpoint"):
        bp.train_td3(GYM_ID, dataclasses.replace(TINY, total_steps=600), cache_dir=run.cache_dir)

    record = json.loads((run.dir / "run.json").read_text())
    segments = [(s["from"], s["to"], s["resumed"]) for s in record["segments"]]
    assert segments == [(0, 500, False), (500, 1_000, True)]
    assert all(s["steps_per_second"] > 0 for s in record["segments"])
    latest = json.loads((run.dir / "state" / "latest.json").read_text())
    assert latest == {"steps": 1_000, "dir": "step_00001000"}
    assert [p.name for p in (run.dir / "state").iterdir() if p.is_dir()] == ["step_00001000"]
    with np.load(run.dir / "state" / latest["dir"] / "buffer.npz", allow_pickle=False) as buf:
        assert buf["observations"].shape == (1_000, 11) and buf["actions"].shape == (1_000, 3)
        assert buf["timeouts"][499] == 1.0  # the episode the resume cut is a truncation


def test_same_seed_same_weights(run, tmp_path):
    """A fresh run reproduces the cached one bit for bit (one torch thread, seeded SB3)."""
    fresh = bp.train_td3(
        GYM_ID, dataclasses.replace(TINY, total_steps=500), cache_dir=tmp_path, progress=False
    )
    for steps in (250, 500):
        for a, b in zip(_weights(fresh.run_dir, steps), run.after_first[steps], strict=True):
            np.testing.assert_array_equal(a, b)
    other_seed = bp.run_dir(GYM_ID, dataclasses.replace(TINY, seed=1), tmp_path)
    assert other_seed != fresh.run_dir


def test_numpy_actor_matches_sb3_and_state_round_trips(run):
    model, steps = bp._load_state(GYM_ID, TINY, run.dir, TINY.total_steps)
    actor = bp.load_actor(bp._actor_path(run.dir, 1_000))
    assert steps == 1_000 == actor.steps and model.num_timesteps == 1_000
    assert model.replay_buffer.pos == 1_000 % TINY.total_steps
    obs = np.stack([model.observation_space.sample() for _ in range(16)]).astype(np.float32)
    expected, _ = model.predict(obs, deterministic=True)
    np.testing.assert_allclose(actor(obs), expected, atol=1e-5)
    np.testing.assert_allclose(actor(obs[0]), expected[0], atol=1e-5)  # one observation
    model.env.close()


@pytest.fixture(scope="module")
def policies(run):
    return bp.behavior_policies(GYM_ID, TINY, cache_dir=run.cache_dir, progress=False)


def test_expert_is_best_and_medium_is_closest_to_a_third(policies, run):
    evaluation = policies.evaluation
    assert evaluation["episodes"] == 3
    assert sorted(evaluation["checkpoints"]) == [250, 500, 750, 1_000]
    returns = {s: r["mean"] for s, r in evaluation["checkpoints"].items()}
    learned = [s for s in returns if s > TINY.learning_starts]  # 250 is 50 updates in: counts
    assert policies.expert_steps == max(learned, key=returns.get)
    candidates = [s for s in learned if s < policies.expert_steps]
    scores = {s: policies.score(returns[s]) for s in candidates}
    assert policies.medium_steps == min(candidates, key=lambda s: abs(scores[s] - 100 / 3))
    assert policies.score(returns[policies.expert_steps]) == pytest.approx(100.0)
    assert json.loads((run.dir / "evals.json").read_text())["episodes"] == 3  # cached

    final = bp.behavior_policies(
        GYM_ID, dataclasses.replace(TINY, expert="final"), cache_dir=run.cache_dir, progress=False
    )
    assert final.expert_steps == 1_000 and final.evaluation == evaluation  # D4RL's choice

    info = policies.describe()
    assert info["expert"]["steps"] == policies.expert_steps
    assert info["medium"]["steps"] == policies.medium_steps
    assert info["medium"]["return_mean"] == evaluation["checkpoints"][policies.medium_steps]["mean"]
    assert info["medium_replay"]["rows"] == policies.medium_steps
    assert len(info["expert"]["weights_sha256"]) == 64
    assert info["versions"]["stable-baselines3"] != "missing"


def test_selection_when_the_run_collapses_at_the_end(run, tmp_path):
    """TD3 can end worse than it was (Hopper: 2841 at 100k, 896 at 120k): expert = the best."""
    shutil.copytree(run.cache_dir, tmp_path, dirs_exist_ok=True)
    copy = bp.run_dir(GYM_ID, TINY, tmp_path)
    returns = {250: 30.0, 500: 45.0, 750: 120.0, 1_000: 60.0}  # random: 10
    evals = json.loads((copy / "evals.json").read_text())
    evals["random"]["mean"] = 10.0
    for steps, value in returns.items():
        evals["checkpoints"][str(steps)]["mean"] = value
    (copy / "evals.json").write_text(json.dumps(evals))
    best = bp.behavior_policies(GYM_ID, TINY, cache_dir=tmp_path, progress=False)
    assert (best.expert_steps, best.medium_steps) == (750, 500)  # target 10 + 110 / 3 = 46.7
    assert len(best.replay_buffer()["rewards"]) == 500
    final = dataclasses.replace(TINY, expert="final")
    final = bp.behavior_policies(GYM_ID, final, cache_dir=tmp_path, progress=False)
    assert (final.expert_steps, final.medium_steps) == (1_000, 250)  # target 10 + 50 / 3 = 26.7
    with pytest.raises(ValueError, match="'best' or 'final'"):
        bp.behavior_policies(GYM_ID, dataclasses.replace(TINY, expert="last"), cache_dir=tmp_path)


def test_replay_buffer_is_the_training_buffer(policies):
    rb = policies.replay_buffer()
    n = policies.medium_steps
    assert rb["observations"].shape == (n, 11) and rb["actions"].shape == (n, 3)
    assert rb["actions"].min() >= -1.0 and rb["actions"].max() <= 1.0
    ends = rb["terminals"] | rb["timeouts"]
    assert ends.any() and not (rb["terminals"] & rb["timeouts"]).any()
    # within an episode, next_observation is the following row's observation
    same = ~ends[:-1]
    np.testing.assert_array_equal(rb["next_observations"][:-1][same], rb["observations"][1:][same])
    with np.load(policies.run_dir / "state" / "step_00001000" / "buffer.npz") as raw:
        np.testing.assert_array_equal(rb["rewards"], raw["rewards"][:n])
        np.testing.assert_array_equal(
            rb["observations"], raw["observations"][:n].astype(np.float32)
        )


N = 1_000  # transitions per generated dataset


@pytest.fixture(scope="module")
def datasets(run, policies, tmp_path_factory):
    """hopper datasets through generate_offline_rl, from the tiny cached run."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BEHAVE_CACHE", str(run.root))
        mp.delenv("BEHAVE_BEHAVIOR_STEPS", raising=False)
        mp.setitem(bp.DEFAULT_CONFIGS, GYM_ID, TINY)
        # 3 reference episodes (= the evaluation's), not 25
        mp.setitem(
            offline_rl.ENVS,
            "hopper",
            dataclasses.replace(offline_rl.ENVS["hopper"], reference_episodes=3),
        )
        offline_rl._reference.cache_clear()
        bp._LOADED.clear()
        out = {}
        for quality, n, seed in [
            ("random", N, 0),
            ("medium", N, 0),
            ("expert", N, 0),
            ("medium-expert", N, 0),
            ("medium-replay", 10_000, 0),  # more than the buffer holds
            ("medium-replay", 150, 7),
        ]:
            path = tmp_path_factory.mktemp(quality)
            manifest = generate_offline_rl(
                path, env="hopper", quality=quality, num_transitions=n, seed=seed, progress=False
            )
            out[quality, n] = (path, manifest)
        out["medium-again"] = generate_offline_rl(
            tmp_path_factory.mktemp("again"), env="hopper", quality="medium", num_transitions=N,
            progress=False,
        )  # fmt: skip
        yield out
        offline_rl._reference.cache_clear()
        bp._LOADED.clear()


def test_hopper_datasets_schema_and_provenance(datasets, policies):
    path, manifest = datasets["medium", N]
    df = pl.read_parquet(path / TRANSITIONS_FILE)
    assert dict(df.schema) == {
        "episode": pl.Int32(),
        "step": pl.Int32(),
        "observation": pl.Array(pl.Float32, 11),
        "action": pl.Array(pl.Float32, 3),
        "reward": pl.Float32(),
        "terminal": pl.Boolean(),
        "timeout": pl.Boolean(),
        "next_observation": pl.Array(pl.Float32, 11),
    }
    assert df.height == N and manifest["env_id"] == "Hopper-v5"
    assert datasets["medium-again"]["content_hash"] == manifest["content_hash"]  # deterministic
    info = manifest["behavior_policies"]
    assert info["expert"]["steps"] == policies.expert_steps
    assert info["medium"]["steps"] == policies.medium_steps
    # the expert reference (deterministic expert, fixed seeds) is the expert checkpoint's return
    expert_return = policies.evaluation["checkpoints"][policies.expert_steps]["mean"]
    ref = manifest["reference_returns"]
    assert ref["expert"] == pytest.approx(expert_return, rel=1e-6)
    assert ref["random"] < ref["expert"]  # (random draws differ from the evaluation's)
    for key in [("random", N), ("expert", N), ("medium-expert", N), ("medium-replay", 150)]:
        m = datasets[key][1]
        assert m["reference_returns"] == ref
        assert m["terminals"] + m["timeouts"] == m["episodes"]
    medium, expert = datasets["medium-expert", N][1]["noise"]["parts"]
    assert (medium["behavior"], expert["behavior"]) == ("medium", "expert")
    assert manifest["noise"]["medium"] == {"controller": "medium", "epsilon": 0.0, "noise_std": 0.1}
    trajectories = load_trajectories(datasets["expert", N][0])
    assert sum(len(t["rewards"]) for t in trajectories) == N


def test_medium_replay_is_the_buffer(datasets, policies):
    rb = policies.replay_buffer()
    n = policies.medium_steps
    path, manifest = datasets["medium-replay", 10_000]
    df = pl.read_parquet(path / TRANSITIONS_FILE)
    assert df.height == n == manifest["row_counts"][TRANSITIONS_FILE]  # the whole buffer, no more
    np.testing.assert_array_equal(df["observation"].to_numpy(), rb["observations"])
    np.testing.assert_array_equal(df["action"].to_numpy(), rb["actions"])
    np.testing.assert_array_equal(df["reward"].to_numpy(), rb["rewards"])
    np.testing.assert_array_equal(df["next_observation"].to_numpy(), rb["next_observations"])
    np.testing.assert_array_equal(df["terminal"].to_numpy(), rb["terminals"])
    part = manifest["noise"]["parts"][0]
    assert part["settings"]["buffer_rows"] == n and part["settings"]["requested"] == 10_000
    trajectories = load_trajectories(path)  # whole episodes, each ending terminal or timeout
    assert sum(len(t["rewards"]) for t in trajectories) == n
    assert trajectories[-1]["terminals"][-1] or trajectories[-1]["timeouts"][-1]

    small_path, small = datasets["medium-replay", 150]
    head = pl.read_parquet(small_path / TRANSITIONS_FILE)
    assert head.height == 150  # a prefix of the buffer, cut episode flagged as a timeout
    np.testing.assert_array_equal(head["action"].to_numpy(), rb["actions"][:150])
    assert head["timeout"][-1] or head["terminal"][-1]
    assert small["behavior_policies"]["medium_replay"]["rows"] == n


def test_medium_replay_warns_when_asked_for_more_than_the_buffer(datasets, run, tmp_path, caplog):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BEHAVE_CACHE", str(run.root))
        mp.setitem(bp.DEFAULT_CONFIGS, GYM_ID, TINY)
        mp.setitem(
            offline_rl.ENVS,
            "hopper",
            dataclasses.replace(offline_rl.ENVS["hopper"], reference_episodes=3),
        )
        with caplog.at_level(logging.WARNING, logger="behave.data.offline_rl"):
            m = generate_offline_rl(
                tmp_path,
                env="hopper",
                quality="medium-replay",
                num_transitions=99_999,
                progress=False,
            )
    assert "99999 were asked for" in caplog.text
    # the dataset seed plays no part in a recorded buffer
    assert m["content_hash"] == datasets["medium-replay", 10_000][1]["content_hash"]


def test_budget_and_cache_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("BEHAVE_BEHAVIOR_STEPS", "2000")
    monkeypatch.setenv("BEHAVE_CACHE", str(tmp_path))
    assert bp.config_for("Hopper-v5").total_steps == 2_000
    assert bp.cache_root() == tmp_path / "behavior-policies"
    assert bp.run_dir("Hopper-v5", bp.config_for("Hopper-v5")).parent == (
        tmp_path / "behavior-policies" / "Hopper-v5"
    )
    monkeypatch.setenv("BEHAVE_BEHAVIOR_STEPS", "lots")
    with pytest.raises(ValueError, match="BEHAVE_BEHAVIOR_STEPS"):
        bp.config_for("Hopper-v5")


def test_missing_stable_baselines3_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "stable_baselines3", None)  # `import stable_baselines3` fails
    with pytest.raises(ImportError, match=r"stable-baselines3.*\.\[mujoco\]"):
        bp.train_td3(GYM_ID, TINY, cache_dir=tmp_path, progress=False)


def test_no_progress_also_hides_the_behavior_policy_bars(run, monkeypatch, tmp_path, capfd):
    """``--no-progress`` reaches TD3's training and checkpoint-evaluation bars, not only the
    recording's: a cache whose evaluations are gone would otherwise draw "evaluating ..."."""
    root = tmp_path / "cache"
    shutil.copytree(run.root, root)
    (bp.run_dir(GYM_ID, TINY, root / "behavior-policies") / "evals.json").unlink(missing_ok=True)
    monkeypatch.setenv("BEHAVE_CACHE", str(root))
    monkeypatch.delenv("BEHAVE_BEHAVIOR_STEPS", raising=False)
    monkeypatch.setitem(bp.DEFAULT_CONFIGS, GYM_ID, TINY)
    hopper = dataclasses.replace(offline_rl.ENVS["hopper"], reference_episodes=3)
    monkeypatch.setitem(offline_rl.ENVS, "hopper", hopper)
    offline_rl._reference.cache_clear()
    bp._LOADED.clear()
    capfd.readouterr()
    try:
        generate_offline_rl(
            tmp_path / "data", env="hopper", quality="medium", num_transitions=50, progress=False
        )
    finally:
        offline_rl._reference.cache_clear()
        bp._LOADED.clear()
    assert (bp.run_dir(GYM_ID, TINY, root / "behavior-policies") / "evals.json").is_file()
    assert "evaluating" not in capfd.readouterr().err
