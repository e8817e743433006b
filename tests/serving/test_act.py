"""``POST /act`` of the offline-RL policy: the session store and its micro-batcher without a
server (fast), then the service end to end on a registered Decision Mamba (see conftest.py)."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import torch

from behave.inference.offline_rl import load_policy
from serving import schemas
from serving.sessions import (
    EpisodeBusy,
    SessionError,
    SessionStore,
    StepMismatch,
    TooManySessions,
    UnknownEpisode,
)

# the tiny policy's (conftest.policy_bundle); test_policy_is_loaded_from_the_registry checks them
S, A = 4, 2  # observation and action sizes
POLICY_TARGET_RETURN = 50.0  # its default target return


@pytest.fixture(scope="module")
def policy(policy_bundle):
    torch.set_num_threads(1)
    return load_policy(policy_bundle)


def trajectory(steps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Observations (steps, S) and rewards (steps,): rewards[i] is what action i earned."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(steps, S)).astype(np.float32), rng.normal(size=steps).astype(np.float32)


def reference_actions(policy, observations, rewards, target: float) -> np.ndarray:
    """What Policy.act answers for this one episode, step by step: (steps, A)."""
    episodes = policy.start(1, target)
    actions = [policy.act(episodes, observations[:1], None)[0]]
    for t in range(1, len(observations)):
        actions.append(policy.act(episodes, observations[t : t + 1], rewards[t - 1 : t])[0])
    return np.stack(actions)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---- the session store, without a server ------------------------------------------------------
def test_sessions_equal_policy_act_and_concurrent_steps_share_calls(policy):
    """Six episodes started and stepped concurrently: one call per round, right answers."""
    batches = []
    store = SessionStore(policy, max_wait_s=0.005, on_batch=batches.append)
    targets = [10.0 * i for i in range(6)]
    data = [trajectory(5, seed) for seed in range(6)]

    async def episode(i: int) -> list:
        observations, rewards = data[i]
        result = await store.start(observations[0], targets[i])
        results = [result]
        for t in range(1, 5):
            results.append(await store.step(result.episode_id, observations[t], rewards[t - 1], t))
        return results

    async def main():
        return await asyncio.gather(*(episode(i) for i in range(6)))

    runs = asyncio.run(main())
    store.close()
    for i, results in enumerate(runs):
        expected = reference_actions(policy, *data[i], targets[i])
        np.testing.assert_allclose([r.action for r in results], expected, atol=1e-5)
        assert [r.step for r in results] == [0, 1, 2, 3, 4]
        # R̂_t: the target minus the rewards received before step t
        returns = targets[i] - np.concatenate([[0], np.cumsum(data[i][1][:4])])
        np.testing.assert_allclose([r.return_to_go for r in results], returns, atol=1e-4)
    assert store.stats.episode_steps == 30 == sum(batches)
    assert store.stats.largest_batch == 6 and store.stats.model_calls == len(batches) == 5
    assert len({r.episode_id for results in runs for r in results}) == 6


def test_stateless_history_equals_the_session(policy):
    """act_on_history of a session's own trajectory gives the session's action."""
    observations, rewards = trajectory(6, seed=3)
    actions = reference_actions(policy, observations, rewards, 20.0)
    returns = 20.0 - np.concatenate([[0], np.cumsum(rewards[:5])])
    stateless = policy.act_on_history(returns, observations, actions[:5])
    np.testing.assert_allclose(stateless, actions[5], atol=1e-5)


def test_expiry_deletion_and_unknown_episodes(policy):
    clock = FakeClock()
    store = SessionStore(policy, ttl_s=10, clock=clock)
    observation = np.zeros(S, np.float32)

    async def main():
        first = await store.start(observation)
        assert first.return_to_go == POLICY_TARGET_RETURN  # the bundle's default
        clock.now += 9  # idle 9 s < 10: alive, and this step renews it
        await store.step(first.episode_id, observation, 0.0)
        clock.now += 9
        second = await store.start(observation)
        assert store.live == 2
        clock.now += 2  # first idle 11 s: gone; second idle 2 s: alive
        assert store.live == 1
        with pytest.raises(UnknownEpisode, match="expired: idle for more than 10 s") as err:
            await store.step(first.episode_id, observation, 0.0)
        assert err.value.status == 404 and err.value.loc == ("episode_id",)
        store.delete(second.episode_id)
        with pytest.raises(UnknownEpisode, match="was deleted"):
            await store.step(second.episode_id, observation, 0.0)
        with pytest.raises(UnknownEpisode, match="was deleted"):
            store.delete(second.episode_id)
        with pytest.raises(UnknownEpisode, match="unknown episode_id 'nope'"):
            await store.step("nope", observation, 0.0)

    asyncio.run(main())
    store.close()


def test_one_step_per_episode_at_a_time_and_steps_are_checked(policy):
    store = SessionStore(policy, max_wait_s=0.01)
    observation = np.zeros(S, np.float32)

    async def main():
        first = await store.start(observation)
        # two steps of one episode at once: the second is refused, the state advances once
        results = await asyncio.gather(
            store.step(first.episode_id, observation, 1.0),
            store.step(first.episode_id, observation, 1.0),
            return_exceptions=True,
        )
        assert results[0].step == 1 and isinstance(results[1], EpisodeBusy)
        assert results[1].status == 409
        with pytest.raises(StepMismatch, match="is at step 2, not 1"):
            await store.step(first.episode_id, observation, 1.0, expected_step=1)
        with pytest.raises(SessionError, match="an observation has 4 values: 5 given"):
            await store.step(first.episode_id, np.zeros(S + 1), 1.0)  # the episode stays usable
        assert (await store.step(first.episode_id, observation, 1.0, expected_step=2)).step == 2

    asyncio.run(main())
    store.close()


def test_max_sessions(policy):
    store = SessionStore(policy, max_sessions=3)
    observation = np.zeros(S, np.float32)

    async def main():
        # starts queued together count against the limit before they exist
        results = await asyncio.gather(
            *(store.start(observation) for _ in range(5)), return_exceptions=True
        )
        assert sum(isinstance(r, TooManySessions) for r in results) == 2
        store.delete(results[0].episode_id)
        await store.start(observation)  # room again

    asyncio.run(main())
    store.close()


class FlakyPolicy:
    """Delegates to a policy; its ``act`` fails while ``fail`` is set (a model error)."""

    def __init__(self, policy) -> None:
        self.policy, self.fail = policy, False
        self.state_dim, self.act_dim = policy.state_dim, policy.act_dim

    def start(self, n, target_return):
        return self.policy.start(n, target_return)

    def act(self, episodes, observation, reward):
        if self.fail:
            self.policy.act(episodes, observation, reward)  # advances the merged copy
            raise RuntimeError("model failed")
        return self.policy.act(episodes, observation, reward)


def test_a_failed_or_abandoned_step_does_not_change_the_episode(policy):
    flaky = FlakyPolicy(policy)
    store = SessionStore(flaky, max_wait_s=0.05)
    observations, rewards = trajectory(3, seed=7)

    async def main():
        result = await store.start(observations[0], 5.0)
        flaky.fail = True
        with pytest.raises(RuntimeError, match="model failed"):
            await store.step(result.episode_id, observations[1], rewards[0])
        flaky.fail = False
        # a client that goes away before its step runs: the step does not happen
        abandoned = asyncio.ensure_future(store.step(result.episode_id, observations[2], 99.0))
        await asyncio.sleep(0.01)
        abandoned.cancel()
        await asyncio.sleep(0.1)
        return [
            result,
            await store.step(result.episode_id, observations[1], rewards[0], 1),
            await store.step(result.episode_id, observations[2], rewards[1], 2),
        ]

    results = asyncio.run(main())
    store.close()
    expected = reference_actions(policy, observations, rewards, 5.0)
    np.testing.assert_allclose([r.action for r in results], expected, atol=1e-5)


def test_window_mode_sessions_batch_by_history_length(policy_bundle):
    """A Decision Transformer-style policy (window mode): episodes of different ages step in
    the same round, in separate calls, with the right answers."""
    windowed = load_policy(policy_bundle, mode="window")
    store = SessionStore(windowed, max_wait_s=0.02)
    data = [trajectory(4, seed) for seed in (11, 12)]

    async def main():
        a = await store.start(data[0][0][0], 5.0)
        a1 = await store.step(a.episode_id, data[0][0][1], data[0][1][0])
        b = await store.start(data[1][0][0], 5.0)
        a2, b1 = await asyncio.gather(
            store.step(a.episode_id, data[0][0][2], data[0][1][1]),
            store.step(b.episode_id, data[1][0][1], data[1][1][0]),
        )
        return [a, a1, a2], [b, b1]

    runs = asyncio.run(main())
    store.close()
    for (observations, rewards), results in zip(data, runs, strict=True):
        expected = reference_actions(windowed, observations[: len(results)], rewards, 5.0)
        np.testing.assert_allclose([r.action for r in results], expected, atol=1e-5)


ACT_BODIES = {  # body -> the loc of its first error, with the tiny policy's sizes (S=4, A=2)
    "observation too short": ({"observation": [0.0] * 3}, ["observation"]),
    "observation too long": ({"episode_id": "e", "observation": [0.0] * 5, "reward": 0}, ["observation"]),
    "history observation size": ({"observations": [[0.0] * 4, [0.0] * 3], "returns_to_go": [1, 1], "actions": [[0, 0]]}, ["observations", 1]),
    "action size": ({"observations": [[0.0] * 4] * 2, "returns_to_go": [1, 1], "actions": [[0, 0, 0]]}, ["actions", 0]),
    "actions count": ({"observations": [[0.0] * 4] * 2, "returns_to_go": [1, 1], "actions": [[0, 0], [0, 0]]}, ["actions"]),
    "actions missing": ({"observations": [[0.0] * 4] * 2, "returns_to_go": [1, 1]}, ["actions"]),
    "returns_to_go count": ({"observations": [[0.0] * 4] * 2, "returns_to_go": [1], "actions": [[0, 0]]}, ["returns_to_go"]),
    "NaN observation": ('{"observation": [0, NaN, 0, 0]}', ["observation", 1]),
    "Infinity reward": ('{"episode_id": "e", "observation": [0, 0, 0, 0], "reward": Infinity}', ["reward"]),
    "NaN in history": ('{"observations": [[0, 0, 0, 0]], "returns_to_go": [NaN]}', ["returns_to_go", 0]),
    "step without reward": ({"episode_id": "e", "observation": [0.0] * 4}, ["reward"]),
    "reward on the first step": ({"observation": [0.0] * 4, "reward": 1.0}, ["reward"]),
    "target_return mid-episode": ({"episode_id": "e", "observation": [0.0] * 4, "reward": 0, "target_return": 3}, ["target_return"]),
    "modes mixed": ({"observation": [0.0] * 4, "observations": [[0.0] * 4], "returns_to_go": [1]}, ["observation"]),
    "nothing": ({}, ["observation"]),
    "misspelt field": ({"observation": [0.0] * 4, "target": 3}, ["target"]),
}  # fmt: skip


@pytest.mark.parametrize("case", ACT_BODIES)
def test_act_input_rejects_with_the_field(case):
    body, loc = ACT_BODIES[case]
    try:
        schemas.use_policy(S, A, POLICY_TARGET_RETURN)
        with pytest.raises(ValueError) as err:
            if isinstance(body, str):
                schemas.ActInput.model_validate_json(body)
            else:
                schemas.ActInput.model_validate(body)
    finally:
        schemas.use_policy(None)
    assert tuple(loc) == err.value.errors()[0]["loc"], err.value.errors()


def test_act_input_modes():
    assert schemas.ActInput.model_validate({"observation": [1.0]}).mode == "start"
    step = {"episode_id": "e", "observation": [1.0], "reward": 0.5}
    assert schemas.ActInput.model_validate(step).mode == "step"
    history = {"observations": [[1.0]], "returns_to_go": [3.0]}  # T = 1: no actions needed
    assert schemas.ActInput.model_validate(history).mode == "stateless"
    try:  # a model without a default target return needs one at the start
        schemas.use_policy(1, 1, None)
        with pytest.raises(ValueError, match="no default target return"):
            schemas.ActInput.model_validate({"observation": [1.0]})
    finally:
        schemas.use_policy(None)


# ---- the service, end to end --------------------------------------------------------------------
# One client per thread, made once: each new httpx client costs ~90 ms (its SSL context).
CLIENTS = threading.local()


def client() -> httpx.Client:
    if not hasattr(CLIENTS, "client"):
        CLIENTS.client = httpx.Client(timeout=60)
    return CLIENTS.client


def act(url: str, body) -> httpx.Response:
    if isinstance(body, str):
        headers = {"content-type": "application/json"}
        return client().post(f"{url}/act", content=body, headers=headers)
    return client().post(f"{url}/act", json=body)


def ok(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def pool():
    with ThreadPoolExecutor(8) as threads:
        yield threads


def burst(pool, url: str, bodies: list) -> list[httpx.Response]:
    """POSTs the bodies to /act at the same moment, one thread each."""
    barrier = threading.Barrier(len(bodies))

    def send(body) -> httpx.Response:
        client()  # made before the barrier
        barrier.wait()
        return act(url, body)

    return list(pool.map(send, bodies))


@pytest.mark.slow
def test_policy_is_loaded_from_the_registry(act_server, policy_registry):
    info = client().get(f"{act_server.url}/policy").json()
    assert (info["state_dim"], info["act_dim"]) == (S, A)
    assert info["architecture"] == "decision_mamba" and info["mode"] == "recurrent"
    assert info["action_low"] == [-1.0, 0.0] and info["action_high"] == [1.0, 4.0]
    assert info["target_return"] == POLICY_TARGET_RETURN and info["env_id"] == "Toy-v0"
    assert info["reference_returns"] == {"random": -100.0, "expert": 100.0}
    assert info["sessions"]["ttl_s"] == 3 and info["sessions"]["max_sessions"] == 16  # conftest
    version = policy_registry["EXPECTED_VERSION"]
    assert info["model_version"] == version
    assert f"behave.decision_mamba@champion (version {version}) on cpu" in act_server.log()


@pytest.mark.slow
def test_stateless_act_equals_act_on_history(act_server, policy):
    rng = np.random.default_rng(0)
    observations = rng.normal(size=(5, S))
    returns = [50.0, 48.0, 47.5, 40.0, 39.0]
    actions = rng.uniform([-1, 0], [1, 4], size=(4, A))
    body = {
        "observations": observations.tolist(),
        "returns_to_go": returns,
        "actions": actions.tolist(),
    }
    result = ok(act(act_server.url, body))
    expected = policy.act_on_history(np.array(returns), observations, actions)
    np.testing.assert_allclose(result["action"], expected, atol=1e-5)
    assert result["episode_id"] is None and result["step"] == 4 and result["return_to_go"] == 39.0
    one = ok(act(act_server.url, {"observations": [[0.1] * S], "returns_to_go": [5.0]}))
    expected = policy.act_on_history(np.array([5.0]), np.full((1, S), 0.1), np.zeros((0, A)))
    np.testing.assert_allclose(one["action"], expected, atol=1e-5)


@pytest.mark.slow
def test_session_keeps_the_recurrent_state(act_server, policy):
    observations, rewards = trajectory(6, seed=1)
    first = ok(act(act_server.url, {"observation": observations[0].tolist(), "target_return": 30}))
    episode_id, results = first["episode_id"], [first]
    for t in range(1, 6):
        body = {"episode_id": episode_id, "observation": observations[t].tolist()}
        results.append(ok(act(act_server.url, {**body, "reward": float(rewards[t - 1])})))
    expected = reference_actions(policy, observations, rewards, 30.0)
    np.testing.assert_allclose([r["action"] for r in results], expected, atol=1e-5)
    assert [r["step"] for r in results] == list(range(6))
    assert {r["episode_id"] for r in results} == {episode_id}
    assert results[-1]["return_to_go"] == pytest.approx(30 - rewards[:5].sum(), abs=1e-4)
    # the default target return
    default = ok(act(act_server.url, {"observation": observations[0].tolist()}))
    assert default["return_to_go"] == POLICY_TARGET_RETURN
    assert client().delete(f"{act_server.url}/act/{episode_id}").status_code == 204


def _metric(url: str, name: str) -> float:
    match = re.search(
        rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", client().get(f"{url}/metrics").text, re.M
    )
    return float(match.group(1)) if match else 0.0


@pytest.mark.slow
def test_concurrent_steps_of_episodes_are_batched(act_server, policy, pool):
    n, steps = 8, 4
    data = [trajectory(steps, seed=100 + i) for i in range(n)]
    targets = [10.0 + 5 * i for i in range(n)]
    before = client().get(f"{act_server.url}/policy").json()["batching"]
    calls_before = _metric(act_server.url, "behave_act_batch_size_count")
    starts = burst(
        pool,
        act_server.url,
        [{"observation": data[i][0][0].tolist(), "target_return": targets[i]} for i in range(n)],
    )
    ids = [ok(r)["episode_id"] for r in starts]
    results = [[r.json()] for r in starts]
    for t in range(1, steps):
        bodies = [
            {"episode_id": ids[i], "observation": data[i][0][t].tolist(), "reward": float(data[i][1][t - 1]), "step": t}
            for i in range(n)
        ]  # fmt: skip
        for i, response in enumerate(burst(pool, act_server.url, bodies)):
            results[i].append(ok(response))
    after = client().get(f"{act_server.url}/policy").json()["batching"]
    for i in range(n):  # each episode got its own answers, batched or not
        expected = reference_actions(policy, *data[i], targets[i])
        np.testing.assert_allclose([r["action"] for r in results[i]], expected, atol=1e-5)
        assert client().delete(f"{act_server.url}/act/{ids[i]}").status_code == 204
    calls = after["model_calls"] - before["model_calls"]
    assert after["episode_steps"] - before["episode_steps"] == n * steps
    print(f"{n * steps} session steps of {n} concurrent episodes ran in {calls} model calls")
    assert after["multi_episode_calls"] > before["multi_episode_calls"] and calls < n * steps
    assert after["largest_batch"] > 1
    assert _metric(act_server.url, "behave_act_batch_size_count") - calls_before == calls


@pytest.mark.slow
def test_concurrent_steps_of_one_episode_advance_it_once_each(act_server, pool):
    start = ok(act(act_server.url, {"observation": [0.0] * S}))
    body = {"episode_id": start["episode_id"], "observation": [0.5] * S, "reward": 1.0}
    responses = burst(pool, act_server.url, [body] * 6)
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 409} and 200 in statuses, [r.text for r in responses]
    for r in responses:
        if r.status_code == 409:
            assert r.json()["detail"][0]["type"] == "episode_busy"
    # the episode advanced exactly once per 200, whatever the interleaving
    steps = sorted(r.json()["step"] for r in responses if r.status_code == 200)
    assert steps == list(range(1, len(steps) + 1))
    retried = act(act_server.url, {**body, "step": 1}) if len(steps) == 1 else None
    if retried is not None:
        assert retried.status_code == 409 and "is at step 2, not 1" in retried.json()["error"]


BAD_OVER_HTTP = {
    "wrong observation size": ({"observation": [0.0] * (S + 1)}, ["observation"]),
    "wrong action size": ({"observations": [[0.0] * S] * 2, "returns_to_go": [1, 1], "actions": [[0.0] * (A + 1)]}, ["actions", 0]),
    "NaN observation": ('{"observations": [[0, 0, 0, 0], [0, 0, NaN, 0]], "returns_to_go": [1, 1], "actions": [[0, 0]]}', ["observations", 1, 2]),
    "reward on the first step": ({"observation": [0.0] * S, "reward": 1}, ["reward"]),
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("case", BAD_OVER_HTTP)
def test_bad_act_requests_are_400_naming_the_field(act_server, case):
    body, loc = BAD_OVER_HTTP[case]
    response = act(act_server.url, body)
    assert response.status_code == 400, response.text
    assert loc in [d["loc"] for d in response.json()["detail"]]


@pytest.mark.slow
def test_unknown_and_deleted_episodes_are_404(act_server):
    step = {"observation": [0.0] * S, "reward": 0.0}
    response = act(act_server.url, {"episode_id": "no-such-episode", **step})
    assert response.status_code == 404
    body = response.json()
    assert body["error"] == "unknown episode_id 'no-such-episode'"
    assert body["detail"][0]["loc"] == ["episode_id"]
    episode_id = ok(act(act_server.url, {"observation": [0.0] * S}))["episode_id"]
    assert client().delete(f"{act_server.url}/act/{episode_id}").status_code == 204
    response = act(act_server.url, {"episode_id": episode_id, **step})
    assert response.status_code == 404 and "was deleted" in response.json()["error"]
    assert client().delete(f"{act_server.url}/act/{episode_id}").status_code == 404
    log = act_server.log()
    assert "rejected POST /act (404): unknown episode_id 'no-such-episode'" in log
    assert "Traceback" not in log


@pytest.mark.slow
def test_sessions_expire(act_server):
    ttl_s = client().get(f"{act_server.url}/policy").json()["sessions"]["ttl_s"]
    episode_id = ok(act(act_server.url, {"observation": [0.0] * S}))["episode_id"]
    time.sleep(ttl_s + 0.5)
    response = act(
        act_server.url, {"episode_id": episode_id, "observation": [0.0] * S, "reward": 0}
    )
    assert response.status_code == 404, response.text
    assert f"expired: idle for more than {ttl_s:g} s" in response.json()["error"]


@pytest.mark.slow
def test_too_many_sessions_is_429(act_server):
    max_sessions = client().get(f"{act_server.url}/policy").json()["sessions"]["max_sessions"]
    ids = []
    try:
        for _ in range(max_sessions + 1):
            response = act(act_server.url, {"observation": [0.0] * S})
            if response.status_code != 200:
                break
            ids.append(response.json()["episode_id"])
        assert response.status_code == 429, response.text
        assert "too many live episodes" in response.json()["error"]
        assert client().get(f"{act_server.url}/policy").json()["sessions"]["live"] == max_sessions
    finally:
        for episode_id in ids:
            client().delete(f"{act_server.url}/act/{episode_id}")


@pytest.mark.slow
def test_families_are_independent(act_server, empty_server):
    # a policy and no BehaveGPT: BehaveGPT's routes answer 503, /act works
    response = client().post(
        f"{act_server.url}/next_behavior", json={"requests": [{"history": [{"behavior": "b1"}]}]}
    )
    assert response.status_code == 503
    assert "no model behave.behavegpt@champion" in response.json()["error"]
    assert client().get(f"{act_server.url}/behaviors").status_code == 503
    ok(act(act_server.url, {"observations": [[0.0] * S], "returns_to_go": [1.0]}))
    # no policy: /act, DELETE /act/... and /policy answer 503 saying how to train one
    hint = "train one with `behave fit --config pipelines/decision-mamba-lunarlander-medium.yaml`"
    for response in (
        act(empty_server.url, {"observation": [0.0] * S}),
        client().delete(f"{empty_server.url}/act/some-episode"),
        client().get(f"{empty_server.url}/policy"),
    ):
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert error.startswith("no model behave.decision_mamba@champion in sqlite:///"), error
        assert hint in error
    assert "Decision Mamba routes answer 503" in empty_server.log()


@pytest.mark.slow
def test_act_routes_in_the_openapi_spec(act_server):
    spec = client().get(f"{act_server.url}/docs.json").json()
    assert {"/act", "/act/{episode_id}", "/policy"} <= set(spec["paths"])
    assert "delete" in spec["paths"]["/act/{episode_id}"] and "get" in spec["paths"]["/policy"]
    act_spec = json.dumps(spec["paths"]["/act"])
    for field in ("episode_id", "observation", "reward", "target_return", "returns_to_go"):
        assert field in act_spec
    assert "Session step" in spec["paths"]["/act"]["post"]["description"]
