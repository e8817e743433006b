"""The service tests' tiny models, for the reliability tests (same fixtures, same sizes), and
one server with every family loaded that the fuzz and load tests share."""

from collections.abc import Iterator

import pytest

from tests.serving import conftest as serving
from tests.serving.conftest import Server, launch_server, stop_server, wait_ready

# pytest finds fixtures by their module-level names: share the service tests' tiny models
registry = serving.registry
tiny_bundle = serving.tiny_bundle
policy_bundle = serving.policy_bundle
forecaster_bundle = serving.forecaster_bundle
neuroformer_bundle = serving.neuroformer_bundle


@pytest.fixture(scope="session")
def full_server(
    registry, policy_bundle, forecaster_bundle, neuroformer_bundle, tmp_path_factory
) -> Iterator[Server]:
    """BehaveGPT, the time-series classifier + TimeX and the probe from the registry; the
    policy, forecaster and Neuroformer from local bundles: every route has its model."""
    env = {k: v for k, v in registry.items() if k != "EXPECTED_VERSION"}
    env.update(
        BEHAVE_DECISION_MAMBA_BUNDLE=str(policy_bundle),
        BEHAVE_GRAPH_LSTM_BUNDLE=str(forecaster_bundle),
        BEHAVE_NEUROFORMER_BUNDLE=str(neuroformer_bundle),
    )
    server = launch_server(env, tmp_path_factory.mktemp("full-server") / "server.log")
    try:
        yield wait_ready(server)
    finally:
        stop_server(server)
