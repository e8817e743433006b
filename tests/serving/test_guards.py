"""Bearer-token auth and the body-size limit over real HTTP: 401 without the token (health
routes stay open), 413 for a body over the limit, declared or chunked; both JSON."""

from __future__ import annotations

import httpx
import pytest

from tests.serving.conftest import _store_env, launch_server, stop_server, wait_ready

pytestmark = pytest.mark.slow

TOKEN = "s3cret-token"
LIMIT = 2_000


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """The service on an empty store, with a token and a 2,000-byte body limit."""
    root = tmp_path_factory.mktemp("guarded")
    env = {**_store_env(root), "BEHAVE_API_TOKEN": TOKEN, "BEHAVE_MAX_BODY_BYTES": str(LIMIT)}
    server = launch_server(env, root / "server.log")
    try:
        yield wait_ready(server)
    finally:
        stop_server(server)


def _body(n_events: int) -> dict:
    return {"requests": [{"history": [{"behavior": "b1"}] * n_events}]}


def test_health_and_docs_stay_open(guarded):
    for path in ("/readyz", "/livez", "/docs.json"):
        assert httpx.get(f"{guarded.url}{path}", timeout=10).status_code == 200, path


@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": "Bearer wrong"}, {"authorization": f"Basic {TOKEN}"}],
)
def test_requests_without_the_token_get_401_json(guarded, headers):
    r = httpx.post(f"{guarded.url}/next_behavior", json=_body(1), headers=headers, timeout=10)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert "BEHAVE_API_TOKEN" in r.json()["error"]
    r = httpx.get(f"{guarded.url}/probe/models", headers=headers, timeout=10)
    assert r.status_code == 401


def test_the_token_lets_requests_through(guarded):
    auth = {"authorization": f"Bearer {TOKEN}"}
    r = httpx.post(f"{guarded.url}/next_behavior", json=_body(1), headers=auth, timeout=10)
    assert r.status_code == 503  # past the guard: this store has no model
    assert "behave fit" in r.json()["error"]


def test_bodies_over_the_limit_get_413_declared_or_chunked(guarded):
    auth = {"authorization": f"Bearer {TOKEN}", "content-type": "application/json"}
    import json

    big = json.dumps(_body(200)).encode()
    assert len(big) > LIMIT
    r = httpx.post(f"{guarded.url}/next_behavior", content=big, headers=auth, timeout=10)
    assert r.status_code == 413
    assert "BEHAVE_MAX_BODY_BYTES" in r.json()["error"]

    def chunks():  # no Content-Length: counted as it is read
        for i in range(0, len(big), 500):
            yield big[i : i + 500]

    r = httpx.post(f"{guarded.url}/next_behavior", content=chunks(), headers=auth, timeout=10)
    assert r.status_code == 413

    small = json.dumps(_body(1)).encode()

    def small_chunks():
        yield small[:10]
        yield small[10:]

    r = httpx.post(f"{guarded.url}/next_behavior", content=small_chunks(), headers=auth, timeout=10)
    assert r.status_code == 503  # a chunked body under the limit reaches the route
