"""A bounded locust run on loopback: 32 clients with no think time across every prediction
route of the fully loaded service. 0 failed requests, p50/p99 per route reported, and the
server's memory (RSS of the server and its workers) grows < 10% over the run.

Short by default (CI: 20 s); ``BEHAVE_LONG_RELIABILITY=1`` runs 60 s (``BEHAVE_LOAD_SECONDS``
sets it). ``BEHAVE_LOAD_OUT=path.json`` also writes the figures there (``benchmarks/load.py``
does, for ``behave report``). Overload answers (429 past ``max_concurrency``, 504 past the
timeout) are tested in tests/serving/test_overload.py.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from tests.serving.conftest import (
    BEHAVIORS,
    FORECAST_OBSERVE,
    NEURAL_NEURONS,
    NEURAL_STIMULUS,
    POLICY_ACT_DIM,
    POLICY_STATE_DIM,
    PROBE_NAME,
    SERIES_CHANNELS,
    SERIES_LEN,
)

pytestmark = [pytest.mark.slow, pytest.mark.reliability]

LONG = os.environ.get("BEHAVE_LONG_RELIABILITY") == "1"
CLIENTS = 32
SECONDS = int(os.environ.get("BEHAVE_LOAD_SECONDS") or (60 if LONG else 20))
MAX_RSS_GROWTH = 0.10


def _bodies() -> dict[str, list]:
    """A few different valid bodies per prediction route, sized to the tiny served models."""
    histories = [[{"behavior": BEHAVIORS[(i * k) % len(BEHAVIORS)]} for k in range(3 + i)] for i in range(4)]  # fmt: skip
    scenes = [
        {
            "agents": [
                {
                    "agent_id": f"a{j}",
                    "track": [
                        [20.0 * j + t + i, 4.0 * (j % 2)] for t in range(FORECAST_OBSERVE + 2)
                    ],
                }
                for j in range(2 + i)
            ]
        }  # fmt: skip
        for i in range(3)
    ]
    spikes = [
        [{"neuron": (i + k) % NEURAL_NEURONS, "time": round(0.01 * k, 3)} for k in range(20 + 10 * i)]
        for i in range(3)
    ]  # fmt: skip
    T = 3
    return {
        "/next_behavior": [{"requests": [{"history": h, "top_k": 5}]} for h in histories],
        "/act": [
            {
                "observations": [[0.1 * (t + i)] * POLICY_STATE_DIM for t in range(T)],
                "returns_to_go": [50.0 - t for t in range(T)],
                "actions": [[0.0] * POLICY_ACT_DIM for _ in range(T - 1)],
            }
            for i in range(3)
        ],
        "/trajectory/forecast": [{"scenes": [s]} for s in scenes],
        "/neural/decode": [
            {"spikes": s, "stimulus": [[0.5] * NEURAL_STIMULUS] * 20} for s in spikes
        ],
        "/explain": [
            {
                "family": "tsclassifier",
                "method": "saliency",
                "inputs": [
                    [
                        [0.1 * ((t + i) % 5) + d for d in range(SERIES_CHANNELS)]
                        for t in range(SERIES_LEN)
                    ]
                ],  # fmt: skip
            }
            for i in range(3)
        ],
        "/probe": [{"probe": PROBE_NAME, "history": h} for h in histories],
    }


def _rss_bytes(pid: int) -> int:
    """Resident memory of the server process and all its workers."""
    root = psutil.Process(pid)
    total = 0
    for p in [root, *root.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def _locust(url: str, bodies: Path, seconds: int, prefix: Path) -> subprocess.CompletedProcess:
    locust = Path(sys.executable).with_name("locust")
    return subprocess.run(
        [
            str(locust), "-f", str(Path(__file__).with_name("locustfile.py")),
            "--headless", "--host", url,
            "--users", str(CLIENTS), "--spawn-rate", str(CLIENTS),
            "--run-time", f"{seconds}s", "--stop-timeout", "30",
            "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING",
        ],
        env={**os.environ, "BEHAVE_LOAD_BODIES": str(bodies)},
        capture_output=True, text=True, timeout=seconds + 180,
    )  # fmt: skip


def test_32_clients_get_every_answer_and_memory_stays_flat(full_server, tmp_path):
    examples_by_route = _bodies()
    bodies = tmp_path / "bodies.json"
    bodies.write_text(json.dumps(examples_by_route))
    # every body is valid (a 4xx would be a test bug)
    for route, examples in examples_by_route.items():
        r = httpx.post(f"{full_server.url}{route}", json=examples[0], timeout=60)
        assert r.status_code == 200, f"{route}: {r.status_code} {r.text[:300]}"

    # warm up under the same load first: allocator pools and caches fill, then stay
    warm = _locust(full_server.url, bodies, 5, tmp_path / "warm")
    assert warm.returncode == 0, warm.stdout[-3000:] + warm.stderr[-3000:]
    rss_before = _rss_bytes(full_server.proc.pid)
    proc = _locust(full_server.url, bodies, SECONDS, tmp_path / "load")
    rss_after = _rss_bytes(full_server.proc.pid)

    with open(tmp_path / "load_stats.csv") as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    table = [
        (name, int(r["Request Count"]), int(r["Failure Count"]), float(r["50%"]), float(r["99%"]))
        for name, r in rows.items()
    ]
    growth = rss_after / rss_before - 1
    summary = "\n".join(
        [f"{CLIENTS} clients, {SECONDS} s; server RSS {rss_before / 2**20:.0f} -> "
         f"{rss_after / 2**20:.0f} MiB ({growth:+.1%})",
         f"{'route':<24}{'requests':>9}{'failed':>8}{'p50 ms':>8}{'p99 ms':>8}"]
        + [f"{n:<24}{c:>9}{f:>8}{p50:>8.0f}{p99:>8.0f}" for n, c, f, p50, p99 in table]
    )  # fmt: skip
    print(summary)
    if os.environ.get("BEHAVE_LOAD_OUT"):
        _write_figures(Path(os.environ["BEHAVE_LOAD_OUT"]), table, rss_before, rss_after)
    failures = (tmp_path / "load_failures.csv").read_text()
    assert proc.returncode == 0, summary + "\n" + failures + proc.stderr[-3000:]
    total = rows["Aggregated"]
    assert int(total["Failure Count"]) == 0, summary + "\n" + failures
    assert {name for name in rows if name != "Aggregated"} == set(examples_by_route)
    assert all(int(r["Request Count"]) > 0 for r in rows.values())
    assert growth < MAX_RSS_GROWTH, summary


def _write_figures(out: Path, table, rss_before: int, rss_after: int) -> None:
    from benchmarks.run_info import device_name, git_commit, write_json

    write_json(
        out,
        {
            "benchmark": "load",
            "device": device_name(),
            "commit": git_commit(),
            "clients": CLIENTS,
            "seconds": SECONDS,
            "routes": [
                {"route": n, "requests": c, "failed": f, "p50_ms": p50, "p99_ms": p99}
                for n, c, f, p50, p99 in table
            ],
            "rss_mib_before": rss_before / 2**20,
            "rss_mib_after": rss_after / 2**20,
        },
    )
