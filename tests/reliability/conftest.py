"""The service tests' tiny models, for the reliability tests (same fixtures, same sizes)."""

from tests.serving.conftest import (  # noqa: F401 - pytest finds fixtures by name
    forecaster_bundle,
    neuroformer_bundle,
    policy_bundle,
    registry,
    tiny_bundle,
)
