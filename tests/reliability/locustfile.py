"""Locust users for the load test (tests/reliability/test_load.py starts locust on this file).

Every user loops over the prediction routes as fast as the server answers (no think time), each
request a body from the JSON file in ``BEHAVE_LOAD_BODIES`` (route -> list of bodies). Any
answer but 200 is a failure.
"""

from __future__ import annotations

import itertools
import json
import os

from locust import FastHttpUser, constant, task

BODIES: dict[str, list] = json.loads(open(os.environ["BEHAVE_LOAD_BODIES"]).read())


class PredictionClient(FastHttpUser):
    wait_time = constant(0)

    def on_start(self) -> None:
        self._next = {route: itertools.cycle(bodies) for route, bodies in BODIES.items()}

    def _post(self, route: str) -> None:
        with self.client.post(route, json=next(self._next[route]), catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"{r.status_code}: {r.text[:200]}")

    @task
    def requests(self) -> None:
        for route in BODIES:
            self._post(route)
