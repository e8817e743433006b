"""Fixtures for the service tests: a tiny BehaveGPT and a tiny Decision Mamba, each registered
in its own temporary MLflow store, and ``bentoml serve serving.service:BehaveService`` started
against them on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# `serving` is a top-level folder, not part of the installed `behave` package: make it
# importable however pytest is started (as `bentoml serve` finds it from the repo root).
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
BEHAVIORS = [f"b{i}" for i in range(18)]
CONTEXT_LENGTH = 8
READY_TIMEOUT_S = 90
# the tiny Decision Mamba's sizes and the act server's session settings (tests/serving/test_act.py)
POLICY_STATE_DIM, POLICY_ACT_DIM = 4, 2
POLICY_TARGET_RETURN = 50.0
FORECAST_OBSERVE = 6  # positions the tiny Graph-LSTM observes (tests/serving/test_trajectory.py)
NEURAL_NEURONS, NEURAL_STIMULUS = 12, 3  # the tiny Neuroformer (tests/serving/test_neural.py)
ACT_SERVER_ENV = {
    "BEHAVE_SESSION_TTL_S": "3",
    "BEHAVE_MAX_SESSIONS": "16",
    "BEHAVE_ACT_MAX_WAIT_MS": "5",
}


@dataclass
class Server:
    url: str
    log_path: Path
    proc: subprocess.Popen

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _store_env(root: Path) -> dict[str, str]:
    """Environment pointing behave.tracking at a store under ``root``."""
    return {
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "BEHAVE_ARTIFACT_ROOT": (root / "artifacts").as_uri(),
    }


@pytest.fixture(scope="session")
def tiny_model() -> SimpleNamespace:
    """What the tests may rely on about the served model."""
    return SimpleNamespace(behaviors=list(BEHAVIORS), context_length=CONTEXT_LENGTH)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """A random-init BehaveGPT bundle: 18 behaviors (+ <pad>, <unk>), context 8."""
    import torch

    from behave.data.vocab import PAD, UNK, Vocabulary
    from behave.inference.behavegpt import save_bundle
    from behave.models.behavegpt import BehaveGPT, BehaveGPTConfig

    torch.manual_seed(0)
    vocab = Vocabulary(
        behaviors=[PAD, UNK, *BEHAVIORS],
        locations=[UNK, "home", "work"],
        domains=[UNK, "apps", "web"],
    )
    config = BehaveGPTConfig(
        num_behaviors=len(vocab.behaviors),
        num_locations=len(vocab.locations),
        num_domains=len(vocab.domains),
        context_length=CONTEXT_LENGTH,
        d_model=16,
        num_layers=1,
        num_heads=2,
        dropout=0.0,
    )
    # the folder's name is the artifact's name in MLflow, and behave reads `artifacts/bundle`
    out_dir = tmp_path_factory.mktemp("model") / "bundle"
    return save_bundle(BehaveGPT(config).eval(), vocab, out_dir)


@pytest.fixture(scope="session")
def registry(tiny_bundle, tmp_path_factory) -> dict[str, str]:
    """A temporary MLflow store whose behave.behavegpt@champion is the tiny bundle."""
    import pandas as pd

    from behave import tracking
    from behave.inference.behavegpt import BehaveGPTPredictor

    env = _store_env(tmp_path_factory.mktemp("mlflow"))
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        mp.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        run = tracking.client().create_run(tracking.ensure_experiment("serving-tests"))
        frame = pd.DataFrame({"history": [BEHAVIORS[:3], BEHAVIORS[3:6]]})
        output = BehaveGPTPredictor.from_dir(tiny_bundle).predict_frame(frame)
        version = tracking.register_model(
            run.info.run_id, "behavegpt", tiny_bundle, frame, output, tags={"test": "serving"}
        )
        _register_explainable(tracking, run.info.run_id, tmp_path_factory)
        _register_probe(tracking, run.info.run_id, tiny_bundle, version, tmp_path_factory)
        tracking.client().set_terminated(run.info.run_id)
        assert tracking.get_version("behavegpt", "champion").version == version
    return {**env, "EXPECTED_VERSION": str(version)}


PROBE_NAME = "behavegpt.toy"  # the probe registered beside the tiny model (test_probe.py)


def tiny_probe(version: str):
    """A fixed linear probe on layer 1 of the tiny model (registered as behave.probe.behavegpt.toy)."""
    import torch

    from behave.explain.probes import LinearProbe

    return LinearProbe(
        weight=torch.linspace(-1.0, 1.0, 16),
        bias=0.1,
        layer=1,
        pooling="last",
        metrics={"auroc": 0.9},
        info={
            "reads_model": "behave.behavegpt",
            "reads_version": version,
            "behavior_family": "toy",
            "label": "next event is in family 'toy'",
        },
    )


def _register_probe(tracking, run_id: str, bundle: Path, version: str, tmp_path_factory) -> None:
    from behave.inference.probe import example_io, save_probe_bundle

    out = save_probe_bundle(
        tiny_probe(version), bundle, tmp_path_factory.mktemp("probe") / "bundle"
    )
    tracking.register_model(
        run_id, "probe.behavegpt.toy", out, *example_io(out), tags={"reads_version": version}
    )


SERIES_LEN, SERIES_CHANNELS = (
    12,
    2,
)  # the tiny time-series classifier (tests/serving/test_explain.py)
SERIES_CLASSES = ["calm", "spike", "dip"]


def _register_explainable(tracking, run_id: str, tmp_path_factory) -> None:
    """behave.tsclassifier.toy (random init) and behave.timex.toy explaining its version 1."""
    import torch

    from behave.explain.timex import TimeX, TimeXConfig
    from behave.inference.timeseries import (
        load_classifier,
        load_timex,
        save_classifier_bundle,
        save_timex_bundle,
    )
    from behave.models.tsclassifier import TSClassifier, TSClassifierConfig

    torch.manual_seed(0)
    config = TSClassifierConfig(
        seq_len=SERIES_LEN, channels=SERIES_CHANNELS, num_classes=3, d_model=16, dropout=0.0
    )
    classifier = TSClassifier(config).eval()
    meta = {"dataset": "toy", "class_names": SERIES_CLASSES}
    root = tmp_path_factory.mktemp("explainable")
    bundle = save_classifier_bundle(classifier, root / "classifier" / "bundle", meta)
    x = torch.randn(2, SERIES_LEN, SERIES_CHANNELS).numpy()
    version = tracking.register_model(
        run_id, "tsclassifier.toy", bundle, x, load_classifier(bundle).predict_frame(x)
    )
    timex = TimeX(TimeXConfig(blackbox=config, decoder_dim=8, num_landmarks=3), classifier)
    landmarks = [
        {"landmark": k, "count": 2 + k, "classes": {"calm": 1, "spike": 1 + k}, "kept_share": 0.2}
        for k in range(3)
    ]
    explains = {
        "uri": "models:/behave.tsclassifier.toy@champion",
        "name": "behave.tsclassifier.toy",
    }
    timex_bundle = save_timex_bundle(
        timex.eval(),
        root / "timex" / "bundle",
        {**meta, "explains": {**explains, "version": version}, "landmarks": landmarks},
    )
    tracking.register_model(
        run_id, "timex.toy", timex_bundle, x, load_timex(timex_bundle).predict_frame(x)
    )


def launch_server(
    env: dict[str, str],
    log_path: Path,
    target: str = "serving.service:BehaveService",
    cwd: Path = REPO_ROOT,
    drop: tuple[str, ...] = (),
) -> Server:
    """Starts ``bentoml serve TARGET`` (the service, or a built bento's tag) from ``cwd`` in its
    own process group (use :func:`wait_ready` next). ``drop``: caller variables not to pass on."""
    port = _free_port()
    full_env = {
        # none of the caller's BEHAVE_* settings (bundles, session limits) leak into a test
        **{k: v for k, v in os.environ.items() if not k.startswith("BEHAVE_") and k not in drop},
        "OMP_NUM_THREADS": "1",
        "BENTOML_DO_NOT_TRACK": "true",
        "HF_HUB_OFFLINE": "1",
        "BENTOML_HOME": str(log_path.parent / "bentoml-home"),
        **env,
    }
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bentoml", "serve", target,
             "--host", "127.0.0.1", "--port", str(port)],
            cwd=cwd,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    return Server(f"http://127.0.0.1:{port}", log_path, proc)


def wait_ready(server: Server) -> Server:
    """Waits for ``/readyz`` 200; fails the test with the server's log if it does not come."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        # a worker that fails to start is restarted forever by BentoML: stop at the first failure
        if server.proc.poll() is not None or "Application startup failed" in server.log():
            stop_server(server)
            pytest.fail(f"bentoml serve failed to start:\n{server.log()[-6000:]}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    stop_server(server)
    pytest.fail(f"bentoml serve not ready in {READY_TIMEOUT_S} s:\n{server.log()[-6000:]}")


def stop_server(server: Server) -> None:
    """Ends the server and its workers (the process group it leads)."""
    proc = server.proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    try:  # workers that outlived their arbiter keep the group alive
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="session")
def launched_empty_server(tmp_path_factory) -> Iterator[Server]:
    """The service on a store with no registered model, starting (not yet ready)."""
    root = tmp_path_factory.mktemp("empty-mlflow")
    server = launch_server(_store_env(root), root / "server.log")
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture(scope="session")
def server(launched_empty_server, registry, tmp_path_factory) -> Iterator[Server]:
    """The service on the registered champion.

    Asks for the empty-store server first only so that its start-up overlaps the registry
    round trip (a ~10 s saving on two cores when the 503 test runs too).
    """
    env = {k: v for k, v in registry.items() if k != "EXPECTED_VERSION"}
    server = launch_server(env, tmp_path_factory.mktemp("serve") / "server.log")
    try:
        yield wait_ready(server)
    finally:
        stop_server(server)


@pytest.fixture(scope="session")
def empty_server(launched_empty_server) -> Server:
    """The service on a store with no registered model."""
    return wait_ready(launched_empty_server)


# ---- the offline-RL policy (POST /act) -----------------------------------------------------------
@pytest.fixture(scope="session")
def policy_bundle(tmp_path_factory) -> Path:
    """A random-init Decision Mamba bundle: 4 observation and 2 action floats, non-trivial
    normalization (so the service's unit handling is exercised), default target return 50."""
    import torch

    from behave.inference.offline_rl import Normalization, save_bundle
    from behave.models.decision_mamba import DecisionMamba, DecisionMambaConfig

    torch.manual_seed(0)
    config = DecisionMambaConfig(
        state_dim=POLICY_STATE_DIM,
        act_dim=POLICY_ACT_DIM,
        context_length=8,
        max_timestep=64,
        d_model=16,
        num_layers=2,
        d_state=4,
        dropout=0.0,
    )
    normalization = Normalization(
        state_mean=[0.5, -0.5, 0.0, 1.0],
        state_std=[2.0, 1.0, 0.5, 1.0],
        action_low=[-1.0, 0.0],
        action_high=[1.0, 4.0],
        return_scale=100.0,
    )
    extra = {
        "env": "toy",
        "env_id": "Toy-v0",
        "reference_returns": {"random": -100.0, "expert": 100.0},
        "target_return": POLICY_TARGET_RETURN,
    }
    out_dir = tmp_path_factory.mktemp("policy") / "bundle"
    return save_bundle(
        DecisionMamba(config).eval(), "decision_mamba", normalization, out_dir, extra
    )


@pytest.fixture(scope="session")
def forecaster_bundle(tmp_path_factory) -> Path:
    """A random-init Graph-LSTM bundle: observes 6 positions, predicts 10, at 5 Hz."""
    import torch

    from behave.inference.graph_lstm import save_bundle
    from behave.models.graph_lstm import GraphLSTM, GraphLSTMConfig

    torch.manual_seed(0)
    config = GraphLSTMConfig(
        observe_steps=FORECAST_OBSERVE,
        predict_steps=10,
        hz=5.0,
        hidden_size=8,
        eigenvectors=2,
        future_graphs=2,
        dropout=0.0,
    )
    extra = {
        "behaviors": ["overspeeding", "neutral", "underspeeding"],
        "behavior_rule": {"radius_m": 20.0, "scale_m": 5.0, "threshold": 0.02},
    }
    out_dir = tmp_path_factory.mktemp("forecaster") / "bundle"
    return save_bundle(GraphLSTM(config).eval(), out_dir, extra)


@pytest.fixture(scope="session")
def neuroformer_bundle(tmp_path_factory) -> Path:
    """A random-init Neuroformer bundle: 12 neurons, 3 stimulus channels, with a connectivity
    matrix whose strongest edge is 3 -> 7."""
    import numpy as np
    import torch

    from behave.data.spike_tokens import TokenSpec
    from behave.inference.neuroformer import save_bundle
    from behave.models.neuroformer import Neuroformer, NeuroformerConfig

    torch.manual_seed(0)
    spec = TokenSpec(num_neurons=NEURAL_NEURONS, max_current=16, max_previous=40)
    config = NeuroformerConfig(
        num_neurons=NEURAL_NEURONS,
        max_current=16,
        max_previous=40,
        stimulus_channels=NEURAL_STIMULUS,
        d_model=16,
        num_heads=2,
        dropout=0.0,
    )
    connectivity = np.full((NEURAL_NEURONS, NEURAL_NEURONS), 0.5, np.float32)
    connectivity[3, 7] = 4.0
    meta = {
        "bin_s": 0.01,
        "behavior": "running_speed",
        "behavior_stats": {"mean": 10.0, "std": 2.0},
    }
    out_dir = tmp_path_factory.mktemp("neuroformer") / "bundle"
    return save_bundle(Neuroformer(config).eval(), out_dir, spec, connectivity, meta)


@pytest.fixture(scope="session")
def policy_registry(
    policy_bundle, forecaster_bundle, neuroformer_bundle, tmp_path_factory
) -> dict[str, str]:
    """A temporary MLflow store whose behave.decision_mamba@champion is the tiny policy,
    behave.graph_lstm@champion the tiny forecaster and behave.neuroformer@champion the tiny
    Neuroformer (and that has no BehaveGPT)."""
    import pandas as pd

    from behave import tracking
    from behave.inference.graph_lstm import load_forecaster
    from behave.inference.offline_rl import load_policy

    env = _store_env(tmp_path_factory.mktemp("policy-mlflow"))
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        mp.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        run = tracking.client().create_run(tracking.ensure_experiment("serving-tests"))
        frame = pd.DataFrame(
            {
                "returns_to_go": [[50.0, 49.0]],
                "observations": [[[0.0] * POLICY_STATE_DIM, [0.1] * POLICY_STATE_DIM]],
                "actions": [[[0.0] * POLICY_ACT_DIM]],
            }
        )
        output = load_policy(policy_bundle).predict_frame(frame)
        version = tracking.register_model(
            run.info.run_id, "decision_mamba", policy_bundle, frame, output
        )
        # the Graph-LSTM shares this store (and its server): one bentoml start-up fewer in CI
        forecaster = load_forecaster(forecaster_bundle)
        scene = pd.DataFrame(
            {
                "scene": [0],
                "agent_id": ["a"],
                "track": [[[float(i), 0.0] for i in range(FORECAST_OBSERVE)]],
            }
        )
        tracking.register_model(
            run.info.run_id, "graph_lstm", forecaster_bundle, scene, forecaster.predict_frame(scene)
        )
        from behave.inference.neuroformer import load_neuroformer

        spikes = pd.DataFrame({"neuron": [0, 1, 2, 3], "time": [0.0, 0.05, 0.1, 0.19]})
        tracking.register_model(
            run.info.run_id,
            "neuroformer",
            neuroformer_bundle,
            spikes,
            load_neuroformer(neuroformer_bundle).predict_frame(spikes),
        )
        tracking.client().set_terminated(run.info.run_id)
    return {**env, "EXPECTED_VERSION": str(version)}


@pytest.fixture(scope="session")
def act_server(launched_empty_server, policy_registry, tmp_path_factory) -> Iterator[Server]:
    """The service on a store with Decision Mamba, Graph-LSTM and Neuroformer champions (no BehaveGPT),
    short session TTL."""
    env = {k: v for k, v in policy_registry.items() if k != "EXPECTED_VERSION"}
    server = launch_server(
        {**env, **ACT_SERVER_ENV}, tmp_path_factory.mktemp("serve-act") / "server.log"
    )
    try:
        yield wait_ready(server)
    finally:
        stop_server(server)
